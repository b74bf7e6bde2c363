// The last line of defence around the wasm worker: whatever escapes it (a trap, a panic, a
// runtime error in the glue) still answers in the gateway's own error envelope, with
// `x-should-retry: false` so that no SDK pays for the generation again by retrying.

/** The failure's envelope for `path`: OpenRouter's under /api/v1, OpenAI's elsewhere. */
function envelope(path, message) {
  const detail = { type: 'server_error', param: null, code: 'internal_error' };
  if (path === '/api/v1' || path.startsWith('/api/v1/')) {
    return { error: { code: 500, message, metadata: detail } };
  }
  return { error: { message, ...detail } };
}

/** The 500 for a request whose handling threw `error`; the error goes to the log only. */
export function failed(request, error) {
  const requestId = `req_${crypto.randomUUID().replaceAll('-', '')}`;
  const { pathname } = new URL(request.url);
  console.log(JSON.stringify({
    request_id: requestId, method: request.method, path: pathname, status: 500,
    error_type: 'server_error', error: 'the worker threw', error_detail: String(error?.stack ?? error),
  }));
  const message = 'The gateway failed while handling this request; its operator will find why in the log. It was not retried.';
  return new Response(JSON.stringify(envelope(pathname, message)), {
    status: 500,
    headers: { 'content-type': 'application/json', 'x-should-retry': 'false', 'x-request-id': requestId },
  });
}

/**
 * The module worker serving `Entrypoint` (the class worker-build exports): a fresh instance per
 * request, as the runtime itself would make, so that after a trap the glue re-creates its wasm
 * instance on the next request; a throw or a rejection becomes [`failed`]'s 500.
 */
export function guard(Entrypoint) {
  return {
    async fetch(request, env, ctx) {
      try {
        return await new Entrypoint(ctx, env).fetch(request);
      } catch (error) {
        return failed(request, error);
      }
    },
    // The cron trigger: retention. A throw is the runtime's to log; there is no client.
    async scheduled(controller, env, ctx) {
      await new Entrypoint(ctx, env).scheduled(controller);
    },
  };
}
