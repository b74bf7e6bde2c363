// End to end: every generation recorded as an action on the local D1 that `wrangler dev`
// simulates (the project's migrations applied), readable by the key that made it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import { startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-actions-a';
const OTHER_KEY = 'sk-imagegate-actions-b';
const digest = (key) => createHash('sha256').update(key).digest('hex');
let mock;
let gateway;

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 20000,
      providers: [{ id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' }],
      models: [{ id: 'mock/limited-then-ok', provider: 'mock', upstream_model: 'seq:429,200', pricing: [{ cost_usd: 0.04, unit: 'image' }] }],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)} b:${digest(OTHER_KEY)}`, MOCK_API_KEY: 'sk-mock' },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const read = (id, key) => fetch(`${gateway.baseURL}/v1/actions/${id}`, { headers: { authorization: `Bearer ${key}` } });

test('a generation is recorded with its attempts and cost, and only its key may read it', async () => {
  const client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
  const { response } = await client.images.generate({ model: 'mock/limited-then-ok', prompt: 'a recorded lighthouse', metadata: { team: 'art' } }).withResponse();
  const id = response.headers.get('x-imagegate-action-id');
  assert.match(id, /^act_[0-9a-f]{32}$/);
  // Recorded after the answer: give the write a moment.
  let res;
  for (let i = 0; i < 20; i++) {
    res = await read(id, KEY);
    if (res.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(res.status, 200);
  const action = await res.json();
  assert.equal(action.id, id);
  assert.equal(action.status, 'success');
  assert.deepEqual(action.attempts.map((a) => a.status), [429, 200]);
  assert.equal(action.cost_usd, 0.04);
  assert.equal(action.metadata.team, 'art');
  assert.equal(action.request_id, response.headers.get('x-request-id'));
  const other = await read(id, OTHER_KEY);
  assert.equal(other.status, 404, 'another key does not learn it exists');
  assert.equal((await other.json()).error.code, 'action_not_found');
});
