// End to end: the built worker under `wrangler dev`, a scripted mock upstream, and the official
// `openai` npm client as the caller.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import { BIG_ANSWER, MOCK_MODELS, USAGE, startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-e2e-key';
const PROVIDER_KEY = 'sk-mock-provider-secret-4242';
const DEADLINE_MS = 1500;
const MAX_BODY_BYTES = 65536;

let mock;
let gateway;
/** Every response the gateway gave, as text, to prove no secret ever left it. */
const seen = [];

async function recordingFetch(url, init) {
  const res = await fetch(url, init);
  const text = await res.clone().text();
  seen.push(`${res.status} ${JSON.stringify([...res.headers])} ${text}`);
  return res;
}

function client(options = {}) {
  return new OpenAI({ apiKey: GATEWAY_KEY, baseURL: `${gateway.baseURL}/v1`, fetch: recordingFetch, ...options });
}

/** A raw POST to the generations endpoint, for checks the client hides (headers, statuses). */
function post(body, { headers = {}, auth = GATEWAY_KEY } = {}) {
  return recordingFetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

before(async () => {
  mock = await startMockUpstream();
  // The plain path: no file store and no runner, so upstream answers are relayed as they
  // stream from the worker itself and URLs stay the providers' (actions.test.mjs and
  // async.test.mjs cover a deployment that keeps images and runs generations apart).
  gateway = await startGateway({
    files: false,
    runner: false,
    config: {
      deadline_ms: DEADLINE_MS,
      max_body_bytes: MAX_BODY_BYTES,
      cors: { allowed_origins: ['https://app.example'] },
      default_model: 'imagegate/test-pattern',
      // One attempt per request, so each test here sees exactly one upstream call; the routing
      // policy has its own tests (routing.test.mjs).
      default_policy: { retry: { count: 0 } },
      providers: [
        { id: 'imagegate', kind: 'test_pattern' },
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate' },
        ...MOCK_MODELS.map((name) => ({ id: `mock/${name}`, provider: 'mock', upstream_model: name })),
      ],
    },
    secrets: {
      IMAGEGATE_KEYS: `e2e:${createHash('sha256').update(GATEWAY_KEY).digest('hex')}`,
      MOCK_API_KEY: PROVIDER_KEY,
    },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

describe('generation through the official OpenAI client', () => {
  test('relays a generation once, with the upstream model name and the provider key', async () => {
    const image = await client().images.generate({ model: 'mock/ok', prompt: 'a red fox', size: '1024x1024' });
    assert.equal(image.data[0].b64_json, Buffer.from('tiny image').toString('base64'));
    assert.equal(image.data[0].revised_prompt, 'revised');
    assert.deepEqual(image.usage, USAGE);
    const calls = mock.callsFor('ok');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].authorization, `Bearer ${PROVIDER_KEY}`);
    assert.deepEqual(calls[0].body, { prompt: 'a red fox', model: 'ok', n: 1, size: '1024x1024' });
  });

  test('the built-in test pattern answers with real PNGs and no upstream call', async () => {
    const before = mock.calls.length;
    const image = await client().images.generate({ prompt: 'a lighthouse', n: 2, size: '64x48' });
    assert.equal(image.data.length, 2);
    for (const { b64_json } of image.data) {
      const png = Buffer.from(b64_json, 'base64');
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [64, 48], 'IHDR width and height');
    }
    const url = await client().images.generate({ prompt: 'a lighthouse', response_format: 'url', size: '16x16' });
    assert.match(url.data[0].url, /^data:image\/png;base64,iVBORw0KGgo/);
    assert.equal(mock.calls.length, before);
  });

  test('a 2 MB b64_json answer arrives intact', async () => {
    const res = await post({ model: 'mock/big', prompt: 'large' });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(text.length, BIG_ANSWER.length);
    assert.equal(createHash('sha256').update(text).digest('hex'), createHash('sha256').update(BIG_ANSWER).digest('hex'));
    assert.equal(mock.callsFor('big').length, 1);
  });

  test('large answers of unknown length and compressed answers arrive intact and decoded', async () => {
    const digest = (text) => createHash('sha256').update(text).digest('hex');
    for (const model of ['big-chunked', 'big-gzip']) {
      const res = await post({ model: `mock/${model}`, prompt: 'large' });
      assert.equal(res.status, 200, model);
      assert.equal(digest(await res.text()), digest(BIG_ANSWER), model);
    }
    const small = await client().images.generate({ model: 'mock/small-gzip', prompt: 'x' });
    assert.equal(small.data[0].b64_json, Buffer.from('tiny image').toString('base64'));
  });

  test('models are listed in the OpenAI list shape', async () => {
    const ids = [];
    for await (const model of client().models.list()) ids.push(model.id);
    assert.deepEqual(ids, ['imagegate/test-pattern', ...MOCK_MODELS.map((m) => `mock/${m}`)]);
  });
});

describe('client errors', () => {
  test('a wrong key raises AuthenticationError, with WWW-Authenticate', async () => {
    await assert.rejects(client({ apiKey: 'sk-wrong' }).images.generate({ prompt: 'x' }), (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, err.constructor.name);
      assert.equal(err.code, 'invalid_api_key');
      assert.equal(err.headers.get('www-authenticate'), 'Bearer');
      return true;
    });
    const missing = await recordingFetch(`${gateway.baseURL}/v1/images/generations`, { method: 'POST' });
    assert.equal(missing.status, 401);
  });

  test('a bad n raises BadRequestError naming the param, with no upstream call', async () => {
    const before = mock.calls.length;
    await assert.rejects(client().images.generate({ model: 'mock/ok', prompt: 'x', n: 11 }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, err.constructor.name);
      assert.equal(err.param, 'n');
      return true;
    });
    assert.equal(mock.calls.length, before);
  });

  test('malformed JSON, a wrong content type, a huge body and an unknown model get precise errors', async () => {
    const cases = [
      [await post('{"prompt": "x",'), 400, 'invalid_json', null],
      [await post('prompt=x', { headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type', null],
      [await post({ prompt: 'x'.repeat(MAX_BODY_BYTES) }), 413, 'payload_too_large', null],
      [await post({ prompt: 'x', size: 'huge' }), 400, 'invalid_value', 'size'],
      [await post({ prompt: 'x', model: 'nope/nothing' }), 404, 'model_not_found', 'model'],
    ];
    for (const [res, status, code, param] of cases) {
      const body = await res.json();
      assert.equal(res.status, status, JSON.stringify(body));
      assert.equal(body.error.code, code);
      assert.equal(body.error.param, param);
      assert.equal(res.headers.get('x-should-retry'), 'false');
      assert.match(res.headers.get('x-request-id'), /^req_[0-9a-f]{32}$/);
      assert.match(res.headers.get('openai-processing-ms'), /^\d+$/);
    }
  });
});

describe('upstream failures', () => {
  test('a slow upstream past the deadline gives 524 well before the upstream would answer, once', async () => {
    const started = Date.now();
    await assert.rejects(client().images.generate({ model: 'mock/slow', prompt: 'x' }), (err) => {
      assert.equal(err.status, 524);
      assert.equal(err.type, 'timeout_error');
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= DEADLINE_MS && elapsed < 6_000, `answered after ${elapsed} ms; the upstream takes 10000 ms`);
    assert.equal(mock.callsFor('slow').length, 1, 'x-should-retry: false kept the SDK from retrying');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(mock.callsFor('slow')[0].aborted, true, 'the gateway aborted the upstream call');
  });

  test('an upstream 500 is a 502 the SDK does not retry: one paid attempt', async () => {
    await assert.rejects(client().images.generate({ model: 'mock/server-error', prompt: 'x' }), (err) => {
      assert.equal(err.status, 502);
      assert.match(err.message, /The server had an error/);
      return true;
    });
    assert.equal(mock.callsFor('server-error').length, 1);
  });

  test('each upstream failure maps onto the fixed error set', async () => {
    const cases = [
      ['empty', 502, 'false'],
      ['malformed', 502, 'false'],
      ['unauthorized', 502, 'false'],
      ['quota', 402, 'false'],
      ['rate-limited', 429, 'false'],
    ];
    for (const [model, status, retry] of cases) {
      const res = await post({ model: `mock/${model}`, prompt: 'x' });
      const body = await res.json();
      assert.equal(res.status, status, `${model}: ${JSON.stringify(body)}`);
      assert.equal(res.headers.get('x-should-retry'), retry, model);
      assert.equal(typeof body.error.message, 'string');
    }
    const limited = await post({ model: 'mock/rate-limited', prompt: 'x' });
    assert.equal(limited.headers.get('retry-after'), '1');
  });
});

describe('upstreams that misbehave', () => {
  test('an answer that stalls after its first bytes is cut off at the deadline', { timeout: 20_000 }, async () => {
    const started = Date.now();
    // The status has gone when the stall begins, so the client sees a broken answer: a failed
    // fetch or a body that errors or ends short, never a hang and never a complete answer.
    const outcome = await post({ model: 'mock/stall', prompt: 'x' })
      .then((res) => res.text())
      .then((text) => text, (error) => `broken: ${error.message}`);
    const elapsed = Date.now() - started;
    assert.ok(outcome.startsWith('broken') || outcome.length < BIG_ANSWER.length, 'the client never sees a complete answer');
    assert.ok(elapsed < 6_000, `the stream ended after ${elapsed} ms, near the ${DEADLINE_MS} ms deadline`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(mock.callsFor('stall')[0].aborted, true, 'the gateway aborted the upstream call');
  });

  test('a provider message that echoes our key has the key redacted', async () => {
    const res = await post({ model: 'mock/echo-key', prompt: 'x' });
    const body = await res.json();
    assert.equal(res.status, 400);
    assert.match(body.error.message, /Invalid size for key \*\*\*\*\*/);
  });

  test('an upstream redirect is not followed', async () => {
    const res = await post({ model: 'mock/redirect', prompt: 'x' });
    assert.equal(res.status, 502);
    assert.equal(mock.calls.filter((c) => c.path.endsWith('/elsewhere')).length, 0);
    assert.equal(mock.callsFor('redirect').length, 1);
  });
});

describe('browser access', () => {
  test('a preflight from an allowed origin is answered and responses carry CORS headers', async () => {
    const preflight = await recordingFetch(`${gateway.baseURL}/v1/images/generations`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(preflight.headers.get('access-control-allow-headers'), 'authorization, content-type, x-stainless-os');
    const res = await post({ prompt: 'x', size: '16x16' }, { headers: { origin: 'https://app.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example');
    const other = await post({ prompt: 'x', size: '16x16' }, { headers: { origin: 'https://evil.example' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });
});

describe('secrets', () => {
  test('no secret appears in any response or log line', async () => {
    assert.ok(seen.length >= 20, `checked ${seen.length} responses`);
    const digest = createHash('sha256').update(GATEWAY_KEY).digest('hex');
    for (const response of seen) {
      assert.ok(!response.includes(PROVIDER_KEY), `provider key leaked: ${response.slice(0, 300)}`);
      assert.ok(!response.includes('sk-mock'), `part of the provider key leaked: ${response.slice(0, 300)}`);
      assert.ok(!response.includes(digest), 'key digest leaked');
    }
    const logs = gateway.output();
    assert.match(logs, /"request_id":"req_/, 'the gateway logged its request lines');
    for (const secret of [PROVIDER_KEY, GATEWAY_KEY, 'a red fox']) {
      assert.ok(!logs.includes(secret), `'${secret}' appeared in the logs`);
    }
  });
});
