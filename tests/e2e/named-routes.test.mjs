// End to end: routes (named endpoints with defaults, locked fields and visibility), their
// history and their statistics computed in the local D1 that `wrangler dev` simulates.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import { startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-routes-a';
const OTHER_KEY = 'sk-imagegate-routes-b';
const MANAGEMENT_KEY = 'sk-imagegate-routes-management';
const digest = (key) => createHash('sha256').update(key).digest('hex');
const THUMBS = '6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6';
let gateway;

before(async () => {
  gateway = await startGateway({
    config: {
      providers: [{ id: 'imagegate', kind: 'test_pattern' }],
      models: [{ id: 'imagegate/test-pattern', provider: 'imagegate' }],
      routes: [
        {
          id: THUMBS, identifier: 'acme/thumbs', name: 'Thumbnails', model: 'imagegate/test-pattern',
          defaults: { size: '64x64', n: 2 }, overridable: ['prompt', 'user'],
        },
        { id: '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', identifier: 'acme/secret', visibility: 'private', keys: ['b'], model: 'imagegate/test-pattern' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)} b:${digest(OTHER_KEY)}`, IMAGEGATE_ADMIN_KEY: MANAGEMENT_KEY },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
});

const client = (key) => new OpenAI({ apiKey: key, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
const get = (path, key) => fetch(`${gateway.baseURL}${path}`, { headers: { authorization: `Bearer ${key}` } });

test("a route's defaults apply, its answer names the action, and a locked field is refused", async () => {
  const used = await client(KEY).post('/routes/acme/thumbs/use', { body: { prompt: 'a harbour' } });
  assert.equal(used.data.length, 2, 'n from the route');
  assert.match(used.action_id, /^act_[0-9a-f]{32}$/);
  const png = Buffer.from(used.data[0].b64_json, 'base64');
  assert.equal(png.readUInt32BE(16), 64, 'the size from the route');

  const viaModel = await client(KEY).images.generate({ model: 'route:acme/thumbs', prompt: 'a harbour', user: 'u-1' });
  assert.equal(viaModel.data.length, 2);

  await assert.rejects(client(KEY).post('/routes/acme/thumbs/use', { body: { prompt: 'a harbour', size: '1024x1024' } }), (error) => {
    assert.equal(error.status, 400);
    assert.equal(error.param, 'size');
    assert.equal(error.code, 'locked_parameter');
    return true;
  });
});

test('a private route is 404 to an unlisted key; the list and the description hold no secret', async () => {
  assert.equal((await get('/v1/routes/acme/secret', KEY)).status, 404);
  await assert.rejects(client(KEY).post('/routes/acme/secret/use', { body: { prompt: 'p' } }), (error) => error.status === 404);
  assert.equal((await get('/v1/routes/acme/secret', OTHER_KEY)).status, 200);
  const listed = await (await get('/v1/routes', KEY)).json();
  assert.deepEqual(listed.data.map((r) => r.identifier), ['acme/thumbs']);
  const thumbs = await (await get(`/v1/routes/${THUMBS}`, KEY)).json();
  assert.equal(thumbs.request_schema.properties.prompt.type, 'string');
  assert.deepEqual(thumbs.fixed, { size: '64x64', n: 2 });
});

test("a route's stats, computed in D1, add up to the requests made, and its history lists them", async () => {
  const before = await (await get('/v1/routes/acme/thumbs/stats?interval=hour', OTHER_KEY)).json();
  assert.equal(before.data.reduce((sum, b) => sum + b.requests, 0), 0);
  for (let i = 0; i < 4; i++) await client(OTHER_KEY).post('/routes/acme/thumbs/use', { body: { prompt: `p${i}` } });
  let stats;
  for (let i = 0; i < 40; i++) {
    stats = await (await get('/v1/routes/acme/thumbs/stats?interval=hour', OTHER_KEY)).json();
    if (stats.data.reduce((sum, b) => sum + b.requests, 0) === 4) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(stats.object, 'route.stats');
  assert.equal(stats.data.length, 24);
  const sum = (field) => stats.data.reduce((total, b) => total + b[field], 0);
  assert.deepEqual([sum('requests'), sum('successes'), sum('errors'), sum('images')], [4, 4, 0, 8]);
  const busy = stats.data.find((b) => b.requests > 0);
  assert.ok(busy.p50_latency_ms <= busy.p95_latency_ms, JSON.stringify(busy));
  const history = await (await get('/v1/routes/acme/thumbs/actions', OTHER_KEY)).json();
  assert.equal(history.data.length, 4);
  assert.ok(history.data.every((a) => a.route_id === THUMBS));
  const filtered = await (await get('/v1/actions?route=acme/thumbs', OTHER_KEY)).json();
  assert.deepEqual(filtered.data.map((a) => a.id), history.data.map((a) => a.id));

  // The management key's view: every key's use of the route (the first test's two included).
  const everyone = await (await get('/v1/routes/acme/thumbs/stats?interval=hour', MANAGEMENT_KEY)).json();
  assert.equal(everyone.data.reduce((total, b) => total + b.requests, 0), 6);
  const all = await (await get('/v1/actions?route=acme/thumbs&limit=100', MANAGEMENT_KEY)).json();
  assert.equal(all.data.length, 6);
  assert.deepEqual(new Set(all.data.map((a) => a.key)), new Set(['a', 'b']));
  const refused = await fetch(`${gateway.baseURL}/v1/routes/acme/thumbs/use`, {
    method: 'POST', headers: { authorization: `Bearer ${MANAGEMENT_KEY}`, 'content-type': 'application/json' }, body: '{"prompt":"p"}',
  });
  assert.equal(refused.status, 403, 'the management key cannot generate');
});
