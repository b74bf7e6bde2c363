// The runtime calls of the request path that wasm would otherwise make one by one: the incoming
// request's head read in one call, and an upstream call (its `fetch`, its deadline timer and, for
// a small answer, its whole body) made as one promise. JS moves the bytes; wasm decides.
// Bound in `plumbing.rs`.

/** The request headers the core reads, in the order `runtime.rs` takes them apart (`head`). */
const HEAD_NAMES = [
  'content-type', 'authorization', 'origin', 'access-control-request-headers', 'x-imagegate-config',
  'x-imagegate-cache', 'cache-control', 'if-none-match', 'prefer', 'ouro-action-id', 'ouro-webhook-url',
  'ouro-webhook-token', 'ouro-route-id', 'content-length',
];
/** Stands for an absent header: no header value can hold a NUL (the Fetch standard). */
const ABSENT = '\0';

/**
 * `request`'s method, URL and the headers of `HEAD_NAMES`, one per line: a header value never
 * holds a line break, so the lines cannot be confused.
 */
export function head(request) {
  const { headers } = request;
  let text = `${request.method}\n${request.url}`;
  for (const name of HEAD_NAMES) text += `\n${headers.get(name) ?? ABSENT}`;
  return text;
}

/** The headers of `lines` (`name\0value` lines; a repeated name keeps its last value). */
function headersOf(lines) {
  const headers = new Headers();
  if (lines === '') return headers;
  for (const line of lines.split('\n')) {
    const at = line.indexOf('\0');
    headers.set(line.slice(0, at), line.slice(at + 1));
  }
  return headers;
}

/** What a call's promise rejects with when its time is up. */
export const TIMED_OUT = 'imagegate: the call timed out';

/**
 * Calls `url` (no redirects followed) within `limitMs`, and reads a small answer's body whole
 * (an unencoded one of declared length at most `wholeBytes`) within the same limit: one timer.
 * `headerLines` holds `name\0value` lines. Resolves to the answer's response, its head as
 * lines (status, retry-after, retry-after-ms, content-type, location, length or empty) and,
 * for a small answer, its body; rejects with `TIMED_OUT` when the time is up first (a late
 * answer's body is then cancelled) or with the runtime's error.
 */
export function call(url, method, headerLines, body, signal, limitMs, wholeBytes) {
  const init = { method, headers: headersOf(headerLines), redirect: 'manual' };
  if (body !== undefined) init.body = body;
  if (signal !== undefined) init.signal = signal;
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(TIMED_OUT);
    }, limitMs);
    const fail = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(error);
    };
    fetch(url, init).then((response) => {
      if (done) {
        response.body?.cancel().catch(() => {});
        return;
      }
      const answer = response.headers;
      const encoded = (answer.get('content-encoding') ?? 'identity').trim().toLowerCase() !== 'identity';
      const declared = answer.get('content-length');
      // The runtime decodes gzip and brotli but keeps the encoded length: trusted unencoded only.
      const length = !encoded && declared !== null && /^\d+$/.test(declared) ? declared : '';
      const meta = [response.status, answer.get('retry-after') ?? ABSENT, answer.get('retry-after-ms') ?? ABSENT,
        answer.get('content-type') ?? ABSENT, answer.get('location') ?? ABSENT, length].join('\n');
      const finish = (whole) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ response, meta, whole });
      };
      if (response.body !== null && length !== '' && Number(length) <= wholeBytes) {
        response.arrayBuffer().then((buffer) => finish(new Uint8Array(buffer)), fail);
      } else {
        finish(undefined);
      }
    }, fail);
  });
}

/**
 * The response of `status` with the headers of `headerLines` (`name\0value` lines) and `body`
 * (a buffer, a stream, or null): one call for what would be a call per header.
 */
export function respond(status, headerLines, body) {
  return new Response(body, { status, headers: headersOf(headerLines) });
}
