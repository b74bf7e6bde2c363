// End to end: what a deployment does when its own settings are missing or wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';

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

test('an invalid configuration answers 500 naming the key, on every route', async () => {
  const gateway = await startGateway({
    config: { providers: [{ id: 'a', kind: 'test_pattern' }], models: [{ id: 'm', provider: 'a' }], deadline: 5 },
    secrets: { IMAGEGATE_KEYS: '0'.repeat(64) },
  });
  try {
    for (const path of ['/healthz', '/v1/models']) {
      const res = await fetch(`${gateway.baseURL}${path}`);
      const body = await res.json();
      assert.equal(res.status, 500, path);
      assert.equal(body.error.code, 'invalid_configuration');
      assert.match(body.error.message, /unknown field `deadline`/);
    }
  } finally {
    await gateway.stop();
  }
});
