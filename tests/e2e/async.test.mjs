// End to end: asynchronous generation. `Prefer: respond-async` answers 202 at once; the job runs
// in its action's Durable Object (the local one `wrangler dev` simulates), apart from the client,
// and is polled to its end; cancel stops one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import OpenAI from 'openai';

import { startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-async';
/** The OpenAI Python client's interpreter (scripts/setup.sh installs it in .venv). */
const PYTHON = path.join(import.meta.dirname, '../../.venv/bin/python');
const run = promisify(execFile);
const digest = (key) => createHash('sha256').update(key).digest('hex');
let mock;
let gateway;
/** A webhook receiver on 127.0.0.1: every POST it got, with its headers and raw body. */
let receiver;
const received = [];

before(async () => {
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hooks = `http://127.0.0.1:${receiver.address().port}`;
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 30000,
      webhook_hosts: [hooks],
      ouro_hosts: [hooks],
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
  receiver?.close();
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
  await new Promise((r) => setTimeout(r, 300));
  const call = mock.callsFor('slow').find((c) => c.body.prompt === 'to cancel');
  assert.equal(call?.aborted, true, 'the upstream call in flight was aborted');
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

/** The README's webhook verification snippet, as a module. */
async function readmeSnippet() {
  const readme = await readFile(path.join(import.meta.dirname, '../../README.md'), 'utf8');
  const snippet = readme.split('```js\n').map((block) => block.split('\n```')[0]).find((block) => block.includes('verifyWebhook'));
  const dir = await mkdtemp(path.join(tmpdir(), 'imagegate-readme-'));
  const file = path.join(dir, 'verify.mjs');
  await writeFile(file, snippet);
  try {
    return await import(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The callbacks received at `path`, once `count` have come (or after 15 s). */
async function callbacks(path, count = 1) {
  for (let i = 0; i < 150 && received.filter((r) => r.path === path).length < count; i++) await new Promise((r) => setTimeout(r, 100));
  return received.filter((r) => r.path === path);
}

test('a webhook receiver gets one signed POST of the ended action, and the signature verifies', async () => {
  const hooks = `http://127.0.0.1:${receiver.address().port}`;
  const res = await fetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST', headers, body: JSON.stringify({ model: 'mock/slow', prompt: 'hooked', webhook: { url: `${hooks}/hook`, secret: 'whsec_test' } }),
  });
  assert.equal(res.status, 202, 'a webhook makes the request asynchronous');
  const queued = await res.json();
  const [call, ...more] = await callbacks('/hook');
  assert.ok(call, 'the webhook came');
  const signature = call.headers['x-imagegate-signature'];
  const { verifyWebhook } = await readmeSnippet();
  assert.equal(verifyWebhook(signature, call.body, 'whsec_test'), true, "the README's snippet verifies it");
  assert.equal(verifyWebhook(signature, call.body, 'another secret'), false);
  assert.equal(verifyWebhook(signature, call.body.replace('success', 'error'), 'whsec_test'), false, 'a changed body does not verify');
  const [, t, v1] = signature.match(/^t=(\d+),v1=([0-9a-f]{64})$/);
  assert.equal(v1, createHmac('sha256', 'whsec_test').update(`${t}.${call.body}`).digest('hex'));
  const action = JSON.parse(call.body);
  assert.equal(action.id, queued.id);
  assert.equal(action.status, 'success');
  assert.equal((await fetch(action.response.data[0].url)).status, 200, 'its image URL loads');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(more.length + (await callbacks('/hook')).length - 1, 0, 'one POST');
});

test("Ouro's headers get a 202 and Ouro's callback, with its token", async () => {
  const hooks = `http://127.0.0.1:${receiver.address().port}`;
  const res = await fetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST',
    headers: { ...headers, 'ouro-action-id': 'ouro-action-7', 'ouro-webhook-url': `${hooks}/ouro`, 'ouro-webhook-token': 'ouro-token-7', 'ouro-route-id': 'ouro-route-3' },
    body: JSON.stringify({ model: 'mock/slow', prompt: 'for ouro' }),
  });
  assert.equal(res.status, 202);
  const [call] = await callbacks('/ouro');
  assert.equal(call.headers['ouro-webhook-token'], 'ouro-token-7');
  const body = JSON.parse(call.body);
  assert.equal(body.status, 'success');
  assert.equal(body.ouro_action_id, 'ouro-action-7');
  assert.equal(body.ouro_route_id, 'ouro-route-3');
  assert.ok(body.response.data[0].url.startsWith(gateway.baseURL));
});

test('a client that hangs up on a synchronous request loses nothing: the generation ends and is recorded, once', async () => {
  const hangUp = new AbortController();
  const sent = fetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST', headers, signal: hangUp.signal,
    body: JSON.stringify({ model: 'mock/slow', prompt: 'abandoned', metadata: { tag: 'hung-up' } }),
  });
  await new Promise((r) => setTimeout(r, 800));
  hangUp.abort();
  await assert.rejects(sent);
  let found;
  for (let i = 0; i < 100 && found?.status !== 'success'; i++) {
    const listed = await (await fetch(`${gateway.baseURL}/v1/actions?limit=20`, { headers })).json();
    found = listed.data.find((a) => a.metadata?.tag === 'hung-up');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(found?.status, 'success', JSON.stringify(found));
  const lines = gateway.output().split('\n').filter((line) => line.includes(found.request_id));
  assert.ok(lines.some((line) => line.includes('"ran_apart":true')), `generated in its action's Durable Object, apart from the request: ${lines.join('\n')}`);
  assert.equal((await fetch(found.response.data[0].url)).status, 200, 'with its image');
  assert.equal(mock.callsFor('slow-3s').filter((c) => c.body.prompt === 'abandoned').length, 1, 'one upstream call');
});

test('the OpenAI Python client, with extra_headers Prefer: respond-async, sees the 202 body', async () => {
  const script = [
    'import json, os, openai',
    'client = openai.OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"], max_retries=0)',
    'raw = client.images.with_raw_response.generate(model="mock/slow", prompt="from python", extra_headers={"Prefer": "respond-async"})',
    'print(json.dumps({"status": raw.http_response.status_code, "body": raw.parse().to_dict()}))',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-c', script], { env: { ...process.env, KEY, BASE: `${gateway.baseURL}/v1` } });
  const { status, body } = JSON.parse(stdout);
  assert.equal(status, 202);
  assert.equal(body.status, 'queued');
  assert.match(body.id, /^act_/);
  assert.equal((await settled(body.id)).status, 'success');
});

test('a cancelled action with a webhook is told too', async () => {
  const hooks = `http://127.0.0.1:${receiver.address().port}`;
  const res = await fetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST', headers, body: JSON.stringify({ model: 'mock/very-slow', prompt: 'cancel me', webhook: { url: `${hooks}/cancelled`, secret: 'whsec_c' } }),
  });
  const queued = await res.json();
  await new Promise((r) => setTimeout(r, 300));
  await fetch(`${gateway.baseURL}/v1/actions/${queued.id}/cancel`, { method: 'POST', headers });
  const [call] = await callbacks('/cancelled');
  const { verifyWebhook } = await readmeSnippet();
  assert.equal(verifyWebhook(call.headers['x-imagegate-signature'], call.body, 'whsec_c'), true);
  assert.deepEqual([JSON.parse(call.body).status, JSON.parse(call.body).error], ['error', 'cancelled']);
});
