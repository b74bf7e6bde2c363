// End to end: every generation recorded as an action on the local D1 that `wrangler dev`
// simulates (the project's migrations applied), readable by the key that made it, with its
// images in the local R2 bucket, served by signed URLs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import OpenAI from 'openai';
import { OpenRouter } from '@openrouter/sdk';

import { startMockUpstream } from './mock-upstream.mjs';
import { FILES_SECRET, startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-actions-a';
const OTHER_KEY = 'sk-imagegate-actions-b';
const digest = (key) => createHash('sha256').update(key).digest('hex');
let mock;
let gateway;
const DAY_MS = 86_400_000;
const NOW = Date.now();
/** The stored image of a seeded action (`file_`, 32 hex digits, the image's index). */
const seededFile = (digit) => `file_${digit.repeat(32)}_0`;
/** An action of key `a` recorded `days` ago, as a row the migrations' table holds, naming its image `file`. */
const oldAction = (id, days, file) => {
  const at = NOW - days * DAY_MS;
  const response = file ? { created: Math.floor(at / 1000), data: [{ file_id: file, media_type: 'image/png' }] } : undefined;
  const record = JSON.stringify({ id, object: 'action', request_id: 'req_seed', key: 'a', model: 'mock/ok', status: 'success', http_status: 200, attempts: [], created_at: at, finished_at: at, latency_ms: 5, response });
  return `INSERT INTO actions (id, key_id, model, status, http_status, created_at, latency_ms, cost_usd, record) VALUES ('${id}', 'a', 'mock/ok', 'success', 200, ${at}, 5, NULL, '${record}')`;
};

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 20000,
      retention_days: 30,
      providers: [
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
        { id: 'imagegate', kind: 'test_pattern' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate' },
        { id: 'mock/ok', provider: 'mock', upstream_model: 'ok', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'mock/limited-then-ok', provider: 'mock', upstream_model: 'seq:429,200', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
      ],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)} b:${digest(OTHER_KEY)}`, MOCK_API_KEY: 'sk-mock' },
    sql: [oldAction('act_seed_400d', 400, seededFile('a')), oldAction('act_seed_31d', 31), oldAction('act_seed_29d', 29, seededFile('b'))],
    objects: ['a', 'b'].map((digit) => ({ key: seededFile(digit), bytes: PNG_SIGNATURE, contentType: 'image/png' })),
    testScheduled: true,
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A URL for file `id` signed as the gateway signs them, expiring at `expires` (Unix seconds). */
const signedPath = (id, expires) => {
  const sig = createHmac('sha256', FILES_SECRET).update(`imagegate-file-v1\n${id}\n${expires}`).digest('base64url');
  return `/v1/files/${id}?expires=${expires}&sig=${sig}`;
};

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
  assert.equal(action.images.asked, 1);
  assert.equal(action.request.model, 'mock/limited-then-ok');
  assert.equal(action.request.prompt, undefined, 'no prompt unless log_prompts');
  assert.equal(action.request_id, response.headers.get('x-request-id'));
  const other = await read(id, OTHER_KEY);
  assert.equal(other.status, 404, 'another key does not learn it exists');
  assert.equal((await other.json()).error.code, 'action_not_found');
});

const list = async (query, key) => {
  const res = await fetch(`${gateway.baseURL}/v1/actions?${query}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
};

/** Generates with `key` and gives the answer's action id. */
const generate = async (key) => {
  const client = new OpenAI({ apiKey: key, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
  const { response } = await client.images.generate({ model: 'mock/ok', prompt: 'a listed harbour' }).withResponse();
  return response.headers.get('x-imagegate-action-id');
};

test('the history pages newest first with no duplicates or gaps while new actions are recorded', async () => {
  const made = [];
  for (let i = 0; i < 5; i++) made.push(await generate(OTHER_KEY));
  // Recorded after the answers: wait until all five are listed.
  let whole;
  for (let i = 0; i < 40; i++) {
    whole = await list('limit=100', OTHER_KEY);
    if (whole.data.length === 5) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(new Set(whole.data.map((a) => a.id)), new Set(made));
  assert.equal(whole.data[0].id, made[4], 'the newest first');
  const order = whole.data.map((a) => a.id);

  const first = await list('limit=2', OTHER_KEY);
  assert.equal(first.object, 'list');
  assert.equal(first.has_more, true);
  const seen = first.data.map((a) => a.id);
  // Two more generations land between pages.
  await Promise.all([generate(OTHER_KEY), generate(OTHER_KEY)]);
  await new Promise((r) => setTimeout(r, 300));
  let cursor = first.last_id;
  for (;;) {
    const page = await list(`limit=2&after=${cursor}`, OTHER_KEY);
    seen.push(...page.data.map((a) => a.id));
    if (!page.has_more) break;
    cursor = page.last_id;
  }
  assert.deepEqual(seen, order, 'the five, each once, in the order of the whole listing');
  assert.equal((await list('status=success&limit=100', OTHER_KEY)).data.length >= 5, true);
  const mine = await list('limit=100', KEY);
  assert.ok(mine.data.every((a) => !made.includes(a.id)), 'another key sees none of them');
});

test("@openrouter/sdk's generations.getGeneration reads an action, and another key's 404", async () => {
  const id = await generate(KEY);
  const client = (key) => new OpenRouter({ apiKey: key, serverURL: `${gateway.baseURL}/api/v1`, retryConfig: { strategy: 'none' } });
  let generation;
  for (let i = 0; i < 20 && !generation; i++) {
    generation = await client(KEY).generations.getGeneration({ id }).catch((error) => {
      if (error.statusCode !== 404) throw error;
      return new Promise((r) => setTimeout(r, 100));
    });
  }
  assert.equal(generation.data.id, id);
  assert.equal(generation.data.apiType, 'image');
  assert.equal(generation.data.model, 'mock/ok');
  assert.equal(generation.data.totalCost, 0.04);
  assert.equal(generation.data.providerName, 'mock');
  assert.ok(!Number.isNaN(Date.parse(generation.data.createdAt)));
  await assert.rejects(client(OTHER_KEY).generations.getGeneration({ id }), (error) => error.statusCode === 404);
});

test('url answers from a base64-only provider load from /v1/files as the same PNG, signed; a forged or expired URL is 403', async () => {
  const client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
  const asked = { model: 'imagegate/test-pattern', prompt: 'a stored lighthouse', size: '256x256' };
  const { data, response } = await client.images.generate({ ...asked, response_format: 'url' }).withResponse();
  const url = new URL(data.data[0].url);
  assert.equal(url.origin, gateway.baseURL, "the gateway's own URL");
  const loaded = await fetch(url);
  assert.equal(loaded.status, 200, 'no key needed');
  assert.equal(loaded.headers.get('content-type'), 'image/png');
  assert.match(loaded.headers.get('cache-control'), /^private, max-age=(3600|359\d)$/);
  const bytes = Buffer.from(await loaded.arrayBuffer());
  const inline = await client.images.generate({ ...asked, response_format: 'b64_json' });
  assert.deepEqual(bytes, Buffer.from(inline.data[0].b64_json, 'base64'), 'the same PNG bytes');

  const fileId = url.pathname.split('/').pop();
  const forged = await fetch(`${gateway.baseURL}/v1/files/${fileId}?expires=${url.searchParams.get('expires')}&sig=${'A'.repeat(43)}`);
  assert.equal(forged.status, 403);
  assert.equal((await forged.json()).error.code, 'file_url_invalid');
  const expired = await fetch(`${gateway.baseURL}${signedPath(fileId, Math.floor(Date.now() / 1000) - 1)}`);
  assert.equal(expired.status, 403);
  assert.equal((await expired.json()).error.code, 'file_url_expired');

  const byKey = (key) => fetch(`${gateway.baseURL}/v1/files/${fileId}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal((await byKey(KEY)).status, 200, 'its own key needs no signature');
  const theirs = await byKey(OTHER_KEY);
  assert.equal(theirs.status, 404, 'another key does not learn it exists');
  assert.equal((await theirs.json()).error.code, 'file_not_found');

  // The action refers to the image by a freshly signed URL, never inline.
  const id = response.headers.get('x-imagegate-action-id');
  let action;
  for (let i = 0; i < 20 && !action?.response; i++) {
    const res = await read(id, KEY);
    action = res.status === 200 ? await res.json() : undefined;
    if (!action?.response) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(action.response.data[0].file_id, fileId);
  assert.equal(action.response.data[0].b64_json, undefined);
  assert.deepEqual(Buffer.from(await (await fetch(action.response.data[0].url)).arrayBuffer()), bytes);
});

test('the scheduled handler deletes the actions older than retention_days and keeps the rest', async () => {
  const seeded = async () => (await list('limit=100', KEY)).data.map((a) => a.id).filter((id) => id.startsWith('act_seed_'));
  assert.deepEqual(await seeded(), ['act_seed_29d', 'act_seed_31d', 'act_seed_400d'], 'newest first');
  assert.equal((await fetch(`${gateway.baseURL}${signedPath(seededFile('a'), Math.floor(Date.now() / 1000) + 60)}`)).status, 200, 'there before the run');
  const recent = await list('limit=100', KEY);
  const run = await fetch(`${gateway.baseURL}/__scheduled?cron=17+3+*+*+*`);
  assert.equal(run.status, 200, await run.text());
  assert.deepEqual(await seeded(), ['act_seed_29d']);
  const kept = (await list('limit=100', KEY)).data.map((a) => a.id);
  assert.deepEqual(kept, recent.data.map((a) => a.id).filter((id) => !['act_seed_31d', 'act_seed_400d'].includes(id)), 'the generations of this run stay');
  assert.match(gateway.output(), /"retention":\{"retention_days":30,"cutoff_ms":\d+,"deleted":2,"files":1,"more":false\}/);
  const file = (digit) => fetch(`${gateway.baseURL}${signedPath(seededFile(digit), Math.floor(Date.now() / 1000) + 60)}`);
  assert.equal((await file('a')).status, 404, "the old action's image went with it");
  assert.equal((await file('b')).status, 200, "the kept action's image stays");
});

test('a database that fails the write still answers the client, and the failed write is logged', async () => {
  const broken = await startGateway({
    config: {
      providers: [{ id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' }],
      models: [{ id: 'mock/ok', provider: 'mock', upstream_model: 'ok' }],
    },
    secrets: { IMAGEGATE_KEYS: `a:${digest(KEY)}`, MOCK_API_KEY: 'sk-mock' },
    migrate: false,
  });
  try {
    const client = new OpenAI({ apiKey: KEY, baseURL: `${broken.baseURL}/v1`, maxRetries: 0 });
    const { data, response } = await client.images.generate({ model: 'mock/ok', prompt: 'unrecorded' }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.data.length, 1);
    const id = response.headers.get('x-imagegate-action-id');
    for (let i = 0; i < 40 && !broken.output().includes(`the action ${id} was not recorded`); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(broken.output(), new RegExp(`"warning":"the action ${id} was not recorded"`));
    const listed = await fetch(`${broken.baseURL}/v1/actions`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(listed.status, 503);
    assert.equal((await listed.json()).error.code, 'storage_unavailable');
    assert.equal(listed.headers.get('x-should-retry'), 'true');
  } finally {
    await broken.stop();
  }
}, { timeout: 180_000 });
