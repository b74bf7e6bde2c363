// End to end: asynchronous generation. `Prefer: respond-async` answers 202 at once; the job runs
// in its action's Durable Object (the local one `wrangler dev` simulates), apart from the client,
// and is polled to its end; cancel stops one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import { startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-async';
const digest = (key) => createHash('sha256').update(key).digest('hex');
let mock;
let gateway;

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 30000,
      providers: [{ id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' }],
      models: [
        { id: 'mock/slow', provider: 'mock', upstream_model: 'slow-3s', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'mock/very-slow', provider: 'mock', upstream_model: 'slow' },
        { id: 'mock/fails', provider: 'mock', upstream_model: 'seq:400' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)}`, MOCK_API_KEY: 'sk-mock' },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
const startAsync = (body) => fetch(`${gateway.baseURL}/v1/images/generations`, {
  method: 'POST', headers: { ...headers, prefer: 'respond-async' }, body: JSON.stringify(body),
});
const read = async (id) => (await fetch(`${gateway.baseURL}/v1/actions/${id}`, { headers })).json();
/** Polls action `id` until it has finished, or `ms` have passed. */
async function settled(id, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    const action = await read(id);
    if (!['queued', 'in-progress'].includes(action.status) || Date.now() > until) return action;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('respond-async answers 202 at once, and the action is polled to success with its images', async () => {
  const began = Date.now();
  const res = await startAsync({ model: 'mock/slow', prompt: 'an async lighthouse' });
  const took = Date.now() - began;
  assert.equal(res.status, 202, await res.clone().text());
  assert.ok(took < 1500, `answered in ${took} ms, before the 3 s upstream`);
  assert.equal(res.headers.get('preference-applied'), 'respond-async');
  const queued = await res.json();
  assert.equal(queued.status, 'queued');
  assert.equal(res.headers.get('location'), `/v1/actions/${queued.id}`);
  assert.match(res.headers.get('retry-after'), /^\d+$/);

  const polled = await fetch(`${gateway.baseURL}/v1/actions/${queued.id}`, { headers });
  const early = await polled.json();
  assert.ok(['queued', 'in-progress'].includes(early.status), early.status);
  assert.match(polled.headers.get('retry-after'), /^\d+$/);

  const done = await settled(queued.id);
  assert.equal(done.status, 'success', JSON.stringify(done));
  assert.equal(done.cost_usd, 0.04);
  assert.equal(done.created_at, queued.created_at);
  const image = await fetch(done.response.data[0].url);
  assert.equal(image.status, 200);
  assert.equal(mock.callsFor('slow-3s').length, 1, 'one upstream call');
});

test('an upstream failure ends the action error, with its attempts', async () => {
  const queued = await (await startAsync({ model: 'mock/fails', prompt: 'p', retry: { count: 0 } })).json();
  const done = await settled(queued.id);
  assert.equal(done.status, 'error');
  assert.deepEqual(done.attempts.map((a) => a.status), [400]);
  assert.match(done.error, /scripted 400/);
});

test('cancel ends an unfinished action; the OpenAI client sees the 202 body', async () => {
  const client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
  const { data, response } = await client.images.generate({ model: 'mock/very-slow', prompt: 'to cancel' }, { headers: { Prefer: 'respond-async' } }).withResponse();
  assert.equal(response.status, 202);
  assert.equal(data.status, 'queued');
  await new Promise((r) => setTimeout(r, 300));
  const cancelled = await (await fetch(`${gateway.baseURL}/v1/actions/${data.id}/cancel`, { method: 'POST', headers })).json();
  assert.equal(cancelled.status, 'error');
  assert.equal(cancelled.error, 'cancelled');
  assert.equal((await read(data.id)).error, 'cancelled');
});

test('a run killed mid-call is not run again: one upstream call in all, and the action says the outcome is unknown', { timeout: 120_000 }, async () => {
  const queued = await (await startAsync({ model: 'mock/very-slow', prompt: 'interrupted' })).json();
  // Wait until the call has reached the upstream, then kill the runtime under it.
  for (let i = 0; i < 50 && mock.callsFor('slow').filter((c) => c.body.prompt === 'interrupted').length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(mock.callsFor('slow').filter((c) => c.body.prompt === 'interrupted').length, 1);
  await gateway.crash();
  const done = await settled(queued.id, 60_000);
  assert.equal(done.status, 'error', JSON.stringify(done));
  assert.match(done.error, /outcome is unknown/);
  await new Promise((r) => setTimeout(r, 11_000)); // past the slow upstream's answer
  assert.equal(mock.callsFor('slow').filter((c) => c.body.prompt === 'interrupted').length, 1, 'never called again');
});
