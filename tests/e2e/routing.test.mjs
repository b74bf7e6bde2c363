// End to end: the routing policy (retries, fallbacks, call timeouts) through `wrangler dev`,
// with two mock upstreams scripted per call, counting exactly which one was called how often.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

import { startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-routing-key';
let primary;
let backup;
let gateway;

before(async () => {
  primary = await startMockUpstream();
  backup = await startMockUpstream();
  const model = (id, provider, upstream, aliases = []) => ({ id, provider, upstream_model: upstream, aliases });
  gateway = await startGateway({
    config: {
      deadline_ms: 20000,
      providers: [
        { id: 'primary', kind: 'openai', base_url: `http://127.0.0.1:${primary.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
        { id: 'backup', kind: 'openai', base_url: `http://127.0.0.1:${backup.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        model('primary/limited-then-ok', 'primary', 'seq:429,200'),
        model('primary/always-500', 'primary', 'seq:500', ['always-500']),
        model('primary/cut', 'primary', 'cut'),
        model('primary/hangs', 'primary', 'seq:hang'),
        model('primary/bad-request', 'primary', 'seq:400'),
        model('backup/ok', 'backup', 'ok'),
      ],
    },
    secrets: {
      IMAGEGATE_KEYS: createHash('sha256').update(GATEWAY_KEY).digest('hex'),
      MOCK_API_KEY: 'sk-mock-provider-key',
    },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await primary?.stop();
  await backup?.stop();
});

function client() {
  return new OpenAI({ apiKey: GATEWAY_KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
}

/** The statuses of `x-imagegate-attempts`, without the timings. */
function attempts(headers) {
  return headers.get('x-imagegate-attempts').split(', ').map((a) => a.split(';').slice(0, 2).join(';'));
}

test('a 429 with retry-after is waited out, then the same target answers', async () => {
  const { data, response } = await client().images.generate({ model: 'primary/limited-then-ok', prompt: 'x' }).withResponse();
  assert.equal(data.data.length, 1);
  assert.equal(primary.callsFor('seq:429,200').length, 2);
  assert.deepEqual(attempts(response.headers), ['primary/limited-then-ok;429', 'primary/limited-then-ok;200']);
  assert.equal(response.headers.get('x-imagegate-model'), 'primary/limited-then-ok');
});

test('three 500s exhaust the retries, then the fallback provider answers', async () => {
  const { data, response } = await client().images.generate({
    model: 'primary/always-500', prompt: 'x', retry: { count: 2 }, fallbacks: [{ model: 'backup/ok' }],
  }).withResponse();
  assert.equal(data.data.length, 1);
  assert.equal(primary.callsFor('seq:500').length, 3);
  assert.equal(backup.callsFor('ok').length, 1);
  assert.deepEqual(attempts(response.headers), ['primary/always-500;500', 'primary/always-500;500', 'primary/always-500;500', 'backup/ok;200']);
  assert.equal(response.headers.get('x-imagegate-model'), 'backup/ok');
});

test('a hang past call_timeout moves on to the fallback, and the hung call is cancelled', async () => {
  const before = backup.callsFor('ok').length;
  const started = Date.now();
  const { response } = await client().images.generate({
    model: 'primary/hangs', prompt: 'x', timeout: { call_timeout: 1000 }, fallbacks: [{ model: 'backup/ok' }],
  }).withResponse();
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(attempts(response.headers), ['primary/hangs;524', 'backup/ok;200']);
  assert.equal(backup.callsFor('ok').length, before + 1);
  assert.equal(primary.callsFor('seq:hang').length, 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(primary.callsFor('seq:hang')[0].aborted, true, 'the hung upstream call was cancelled');
});

test('a 400 is neither retried nor sent to the fallback, and says how many attempts were made', async () => {
  await assert.rejects(
    client().images.generate({ model: 'primary/bad-request', prompt: 'x', fallbacks: [{ model: 'backup/ok' }] }),
    (err) => {
      assert.equal(err.status, 400);
      assert.match(err.message, /after 1 attempt/);
      assert.equal(err.headers.get('x-should-retry'), 'false');
      return true;
    },
  );
  assert.equal(primary.callsFor('seq:400').length, 1);
});

test('the same policy through the orq-style endpoint, nested under orq', async () => {
  const res = await fetch(`${gateway.baseURL}/v2/router/images/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${GATEWAY_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'primary/always-500', prompt: 'x', orq: { retry: { count: 0.0 }, fallbacks: [{ model: 'backup/ok' }], fallback_on_codes: [500.0] } }),
  });
  assert.equal(res.status, 200);
  assert.deepEqual(attempts(res.headers), ['primary/always-500;500', 'backup/ok;200']);
  assert.equal((await res.json()).data.length, 1);
});

test('fallbacks that name a model already tried, by any of its names, are not paid for again', async () => {
  const before = primary.callsFor('seq:500').length;
  await assert.rejects(
    client().images.generate({
      model: 'primary/always-500', prompt: 'x', retry: { count: 1 },
      fallbacks: [{ model: 'always-500' }, { model: 'always-500' }, { model: 'primary/always-500' }],
    }),
    (err) => err.status === 502,
  );
  assert.equal(primary.callsFor('seq:500').length - before, 2, 'one try and one retry, not eight');
});

test('a 200 cut short is a 502 paid for once: neither retried nor sent to the fallback', async () => {
  const backupBefore = backup.callsFor('ok').length;
  await assert.rejects(
    client().images.generate({ model: 'primary/cut', prompt: 'x', retry: { count: 3 }, fallbacks: [{ model: 'backup/ok' }] }),
    (err) => {
      assert.equal(err.status, 502);
      assert.equal(err.code, 'unreadable_upstream_answer');
      assert.match(err.message, /may charge for/);
      assert.equal(err.headers.get('x-should-retry'), 'false');
      return true;
    },
  );
  assert.equal(primary.callsFor('cut').length, 1);
  assert.equal(backup.callsFor('ok').length, backupBefore);
});
