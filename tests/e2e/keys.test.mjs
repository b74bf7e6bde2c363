// End to end: managed keys under `wrangler dev`, their records in the local D1 and their exact
// counters in a Durable Object per key. OpenRouter's official SDK manages them (`apiKeys.*`); the
// OpenAI client generates with them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { OpenRouter } from '@openrouter/sdk';

import { startGateway } from './gateway-process.mjs';
import { startMockUpstream } from './mock-upstream.mjs';

const STATIC_KEY = 'sk-imagegate-keys-static';
const MANAGEMENT_KEY = 'sk-imagegate-keys-management';
const digest = (key) => createHash('sha256').update(key).digest('hex');
let gateway;
let upstream;

// The README's token formula for the mock's usage (10 text and 40 image input tokens, 50 output).
const TOKEN_PRICES = { input_text: 0.000005, input_image: 0.00001, output_image: 0.00004 };
const TOKEN_COST = 10 * TOKEN_PRICES.input_text + 40 * TOKEN_PRICES.input_image + 50 * TOKEN_PRICES.output_image;

before(async () => {
  upstream = await startMockUpstream();
  gateway = await startGateway({
    config: {
      providers: [
        { id: 'imagegate', kind: 'test_pattern' },
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${upstream.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'imagegate/free', provider: 'imagegate' },
        {
          id: 'mock/gpt-image-1', provider: 'mock', upstream_model: 'ok',
          pricing: Object.entries(TOKEN_PRICES).map(([billable, cost_usd]) => ({ billable, cost_usd, unit: 'token', ...(billable === 'output_image' ? { max_tokens_per_image: 6240 } : {}) })),
        },
      ],
    },
    secrets: { IMAGEGATE_KEYS: `static:${digest(STATIC_KEY)}`, IMAGEGATE_ADMIN_KEY: MANAGEMENT_KEY, MOCK_API_KEY: 'sk-upstream' },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await upstream?.stop();
});

// The SDK retries 5xx answers for an hour by default; the gateway's answers are final.
const openrouter = (key) => new OpenRouter({ apiKey: key, serverURL: `${gateway.baseURL}/api/v1`, retryConfig: { strategy: 'none' } });
const openai = (key) => new OpenAI({ apiKey: key, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
const generate = (key, body = {}) => openai(key).images.generate({ model: 'imagegate/test-pattern', prompt: 'a lighthouse', size: '64x64', ...body });
const get = (path, key) => fetch(`${gateway.baseURL}${path}`, { headers: { authorization: `Bearer ${key}` } });
const create = async (requestBody) => openrouter(MANAGEMENT_KEY).apiKeys.create({ requestBody: { name: 'e2e', ...requestBody } });
/** A managed key with imagegate's own fields (rpm, models, …), set by PATCH after the SDK made it. */
const keyWith = async (fields) => {
  const { key, data } = await create({});
  const patched = await fetch(`${gateway.baseURL}/api/v1/keys/${data.hash}`, {
    method: 'PATCH', headers: { authorization: `Bearer ${MANAGEMENT_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(fields),
  });
  assert.equal(patched.status, 200, await patched.clone().text());
  return { key, hash: data.hash };
};

test('the SDK creates a key, lists it without its secret, reads /key with it, changes and deletes it', async () => {
  const manager = openrouter(MANAGEMENT_KEY);
  const created = await manager.apiKeys.create({ requestBody: { name: 'ci', limit: 1.5, limitReset: 'monthly' } });
  assert.match(created.key, /^sk-ig-v1-[0-9a-f]{64}$/);
  assert.equal(created.data.limit, 1.5);
  assert.equal(created.data.limitRemaining, 1.5);
  const hash = created.data.hash;

  const listed = await manager.apiKeys.list();
  assert.ok(listed.data.some((key) => key.hash === hash));
  const listedText = await (await get('/api/v1/keys', MANAGEMENT_KEY)).text();
  assert.ok(!listedText.includes(created.key.slice(9)), 'no listing shows a key');

  const own = await openrouter(created.key).apiKeys.getCurrentKeyMetadata();
  assert.equal(own.data.label, created.data.label);
  assert.equal(own.data.limit, 1.5);
  assert.equal(own.data.isManagementKey, false);

  await generate(created.key);
  // After its creation no endpoint shows the key: not the key API, not the history, not usage.
  for (const [path, key] of [[`/api/v1/keys/${hash}`, MANAGEMENT_KEY], ['/api/v1/keys?include_disabled=true', MANAGEMENT_KEY], ['/api/v1/key', created.key],
    ['/v1/actions', created.key], ['/v1/actions', MANAGEMENT_KEY], ['/v1/usage?group_by=key', MANAGEMENT_KEY]]) {
    const text = await (await get(path, key)).text();
    assert.ok(!text.includes(created.key.slice(9)), `${path} shows the key`);
  }
  const afterOne = await openrouter(created.key).apiKeys.getCurrentKeyMetadata();
  assert.equal(afterOne.data.usage, 0.04, 'the generation is charged at once');
  assert.equal(afterOne.data.limitRemaining, 1.46);

  const updated = await manager.apiKeys.update({ hash, requestBody: { limit: 2 } });
  assert.equal(updated.data.limit, 2);
  assert.equal((await manager.apiKeys.get({ hash })).data.limit, 2);

  assert.deepEqual(await manager.apiKeys.delete({ hash }), { deleted: true });
  await assert.rejects(generate(created.key), (error) => error.status === 401);
  assert.equal((await get('/api/v1/key', created.key)).status, 401);
  assert.equal((await get('/v1/actions', created.key)).status, 401);
});

test('a management key cannot generate and a gateway key cannot manage', async () => {
  await assert.rejects(generate(MANAGEMENT_KEY), (error) => error.status === 403 && error.code === 'management_key');
  for (const key of [STATIC_KEY, (await create({})).key]) {
    await assert.rejects(openrouter(key).apiKeys.list(), (error) => error.statusCode === 403);
    assert.equal((await get('/api/v1/keys', key)).status, 403);
  }
});

test('a model outside the key\'s list is a 403 naming it', async () => {
  const { key } = await keyWith({ models: ['imagegate/free'] });
  await assert.rejects(generate(key), (error) => {
    assert.equal(error.status, 403);
    assert.equal(error.type, 'permission_error');
    assert.match(error.message, /imagegate\/test-pattern/);
    return true;
  });
  const allowed = await generate(key, { model: 'imagegate/free' });
  assert.equal(allowed.data.length, 1);
});

test('a burst over rpm gives 429s with retry-after', async () => {
  const { key } = await keyWith({ rpm: 3 });
  const results = await Promise.allSettled(Array.from({ length: 6 }, () => generate(key)));
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
  assert.equal(refused.length, 3);
  for (const { reason } of refused) {
    assert.equal(reason.status, 429);
    assert.equal(reason.code, 'rate_limit_exceeded');
    assert.ok(Number(reason.headers.get('retry-after')) >= 1);
  }
});

test('20 concurrent requests against a budget that fits 5 end with exactly 5 successes and 15 402s', async () => {
  const { key, hash } = await keyWith({ limit: 0.2 });
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => generate(key, { prompt: `p${i}` })));
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
  assert.equal(refused.length, 15);
  for (const { reason } of refused) {
    assert.equal(reason.status, 402);
    assert.equal(reason.code, 'insufficient_quota');
    assert.match(reason.message, /limit is \$0\.2/);
  }
  const keyRecord = (await openrouter(MANAGEMENT_KEY).apiKeys.get({ hash })).data;
  assert.equal(keyRecord.usage, 0.2);
  assert.equal(keyRecord.limitRemaining, 0);
  // OpenRouter's callers get its 402 shape.
  const shaped = await fetch(`${gateway.baseURL}/api/v1/images`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'imagegate/test-pattern', prompt: 'p' }),
  });
  assert.equal(shaped.status, 402);
  assert.equal((await shaped.json()).error.code, 402);
});

test('a token-priced answer costs what the README formula says, in the header, the answer and the ledger', async () => {
  const { key, hash } = await keyWith({ limit: 1 });
  const { data, response } = await openai(key).images.generate({ model: 'mock/gpt-image-1', prompt: 'a cat' }).withResponse();
  assert.equal(data.data.length, 1);
  assert.equal(Number(response.headers.get('x-imagegate-cost-usd')), Number(TOKEN_COST.toFixed(6)));
  const viaOpenRouter = await fetch(`${gateway.baseURL}/api/v1/images`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock/gpt-image-1', prompt: 'a cat' }),
  });
  assert.equal((await viaOpenRouter.json()).usage.cost, Number(TOKEN_COST.toFixed(6)));
  const own = (await openrouter(MANAGEMENT_KEY).apiKeys.get({ hash })).data;
  assert.equal(own.usage, Number((2 * TOKEN_COST).toFixed(6)));
});

test('a key with a budget may not use an unpriced model', async () => {
  const { key } = await keyWith({ limit: 1 });
  await assert.rejects(generate(key, { model: 'imagegate/free' }), (error) => error.status === 403 && error.code === 'unpriced_model');
  const models = await openai(key).models.list();
  assert.deepEqual(models.data.map((m) => [m.id, m.priced]), [['imagegate/test-pattern', true], ['imagegate/free', false], ['mock/gpt-image-1', true]]);
});

test('usage sums match the requests made', async () => {
  const { key } = await keyWith({});
  for (const team of ['art', 'art', 'ads']) {
    await openai(key).post('/images/generations', { body: { model: 'imagegate/test-pattern', prompt: 'p', size: '64x64', metadata: { team } } });
  }
  let usage;
  for (let i = 0; i < 40; i++) {
    usage = await (await get('/v1/usage?group_by=metadata.team', key)).json();
    if (usage.total?.requests === 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(usage.total.requests, 3);
  assert.deepEqual(usage.data.map((row) => [row.group, row.requests, row.cost_usd]), [['ads', 1, 0.04], ['art', 2, 0.08]]);
  const byModel = await (await get('/v1/usage?group_by=model', MANAGEMENT_KEY)).json();
  assert.ok(byModel.total.requests >= 3, 'the management key sees everyone\'s');
});
