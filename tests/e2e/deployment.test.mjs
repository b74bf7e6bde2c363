// End to end: what a deployment does when its own settings are missing or wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { startGateway } from './gateway-process.mjs';

test('a deployment with no gateway keys refuses every request, even the development key', async () => {
  const gateway = await startGateway({ config: null, secrets: {} });
  try {
    for (const key of ['sk-imagegate-dev', 'anything']) {
      const res = await fetch(`${gateway.baseURL}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'x' }),
      });
      const body = await res.json();
      assert.equal(res.status, 401);
      assert.equal(body.error.code, 'invalid_api_key');
      assert.match(body.error.message, /no API keys configured/);
    }
  } finally {
    await gateway.stop();
  }
});

test('an invalid configuration answers 500 on every route, and tells why only to a valid key', async () => {
  const key = 'sk-imagegate-operator';
  const gateway = await startGateway({
    config: { providers: [{ id: 'a', kind: 'test_pattern' }], models: [{ id: 'm', provider: 'a' }], deadline: 5 },
    secrets: { IMAGEGATE_KEYS: createHash('sha256').update(key).digest('hex') },
  });
  try {
    for (const path of ['/healthz', '/v1/models']) {
      for (const authorization of [undefined, 'Bearer sk-wrong', `Bearer ${key}`]) {
        const res = await fetch(`${gateway.baseURL}${path}`, { headers: authorization ? { authorization } : {} });
        const body = await res.json();
        assert.equal(res.status, 500, path);
        assert.equal(body.error.code, 'invalid_configuration');
        if (authorization === `Bearer ${key}`) {
          assert.match(body.error.message, /unknown field `deadline`/);
        } else {
          assert.doesNotMatch(body.error.message, /deadline/, 'an unauthenticated caller learns only that it is invalid');
          assert.match(body.error.message, /configuration is invalid/);
        }
      }
    }
    assert.match(gateway.output(), /unknown field `deadline`/, 'the operator finds the reason in the log');
  } finally {
    await gateway.stop();
  }
});
