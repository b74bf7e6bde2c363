// End to end: the exact-match response cache on the local Workers KV that `wrangler dev`
// simulates, with the mock upstream counting calls. A miss generates and stores (after the answer:
// each second request waits for the store), a hit calls no upstream, tenants never share.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { Orq } from '@orq-ai/node';

import { BIG_ANSWER, startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-cache-a';
const OTHER_KEY = 'sk-imagegate-cache-b';
const digest = (key) => createHash('sha256').update(key).digest('hex');
let mock;
let gateway;

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 20000,
      providers: [{ id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' }],
      models: [
        { id: 'mock/ok', provider: 'mock', upstream_model: 'ok', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'mock/big', provider: 'mock', upstream_model: 'big' },
        { id: 'mock/fails', provider: 'mock', upstream_model: 'server-error' },
        { id: 'mock/takes-a-second', provider: 'mock', upstream_model: 'ok-after-1s' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)} b:${digest(OTHER_KEY)}`, MOCK_API_KEY: 'sk-mock' },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const client = (key = KEY) => new OpenAI({ apiKey: key, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
const cache = { type: 'exact_match', ttl: 60 };
/** The store happens after the answer; give it a moment before asking again. */
const stored = () => new Promise((r) => setTimeout(r, 500));

test('a miss calls the upstream and stores; the same request then hits with no call and no cost', async () => {
  const before = mock.callsFor('ok').length;
  const prompt = `a lighthouse ${Date.now()}`;
  const miss = await client().images.generate({ model: 'mock/ok', prompt, cache }).withResponse();
  assert.equal(miss.response.headers.get('x-imagegate-cache'), 'MISS');
  await stored();
  const hit = await client().images.generate({ model: 'mock/ok', prompt, cache }).withResponse();
  assert.equal(hit.response.headers.get('x-imagegate-cache'), 'HIT');
  assert.equal(hit.response.headers.get('x-imagegate-cost-usd'), '0');
  assert.ok(Number(hit.response.headers.get('age')) >= 0);
  assert.notEqual(hit.response.headers.get('x-request-id'), miss.response.headers.get('x-request-id'));
  assert.deepEqual(hit.data.data, miss.data.data);
  assert.equal(hit.data.created, miss.data.created);
  assert.equal(mock.callsFor('ok').length - before, 1, 'one upstream call for two answers');
});

test('another tenant misses; refresh generates again; no-store neither reads nor writes', async () => {
  const prompt = `a harbour ${Date.now()}`;
  const before = mock.callsFor('ok').length;
  await client().images.generate({ model: 'mock/ok', prompt, cache });
  await stored();
  const other = await client(OTHER_KEY).images.generate({ model: 'mock/ok', prompt, cache }).withResponse();
  assert.equal(other.response.headers.get('x-imagegate-cache'), 'MISS', 'tenants never share');
  const refreshed = await client().images.generate({ model: 'mock/ok', prompt, cache }, { headers: { 'x-imagegate-cache': 'refresh' } }).withResponse();
  assert.equal(refreshed.response.headers.get('x-imagegate-cache'), 'REFRESH');
  const noStore = await client().images.generate({ model: 'mock/ok', prompt: `${prompt} once`, cache }, { headers: { 'cache-control': 'no-store' } }).withResponse();
  assert.equal(noStore.response.headers.get('x-imagegate-cache'), 'BYPASS');
  await stored();
  const again = await client().images.generate({ model: 'mock/ok', prompt: `${prompt} once`, cache }).withResponse();
  assert.equal(again.response.headers.get('x-imagegate-cache'), 'MISS', 'no-store wrote nothing');
  assert.equal(mock.callsFor('ok').length - before, 5);
});

test('an error is not cached', async () => {
  const prompt = `a storm ${Date.now()}`;
  for (let i = 0; i < 2; i++) {
    await assert.rejects(client().images.generate({ model: 'mock/fails', prompt, cache, retry: { count: 0 } }), (e) => {
      assert.equal(e.status, 502);
      assert.equal(e.headers.get('x-imagegate-cache'), 'BYPASS');
      return true;
    });
    await stored();
  }
  assert.equal(mock.callsFor('server-error').length >= 2, true, 'each request asked the upstream');
});

test('a 2 MB answer round-trips through the cache byte for byte', async () => {
  const prompt = `a big one ${Date.now()}`;
  const before = mock.callsFor('big').length;
  const miss = await client().images.generate({ model: 'mock/big', prompt, cache });
  await stored();
  const hit = await client().images.generate({ model: 'mock/big', prompt, cache }).withResponse();
  assert.equal(hit.response.headers.get('x-imagegate-cache'), 'HIT');
  assert.equal(hit.data.data[0].b64_json, JSON.parse(BIG_ANSWER).data[0].b64_json);
  assert.equal(hit.data.data[0].b64_json, miss.data[0].b64_json);
  assert.equal(mock.callsFor('big').length - before, 1);
});

test("orq's client: its cache field gives a hit on the second call", async () => {
  const orq = new Orq({ apiKey: KEY, serverURL: gateway.baseURL });
  const prompt = `an orq lighthouse ${Date.now()}`;
  const before = mock.callsFor('ok').length;
  for (let i = 0; i < 2; i++) {
    const image = await orq.router.images.generations.create({ model: 'mock/ok', prompt, n: 1, cache: { type: 'exact_match', ttl: 120 } });
    assert.equal(image.data.length, 1);
    await stored();
  }
  assert.equal(mock.callsFor('ok').length - before, 1);
});

test("OpenRouter's shape hits too, with usage.cost 0", async () => {
  const body = { model: 'mock/ok', prompt: `an openrouter lighthouse ${Date.now()}`, cache };
  const post = () => fetch(`${gateway.baseURL}/api/v1/images`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const miss = await post();
  assert.equal(miss.headers.get('x-imagegate-cache'), 'MISS');
  assert.equal((await miss.json()).usage.cost, 0.04);
  await stored();
  const hit = await post();
  assert.equal(hit.headers.get('x-imagegate-cache'), 'HIT');
  assert.equal((await hit.json()).usage.cost, 0);
});

test('eight identical requests at once make one paid generation, and all eight get the image', async () => {
  const prompt = `eight lighthouses ${Date.now()}`;
  const before = mock.callsFor('ok-after-1s').length;
  const answers = await Promise.all(Array.from({ length: 8 }, () => client().images.generate({ model: 'mock/takes-a-second', prompt, cache }).withResponse()));
  assert.equal(mock.callsFor('ok-after-1s').length - before, 1, 'one upstream call');
  for (const { data } of answers) assert.equal(data.data[0].b64_json, answers[0].data.data[0].b64_json);
  const coalesced = answers.filter(({ response }) => response.headers.get('x-imagegate-coalesced') === 'true');
  assert.equal(coalesced.length, 7, 'seven waited for the first');
  assert.ok(coalesced.every(({ response }) => response.headers.get('x-imagegate-cache') === 'HIT'));
});
