// The entry module's guard, in Node: whatever escapes the wasm worker still answers in the
// gateway's envelope, with x-should-retry: false, and a fresh instance serves each request.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { guard } from '../../src/edge/guard.mjs';

/** An entrypoint class like worker-build's: constructed with (ctx, env), then asked to fetch. */
function entrypoint(fetch) {
  const made = [];
  class Entrypoint {
    constructor(ctx, env) { this.ctx = ctx; this.env = env; made.push(this); }
    fetch(request) { return fetch.call(this, request); }
  }
  return { Entrypoint, made };
}

const post = (path) => new Request(`http://gw.test${path}`, { method: 'POST', body: '{}' });

test('a worker that answers is passed through, with its env and ctx, one instance per request', async () => {
  const { Entrypoint, made } = entrypoint(function () { return new Response(`env=${this.env.NAME}`, { status: 201 }); });
  const worker = guard(Entrypoint);
  const ctx = { waitUntil() {} };
  for (let i = 0; i < 2; i++) {
    const res = await worker.fetch(post('/v1/images/generations'), { NAME: 'x' }, ctx);
    assert.equal(res.status, 201);
    assert.equal(await res.text(), 'env=x');
  }
  assert.equal(made.length, 2);
  assert.equal(made[0].ctx, ctx);
});

test('a throw or a rejection becomes a 500 envelope that tells SDKs not to retry', async () => {
  for (const fails of [
    () => { throw new WebAssembly.RuntimeError('unreachable'); },
    () => Promise.reject(new TypeError('Invalid header value')),
  ]) {
    const { Entrypoint } = entrypoint(fails);
    const res = await guard(Entrypoint).fetch(post('/v1/images/generations'), {}, {});
    assert.equal(res.status, 500);
    assert.equal(res.headers.get('x-should-retry'), 'false');
    assert.match(res.headers.get('x-request-id'), /^req_[0-9a-f]{32}$/);
    const body = await res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(body.error.type, 'server_error');
    assert.doesNotMatch(body.error.message, /unreachable|header/, 'the cause stays in the log');
  }
});

test('under /api/v1 the failure comes in OpenRouter\'s envelope', async () => {
  const { Entrypoint } = entrypoint(() => { throw new Error('boom'); });
  const res = await guard(Entrypoint).fetch(post('/api/v1/images'), {}, {});
  const body = await res.json();
  assert.equal(body.error.code, 500);
  assert.equal(body.error.metadata.type, 'server_error');
});
