// End to end: one test per provider adapter through `wrangler dev`, with the official OpenAI
// client as the caller and a mock that speaks each provider's own wire format, including the
// asynchronous create-then-poll flows, raw image bytes and image downloads, and a fallback from
// one provider kind to another.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import http from 'node:http';

import { PNG_B64, startProviderMock } from './provider-mock.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-providers-key';
const SECRETS = {
  AZURE_KEY: 'azure-secret-1', COMPAT_KEY: 'compat-secret-2', OPENROUTER_KEY: 'or-secret-3', STABILITY_KEY: 'stab-secret-4',
  GOOGLE_KEY: 'goog-secret-5', REPLICATE_KEY: 'rep-secret-6', BFL_KEY: 'bfl-secret-7',
};
let mock;
let foreign;
let gateway;
let client;

/** A server that stands for a host the gateway must never call; it records whatever reaches it. */
async function startForeignHost() {
  const calls = [];
  const server = http.createServer((req, res) => { calls.push({ method: req.method, url: req.url, headers: req.headers }); res.writeHead(200); res.end('{}'); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, calls, stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }) };
}

before(async () => {
  mock = await startProviderMock();
  foreign = await startForeignHost();
  // The mock serves images over plain http on loopback: the operator allows exactly its origin.
  const downloads = { download_hosts: [mock.base] };
  const provider = (id, kind, prefix, secret, extra = {}) => ({ id, kind, base_url: `${mock.base}${prefix}`, api_key_secret: secret, ...extra });
  // The plain path: no file store and no runner, so upstream answers are relayed as they
  // stream from the worker itself and URLs stay the providers' (actions.test.mjs and
  // async.test.mjs cover a deployment that keeps images and runs generations apart).
  gateway = await startGateway({
    files: false,
    runner: false,
    config: {
      deadline_ms: 30000,
      providers: [
        provider('azure', 'azure_openai', '/azure', 'AZURE_KEY', { api_version: '2025-04-01-preview' }),
        provider('compat', 'openai_compatible', '/compat/v1', 'COMPAT_KEY', { key_header: 'x-api-key', allowed_parameters: ['steps'] }),
        provider('openrouter', 'openrouter', '/openrouter/api/v1', 'OPENROUTER_KEY'),
        provider('stability', 'stability', '/stability', 'STABILITY_KEY'),
        provider('google', 'google_imagen', '/google/v1beta', 'GOOGLE_KEY'),
        provider('replicate', 'replicate', '/replicate/v1', 'REPLICATE_KEY', downloads),
        provider('bfl', 'bfl', '/bfl/v1', 'BFL_KEY', downloads),
        // The same Replicate without download_hosts: the default rules (public https hosts only).
        provider('replicate-default', 'replicate', '/replicate/v1', 'REPLICATE_KEY'),
      ],
      models: [
        { id: 'azure/gpt-image-1', provider: 'azure', upstream_model: 'my-deployment' },
        { id: 'compat/flux', provider: 'compat', upstream_model: 'black-forest-labs/FLUX.1-schnell' },
        { id: 'openrouter/gemini-image', provider: 'openrouter', upstream_model: 'google/gemini-2.5-flash-image' },
        { id: 'stability/core', provider: 'stability', upstream_model: 'core',
          pricing: [{ cost_usd: 0.03, unit: 'image' }], policy: { fallbacks: [{ model: 'google/imagen-4' }] } },
        { id: 'google/imagen-4', provider: 'google', upstream_model: 'imagen-4.0-generate-001', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'replicate/flux-schnell', provider: 'replicate', upstream_model: 'black-forest-labs/flux-schnell' },
        { id: 'bfl/flux-pro', provider: 'bfl', upstream_model: 'flux-pro-1.1' },
        { id: 'replicate-default/flux-schnell', provider: 'replicate-default', upstream_model: 'black-forest-labs/flux-schnell' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: createHash('sha256').update(GATEWAY_KEY).digest('hex'), ...SECRETS },
  });
  client = new OpenAI({ apiKey: GATEWAY_KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
  await foreign?.stop();
});

beforeEach(() => { mock.reset(); mock.setForeignPort(foreign.port); foreign.calls.length = 0; });

/** No provider secret appears in anything the client or the log saw. */
function assertNoSecrets(...texts) {
  for (const secret of Object.values(SECRETS)) {
    for (const text of [...texts, gateway.output()]) assert.ok(!text.includes(secret), `secret ${secret} leaked`);
  }
}

test('azure_openai: the deployment URL, api-version and api-key header; the answer relayed', async () => {
  const { data, response } = await client.images.generate({ model: 'azure/gpt-image-1', prompt: 'a fox', size: '1024x1024' }).withResponse();
  assert.equal(data.data[0].b64_json, PNG_B64);
  const [call] = mock.callsOf('azure');
  assert.equal(call.path, '/azure/openai/deployments/my-deployment/images/generations');
  assert.equal(call.query, '?api-version=2025-04-01-preview');
  assert.equal(call.headers['api-key'], SECRETS.AZURE_KEY);
  assert.equal(call.headers.authorization, undefined);
  assert.equal(call.body.prompt, 'a fox');
  assert.equal(response.headers.get('x-imagegate-model'), 'azure/gpt-image-1');
});

test('openai_compatible: its key header and an allowed extra parameter', async () => {
  const data = await client.images.generate({ model: 'compat/flux', prompt: 'a fox', steps: 4 });
  assert.equal(data.data[0].b64_json, PNG_B64);
  const [call] = mock.callsOf('compat');
  assert.equal(call.path, '/compat/v1/images/generations');
  assert.equal(call.headers['x-api-key'], SECRETS.COMPAT_KEY);
  assert.deepEqual([call.body.model, call.body.steps], ['black-forest-labs/FLUX.1-schnell', 4]);
  await assert.rejects(client.images.generate({ model: 'compat/flux', prompt: 'a fox', guidance: 2 }), (e) => e.status === 400 && e.param === 'guidance');
});

test('openrouter: its image API, the answer translated, its reported cost passed on', async () => {
  const { data, response } = await client.images.generate({ model: 'openrouter/gemini-image', prompt: 'a fox', size: '1024x1024' }).withResponse();
  assert.deepEqual(data.data, [{ b64_json: PNG_B64 }]);
  assert.equal(response.headers.get('x-imagegate-cost-usd'), '0.0123');
  const [call] = mock.callsOf('openrouter');
  assert.equal(call.path, '/openrouter/api/v1/images');
  assert.equal(call.headers.authorization, `Bearer ${SECRETS.OPENROUTER_KEY}`);
  assert.equal(call.body.model, 'google/gemini-2.5-flash-image');
});

test('stability: a multipart request per image, JSON and raw-bytes answers, sizes as aspect ratios', async () => {
  mock.script('stability', ['ok', 'raw']);
  const { data, response } = await client.images.generate({ model: 'stability/core', prompt: 'a fox', n: 2, size: '1792x1024', response_format: 'b64_json' }).withResponse();
  assert.deepEqual(data.data.map((d) => d.b64_json), [PNG_B64, PNG_B64]);
  assert.equal(response.headers.get('x-imagegate-cost-usd'), '0.06');
  const calls = mock.callsOf('stability');
  assert.equal(calls.length, 2, 'one call per image');
  for (const call of calls) {
    assert.equal(call.path, '/stability/v2beta/stable-image/generate/core');
    assert.match(call.headers['content-type'], /^multipart\/form-data; boundary=/);
    assert.equal(call.headers.authorization, `Bearer ${SECRETS.STABILITY_KEY}`);
    assert.match(call.body, /name="aspect_ratio"\r\n\r\n16:9\r\n/);
    assert.match(call.body, /name="prompt"\r\n\r\na fox\r\n/);
  }
  await assert.rejects(client.images.generate({ model: 'stability/core', prompt: 'p', quality: 'hd' }), (e) => e.status === 400 && e.param === 'quality');
  assert.equal(mock.callsOf('stability').length, 2, 'refused before any call');
});

test('google_imagen: one predict call for n images, as URLs when asked', async () => {
  const data = await client.images.generate({ model: 'google/imagen-4', prompt: 'a fox', n: 3, size: '1024x1792', response_format: 'url' });
  assert.equal(data.data.length, 3);
  assert.equal(data.data[0].url, `data:image/png;base64,${PNG_B64}`);
  const [call] = mock.callsOf('google');
  assert.equal(call.path, '/google/v1beta/models/imagen-4.0-generate-001:predict');
  assert.equal(call.headers['x-goog-api-key'], SECRETS.GOOGLE_KEY);
  assert.deepEqual(call.body.instances, [{ prompt: 'a fox' }]);
  assert.equal(call.body.parameters.sampleCount, 3);
  assert.equal(call.body.parameters.aspectRatio, '9:16');
  assert.equal(call.body.parameters.includeRaiReason, true, 'so that a refusal says why');
});

test('replicate: created, polled until it succeeds, its output downloaded for b64_json', async () => {
  const data = await client.images.generate({ model: 'replicate/flux-schnell', prompt: 'a fox', response_format: 'b64_json' });
  assert.equal(data.data[0].b64_json, PNG_B64);
  const calls = mock.callsOf('replicate');
  assert.deepEqual(calls.map((c) => c.method), ['POST', 'GET', 'GET'], 'create, then two polls');
  assert.equal(calls[0].path, '/replicate/v1/models/black-forest-labs/flux-schnell/predictions');
  assert.equal(calls[0].body.input.prompt, 'a fox');
  assert.ok(calls.every((c) => c.headers.authorization === `Bearer ${SECRETS.REPLICATE_KEY}`));
  const [download] = mock.callsOf('files');
  assert.equal(download.headers.authorization, undefined, 'no key goes to the image host');
});

test('replicate: a failed poll is asked again, and an image behind a redirect is still downloaded', async () => {
  mock.script('replicate', ['flaky']);
  const { data: first } = await client.images.generate({ model: 'replicate/flux-schnell', prompt: 'a fox', response_format: 'b64_json' }).withResponse();
  assert.equal(first.data[0].b64_json, PNG_B64);
  assert.equal(mock.callsOf('replicate').filter((c) => c.method === 'POST').length, 1, 'the 503 on a poll did not start a second paid job');
  mock.reset();
  mock.script('replicate', ['moved']);
  const moved = await client.images.generate({ model: 'replicate/flux-schnell', prompt: 'a fox', response_format: 'b64_json' });
  assert.equal(moved.data[0].b64_json, PNG_B64);
  assert.equal(mock.callsOf('moved').length, 1);
  assert.equal(mock.callsOf('files').length, 1, 'the redirect was followed');
});

test('replicate: a job still running at the deadline is cancelled', async () => {
  mock.script('replicate', ['never']);
  await assert.rejects(
    client.images.generate({ model: 'replicate/flux-schnell', prompt: 'a fox', timeout: { call_timeout: 3000 }, retry: { count: 3, on_codes: [408] } }),
    (e) => e.status === 524 && /may charge for/.test(e.message),
  );
  assert.equal(mock.callsOf('replicate').filter((c) => c.method === 'POST' && !c.path.endsWith('/cancel')).length, 1, 'one job, not retried');
  const cancel = mock.callsOf('replicate').find((c) => c.path.endsWith('/cancel'));
  assert.ok(cancel, 'the job was cancelled');
  assert.equal(cancel.method, 'POST');
});

test('bfl: created, polled until Ready, the sample URL returned as is', async () => {
  const data = await client.images.generate({ model: 'bfl/flux-pro', prompt: 'a fox', size: '1024x768' });
  assert.match(data.data[0].url, /\/files\/bfl\d+\.png\?sig=abc$/);
  const calls = mock.callsOf('bfl');
  assert.deepEqual(calls.map((c) => c.method), ['POST', 'GET', 'GET', 'GET']);
  assert.equal(calls[0].path, '/bfl/v1/flux-pro-1.1');
  assert.deepEqual([calls[0].body.width, calls[0].body.height], [1024, 768]);
  assert.ok(calls.every((c) => c.headers['x-key'] === SECRETS.BFL_KEY));
});

test('a 529 from one provider kind falls back to another, and the answer is a well-formed OpenAI answer', async () => {
  mock.script('stability', ['529']);
  const { data, response } = await client.images.generate({ model: 'stability/core', prompt: 'a fox', retry: { count: 0 } }).withResponse();
  assert.equal(typeof data.created, 'number');
  assert.deepEqual(data.data, [{ b64_json: PNG_B64 }]);
  assert.equal(response.headers.get('x-imagegate-model'), 'google/imagen-4');
  assert.match(response.headers.get('x-imagegate-attempts'), /^stability\/core;529;\d+, google\/imagen-4;200;\d+$/);
  assert.equal(response.headers.get('x-imagegate-cost-usd'), '0.04');
  assert.equal(mock.callsOf('stability').length, 1);
  assert.equal(mock.callsOf('google').length, 1);
  assertNoSecrets(JSON.stringify(data), JSON.stringify([...response.headers]));
});

test("provider errors keep the provider's message and map onto the gateway's statuses", async () => {
  for (const [kind, model, status, expected] of [
    ['google', 'google/imagen-4', '429', 429], ['bfl', 'bfl/flux-pro', '402', 402], ['replicate', 'replicate/flux-schnell', '422', 400],
    ['openrouter', 'openrouter/gemini-image', '503', 529], ['azure', 'azure/gpt-image-1', '500', 502],
  ]) {
    mock.script(kind, [status]);
    await assert.rejects(client.images.generate({ model, prompt: 'a fox', retry: { count: 0 } }), (e) => {
      assert.equal(e.status, expected, `${kind} ${status}`);
      assert.match(e.message, new RegExp(`${kind} says ${status}`));
      return true;
    });
  }
});

test('bfl: a polling URL that a WHATWG parser reads as another host never gets the key', async () => {
  // `\\` reads as `/`: this polling URL's host:port is the foreign one, whatever its text says.
  mock.script('bfl', ['backslash']);
  const data = await client.images.generate({ model: 'bfl/flux-pro', prompt: 'a fox', size: '1024x768' });
  assert.match(data.data[0].url, /\/files\/bfl\d+\.png\?sig=abc$/);
  assert.equal(foreign.calls.length, 0, 'the foreign host saw no request, so no key');
  const polls = mock.callsOf('bfl').filter((c) => c.method === 'GET');
  assert.ok(polls.length >= 1 && polls.every((c) => c.path === '/bfl/v1/get_result'), 'polled at the configured base instead');
});

test('an image URL on a loopback address is refused without a request, and the job is not paid again', async () => {
  mock.script('replicate', ['foreign-output']);
  await assert.rejects(
    client.images.generate({ model: 'replicate-default/flux-schnell', prompt: 'a fox', response_format: 'b64_json', retry: { count: 3 } }),
    (e) => {
      assert.equal(e.status, 502);
      assert.equal(e.code, 'image_download_failed');
      assert.match(e.message, /not https|IP address/);
      return true;
    },
  );
  assert.equal(foreign.calls.length, 0, 'the private address was never asked');
  assert.equal(mock.callsOf('replicate').filter((c) => c.method === 'POST').length, 1, 'one prediction, final');
});
