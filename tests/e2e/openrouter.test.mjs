// End to end: OpenRouter's official SDK (`@openrouter/sdk`) with its server URL set to the
// gateway's `/api/v1`: it lists the image models, one model's endpoints, and generates an image,
// parsing every answer with its own schemas.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { OpenRouter } from '@openrouter/sdk';

import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-openrouter-key';
let gateway;
let client;

before(async () => {
  gateway = await startGateway({
    config: {
      providers: [{ id: 'imagegate', kind: 'test_pattern', name: 'imagegate built-in' }],
      models: [{
        id: 'imagegate/test-pattern', provider: 'imagegate', name: 'Test pattern', description: 'Colour bars, rendered in the worker',
        created: 1767225600, supports: { n_max: 4, sizes: ['256x256', '1024x1024'] },
        pricing: [{ billable: 'output_image', cost_usd: 0.002, unit: 'image' }],
      }],
    },
    secrets: { IMAGEGATE_KEYS: createHash('sha256').update(GATEWAY_KEY).digest('hex') },
  });
  // The SDK retries 5xx answers on its own by default; the gateway has already retried.
  client = new OpenRouter({ apiKey: GATEWAY_KEY, serverURL: `${gateway.baseURL}/api/v1`, retryConfig: { strategy: 'none' } });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
});

test('the SDK lists the image models', async () => {
  const list = await client.images.listModels();
  assert.equal(list.data.length, 1);
  const model = list.data[0];
  assert.equal(model.id, 'imagegate/test-pattern');
  assert.equal(model.name, 'Test pattern');
  assert.equal(model.created, 1767225600);
  assert.deepEqual(model.architecture.outputModalities, ['image']);
  assert.equal(model.endpoints, '/api/v1/images/models/imagegate/test-pattern/endpoints');
  assert.deepEqual(model.supportedParameters.size, { type: 'enum', values: ['256x256', '1024x1024'] });
  assert.equal(model.supportsStreaming, false);
});

test("the SDK lists a model's endpoints with their pricing", async () => {
  const endpoints = await client.images.listModelEndpoints({ author: 'imagegate', slug: 'test-pattern' });
  assert.equal(endpoints.id, 'imagegate/test-pattern');
  assert.equal(endpoints.endpoints.length, 1);
  const [endpoint] = endpoints.endpoints;
  assert.equal(endpoint.providerName, 'imagegate built-in');
  assert.equal(endpoint.providerSlug, 'imagegate');
  assert.deepEqual(endpoint.pricing, [{ billable: 'output_image', costUsd: 0.002, unit: 'image' }]);
  await assert.rejects(client.images.listModelEndpoints({ author: 'nobody', slug: 'nothing' }), (error) => {
    assert.equal(error.statusCode, 404);
    assert.match(error.body, /"code":404/);
    return true;
  });
});

test('the SDK generates an image and reads its cost', async () => {
  const answer = await client.images.generate({
    imageGenerationRequest: { model: 'imagegate/test-pattern', prompt: 'a lighthouse', n: 2, size: '256x256' },
  });
  assert.equal(answer.data.length, 2);
  for (const image of answer.data) {
    assert.equal(image.mediaType, 'image/png');
    const png = Buffer.from(image.b64Json, 'base64');
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.equal(png.readUInt32BE(16), 256, 'width from the IHDR chunk');
  }
  assert.equal(answer.usage.cost, 0.004, 'two images at 0.002');
  await assert.rejects(
    client.images.generate({ imageGenerationRequest: { model: 'imagegate/test-pattern', prompt: 'p', size: '512x512' } }),
    (error) => {
      assert.equal(error.statusCode, 400);
      assert.equal(JSON.parse(error.body).error.metadata.param, 'size');
      return true;
    },
  );
});

test('the SDK edits with input_references: the reference image comes back edited at its size', async () => {
  const made = await client.images.generate({ imageGenerationRequest: { model: 'imagegate/test-pattern', prompt: 'a reference', size: '256x256' } });
  const url = `data:image/png;base64,${made.data[0].b64Json}`;
  const edited = await client.images.generate({
    imageGenerationRequest: { model: 'imagegate/test-pattern', prompt: 'add a moon', inputReferences: [{ type: 'image_url', imageUrl: { url } }] },
  });
  const png = Buffer.from(edited.data[0].b64Json, 'base64');
  assert.equal(png.readUInt32BE(16), 256, 'the reference\'s width');
  assert.notEqual(edited.data[0].b64Json, made.data[0].b64Json);
  const models = await client.images.listModels();
  assert.deepEqual(models.data[0].architecture.inputModalities, ['text', 'image']);
});
