// End to end: orq.ai's official Node client against the gateway's orq-compatible endpoint, with
// retry, fallbacks, a load balancer and a timeout set, as orq's own router takes them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Orq } from '@orq-ai/node';

import { startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-orq-key';
let mock;
let gateway;

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      deadline_ms: 20000,
      providers: [{ id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' }],
      models: [
        { id: 'mock/flaky', provider: 'mock', upstream_model: 'seq:503' },
        { id: 'mock/ok', provider: 'mock', upstream_model: 'ok' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: createHash('sha256').update(GATEWAY_KEY).digest('hex'), MOCK_API_KEY: 'sk-mock' },
  });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

test("orq's client generates through the router endpoint with its routing options", async () => {
  const orq = new Orq({ apiKey: GATEWAY_KEY, serverURL: gateway.baseURL });
  const image = await orq.router.images.generations.create({
    model: 'mock/flaky',
    prompt: 'a lighthouse',
    n: 1,
    retry: { count: 1, onCodes: [503] },
    fallbacks: [{ model: 'mock/ok' }],
    loadBalancer: { type: 'weight_based', models: [{ model: 'mock/flaky', weight: 1 }] },
    timeout: { callTimeout: 5000 },
  });
  assert.equal(image.data.length, 1);
  assert.equal(image.data[0].b64Json ?? image.data[0].b64_json, Buffer.from('tiny image').toString('base64'));
  assert.equal(mock.callsFor('seq:503').length, 2, 'one try and one retry');
  assert.equal(mock.callsFor('ok').length, 1, 'then the fallback');
});
