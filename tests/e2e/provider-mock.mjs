// A mock of each provider's own wire format on 127.0.0.1, one path prefix per provider kind
// (`/azure`, `/compat`, `/openrouter`, `/stability`, `/google`, `/replicate`, `/bfl`, and
// `/files` for image downloads). Every call is recorded; `script(kind, steps)` sets how the next
// calls of a kind answer: a status (answered in that provider's error shape), `ok`, or `raw`
// (Stability: the image bytes themselves), or `never` (Replicate: a job that never finishes).
// Asynchronous kinds answer `pending` twice, then finish.
import http from 'node:http';

/** A 1x1 PNG. */
export const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
export const PNG_B64 = PNG.toString('base64');

const OPENAI_ANSWER = { created: 1700000000, data: [{ b64_json: PNG_B64 }] };

/** Each kind's error body for `status`, as its API documents it. */
const errorBody = {
  azure: (status) => ({ error: { code: String(status), message: `azure says ${status}` } }),
  compat: (status) => ({ error: { message: `compat says ${status}`, type: 'server_error' } }),
  openrouter: (status) => ({ error: { code: status, message: `openrouter says ${status}`, metadata: null } }),
  stability: (status) => ({ id: 'err-1', name: status === 429 ? 'rate_limit_exceeded' : 'server_error', errors: [`stability says ${status}`] }),
  google: (status) => ({ error: { code: status, message: `google says ${status}`, status: status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE' } }),
  replicate: (status) => ({ title: 'Error', detail: `replicate says ${status}`, status }),
  bfl: (status) => ({ detail: `bfl says ${status}` }),
};

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

export async function startProviderMock() {
  const calls = [];
  const scripts = new Map();
  const jobs = new Map();
  let port;
  let foreignPort = 9; // set by the tests: a host that must never be called
  const base = () => `http://127.0.0.1:${port}`;
  const nextStep = (kind) => (scripts.get(kind)?.shift() ?? 'ok');

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const text = raw.toString('utf8');
      let body = null;
      try { body = JSON.parse(text); } catch { body = text || null; }
      const url = new URL(req.url, base());
      const kind = url.pathname.split('/')[1];
      const call = { kind, method: req.method, path: url.pathname, query: url.search, headers: req.headers, body };
      calls.push(call);
      const step = ['files', 'moved', 'replicate', 'bfl'].includes(kind) && req.method === 'GET' ? 'ok' : nextStep(kind);
      if (/^\d+$/.test(step)) return send(res, Number(step), errorBody[kind](Number(step)), Number(step) === 429 ? { 'retry-after': '1' } : {});
      switch (kind) {
        case 'azure':
        case 'compat':
          return send(res, 200, OPENAI_ANSWER);
        case 'openrouter':
          return send(res, 200, { created: 1700000000, data: [{ b64_json: PNG_B64, media_type: 'image/png' }], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost: 0.0123 } });
        case 'stability':
          if (step === 'raw') { res.writeHead(200, { 'content-type': 'image/png' }); return res.end(PNG); }
          return send(res, 200, { image: PNG_B64, finish_reason: 'SUCCESS', seed: 42 });
        case 'google':
          return send(res, 200, { predictions: Array.from({ length: body?.parameters?.sampleCount ?? 1 }, () => ({ bytesBase64Encoded: PNG_B64, mimeType: 'image/png' })) });
        case 'replicate':
          return replicate(req, res, url, body, step);
        case 'bfl':
          return bfl(req, res, url, step);
        case 'files':
          res.writeHead(200, { 'content-type': 'image/png' });
          return res.end(PNG);
        case 'moved':
          res.writeHead(302, { location: `${base()}/files/${url.pathname.split('/').pop()}` });
          return res.end();
        default:
          return send(res, 404, { error: { message: `provider mock: nothing at ${req.method} ${url.pathname}` } });
      }
    });
  });

  /** Replicate: created as `starting`, then `processing`, then `succeeded` on the third look. */
  function replicate(req, res, url, body, step) {
    const prediction = (id) => {
      const job = jobs.get(id);
      const status = job.canceled ? 'canceled' : job.looks >= 2 && !job.never ? 'succeeded' : job.looks === 0 ? 'starting' : 'processing';
      const outputs = Array.from({ length: job.outputs }, (_, i) => (job.foreign
        ? `http://127.0.0.1:${foreignPort}/files/${id}-${i}.png`
        : `${base()}/${job.moved ? 'moved' : 'files'}/${id}-${i}.png`));
      return { id, status, output: status === 'succeeded' ? outputs : null, error: null,
        urls: { get: `${base()}/replicate/v1/predictions/${id}`, cancel: `${base()}/replicate/v1/predictions/${id}/cancel` } };
    };
    if (req.method === 'POST' && url.pathname.endsWith('/cancel')) {
      const id = url.pathname.split('/')[4];
      jobs.get(id).canceled = true;
      return send(res, 200, { ...prediction(id), status: 'canceled' });
    }
    if (req.method === 'POST') {
      const id = `rep${jobs.size + 1}`;
      jobs.set(id, { looks: 0, outputs: body?.input?.num_outputs ?? 1, canceled: false, never: step === 'never', moved: step === 'moved', flaky: step === 'flaky',
        foreign: step === 'foreign-output' });
      return send(res, 201, prediction(id));
    }
    const id = url.pathname.split('/').pop();
    const job = jobs.get(id);
    if (!job) return send(res, 404, { detail: 'Not found.' });
    if (job.flaky) {
      job.flaky = false;
      return send(res, 503, { detail: 'replicate is busy' });
    }
    job.looks += 1;
    return send(res, 200, prediction(id));
  }

  /**
   * BFL: a task id and polling URL, `Pending` twice, then `Ready` with a signed sample URL. Step
   * `backslash` gives a polling URL that names the mock's own address after a backslash, which a
   * WHATWG parser (and so `fetch`) reads as `/`: its host is the foreign one.
   */
  function bfl(req, res, url, step) {
    if (req.method === 'POST') {
      const id = `bfl${jobs.size + 1}`;
      jobs.set(id, { looks: 0 });
      const polling = step === 'backslash'
        ? `http://127.0.0.1:${foreignPort}\\127.0.0.1:${port}/bfl/v1/get_result?id=${id}`
        : `${base()}/bfl/v1/get_result?id=${id}`;
      return send(res, 200, { id, polling_url: polling });
    }
    const id = url.searchParams.get('id');
    const job = jobs.get(id);
    if (!job) return send(res, 200, { id, status: 'Task not found' });
    job.looks += 1;
    if (job.looks < 3) return send(res, 200, { id, status: 'Pending', result: null, progress: job.looks * 0.3 });
    return send(res, 200, { id, status: 'Ready', result: { sample: `${base()}/files/${id}.png?sig=abc`, prompt: 'p' } });
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = server.address().port;
  return {
    port,
    base: base(),
    calls,
    jobs,
    callsOf: (kind) => calls.filter((c) => c.kind === kind),
    script: (kind, steps) => scripts.set(kind, [...steps]),
    setForeignPort: (p) => { foreignPort = p; },
    reset: () => { calls.length = 0; scripts.clear(); },
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
