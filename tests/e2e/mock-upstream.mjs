// A scriptable OpenAI Images upstream on 127.0.0.1. What it does is chosen by the upstream model
// name in the request body (the gateway's config maps public models onto these names), and every
// call is recorded so tests can count exactly how many upstream calls a request cost.
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';

/** A 2 MB b64_json answer, the same bytes for every call. */
export const BIG_ANSWER = JSON.stringify({
  created: 1700000000,
  data: [{ b64_json: randomBytes(1_536_000).toString('base64') }],
});

const SMALL_IMAGE = Buffer.from('tiny image').toString('base64');
/** `usage` as gpt-image-1 reports it. */
export const USAGE = { total_tokens: 100, input_tokens: 50, output_tokens: 50, input_tokens_details: { text_tokens: 10, image_tokens: 40 } };
const SMALL_ANSWER = JSON.stringify({ created: 1700000000, data: [{ b64_json: SMALL_IMAGE, revised_prompt: 'revised' }], usage: USAGE });

/** One server-sent event of an image stream, as OpenAI writes it. */
function imageEvent(type, fields) {
  return `event: ${type}\ndata: ${JSON.stringify({ type, created_at: 1700000000, size: '1024x1024', quality: 'low', background: 'opaque', output_format: 'png', ...fields })}\n\n`;
}
/** The partial images and the final image a streaming mock sends (distinct bytes each). */
export const STREAMED_IMAGES = ['first rough', 'second rough', 'final image'].map((text) => Buffer.from(text).toString('base64'));
/** How long a streaming mock waits between its events. */
export const STREAM_GAP_MS = 700;

/**
 * An image stream (for a request with `stream: true`, in JSON or as an edit's form field; a
 * whole answer otherwise): two partial images then the final one, `STREAM_GAP_MS` apart, each
 * event's send time kept on the call (`sentAt`). `end` says how it ends after the partial
 * images: `complete`, `cut` (the connection breaks) or `stall` (nothing more is sent, the
 * connection stays open).
 */
function imageStream(end) {
  return (res, call) => {
    if (String(call.body?.stream) !== 'true') return behaviours.ok(res);
    const of = call.path.endsWith('/edits') ? 'image_edit' : 'image_generation';
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    call.sentAt = [];
    const send = (text) => { call.sentAt.push(Date.now()); res.write(text); };
    const steps = [
      () => send(imageEvent(`${of}.partial_image`, { b64_json: STREAMED_IMAGES[0], partial_image_index: 0 })),
      () => send(imageEvent(`${of}.partial_image`, { b64_json: STREAMED_IMAGES[1], partial_image_index: 1 })),
      () => {
        if (end === 'cut') return res.destroy();
        if (end === 'stall') return undefined;
        send(imageEvent(`${of}.completed`, { b64_json: STREAMED_IMAGES[2], usage: USAGE }));
        return res.end();
      },
    ];
    steps.forEach((step, i) => setTimeout(() => { if (!res.destroyed) step(); }, i * STREAM_GAP_MS).unref());
  };
}

function gzipped(res, body) {
  const compressed = gzipSync(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': compressed.length });
  res.end(compressed);
}

const behaviours = {
  ok: (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(SMALL_ANSWER); },
  big: (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BIG_ANSWER) });
    // Sent in 64 KiB pieces, as a real upstream's body arrives.
    for (let i = 0; i < BIG_ANSWER.length; i += 65536) res.write(BIG_ANSWER.slice(i, i + 65536));
    res.end();
  },
  // No content-length: chunked transfer encoding.
  'big-chunked': (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    for (let i = 0; i < BIG_ANSWER.length; i += 65536) res.write(BIG_ANSWER.slice(i, i + 65536));
    res.end();
  },
  'big-gzip': (res) => gzipped(res, BIG_ANSWER),
  'small-gzip': (res) => gzipped(res, SMALL_ANSWER),
  slow: (res) => { setTimeout(() => behaviours.ok(res), 10_000).unref(); },
  'slow-3s': (res) => { setTimeout(() => behaviours.ok(res), 3_000).unref(); },
  // A generation that takes a second: identical requests arrive while it runs.
  'ok-after-1s': (res) => { setTimeout(() => behaviours.ok(res), 1_000).unref(); },
  // Starts a large answer, then stops sending: the gateway must not hang past its deadline.
  stall: (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BIG_ANSWER.length });
    res.write(BIG_ANSWER.slice(0, 200_000));
  },
  'echo-key': (res, call) => json(res, 400, { error: { message: `Invalid size for key ${call.authorization?.replace('Bearer ', '')}`, type: 'invalid_request_error' } }),
  redirect: (res) => { res.writeHead(307, { location: '/v1/images/generations/elsewhere' }); res.end(); },
  empty: (res) => json(res, 200, { created: 1700000000, data: [] }),
  malformed: (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"created": 17, "da'); },
  // Cut short after its first image began, with a Content-Length that matches what was sent.
  cut: (res) => {
    const body = '{"created": 1, "data": [{"b64_json": ';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  },
  'rate-limited': (res) => json(res, 429, { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }, { 'retry-after': '1' }),
  unauthorized: (res, call) => json(res, 401, { error: { message: `Incorrect API key provided: ${call.authorization}`, type: 'invalid_request_error', code: 'invalid_api_key' } }),
  'server-error': (res) => json(res, 500, { error: { message: 'The server had an error', type: 'server_error' } }),
  quota: (res) => json(res, 429, { error: { message: 'You exceeded your current quota', type: 'insufficient_quota', code: 'insufficient_quota' } }),
  stream: imageStream('complete'),
  'stream-cut': imageStream('cut'),
  'stream-stall': imageStream('stall'),
};

/**
 * `seq:429,200`-style upstream model names script the answers per call: the n-th call with that
 * name gets the n-th entry (the last one repeats). 429s carry `retry-after: 1`; `hang` never
 * answers.
 */
const sequenceCalls = new Map();
function sequence(model) {
  if (typeof model !== 'string' || !model.startsWith('seq:')) return undefined;
  return (res) => {
    const steps = model.slice(4).split(',');
    const n = sequenceCalls.get(model) ?? 0;
    sequenceCalls.set(model, n + 1);
    const step = steps[Math.min(n, steps.length - 1)];
    if (step === 'hang') return;
    if (step === '200') return behaviours.ok(res);
    const headers = step === '429' ? { 'retry-after': '1' } : {};
    json(res, Number(step), { error: { message: `scripted ${step}`, type: 'server_error' } }, headers);
  };
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** A multipart body's text fields, and its files as `{name, sha256, size, type}` in order. */
async function readForm(raw, contentType) {
  const data = await new Response(raw, { headers: { 'content-type': contentType } }).formData();
  const fields = {};
  const files = [];
  for (const [name, value] of data.entries()) {
    if (typeof value === 'string') {
      fields[name] = value;
    } else {
      const bytes = Buffer.from(await value.arrayBuffer());
      files.push({ name, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, type: value.type });
    }
  }
  return { fields, files };
}

/** Starts the mock on an ephemeral loopback port. */
export async function startMockUpstream() {
  const calls = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks);
      let body = null;
      let form = null;
      if ((req.headers['content-type'] ?? '').startsWith('multipart/form-data')) {
        // An edit or a variation: its text fields as `body`, its files by name with their digests.
        form = await readForm(raw, req.headers['content-type']).catch(() => null);
        body = form?.fields ?? null;
      } else {
        try { body = JSON.parse(raw.toString('utf8')); } catch { /* recorded as null */ }
      }
      const call = { method: req.method, path: req.url, authorization: req.headers.authorization, body, files: form?.files ?? [], aborted: false };
      calls.push(call);
      // The caller hung up before the answer was complete (e.g. the gateway aborted at its deadline).
      res.on('close', () => { call.aborted = !res.writableFinished; });
      const behaviour = behaviours[body?.model] ?? sequence(body?.model);
      const paths = ['/v1/images/generations', '/v1/images/edits', '/v1/images/variations'];
      if (req.method !== 'POST' || !paths.includes(req.url) || !behaviour) {
        return json(res, 404, { error: { message: `mock: no behaviour for ${req.method} ${req.url} model=${body?.model}` } });
      }
      behaviour(res, call);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    calls,
    /** The calls whose upstream model was `model`. */
    callsFor: (model) => calls.filter((c) => c.body?.model === model),
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/** The behaviours, i.e. the upstream model names the mock understands. */
export const MOCK_MODELS = Object.keys(behaviours);
