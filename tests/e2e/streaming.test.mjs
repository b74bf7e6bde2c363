// End to end: `stream: true` under `wrangler dev` (with the history, files and runner `make dev`
// deploys), the official `openai` npm client iterating the events. A whole answer streams as its
// `completed` event; retries and fallbacks happen before it; a model that cannot stream is a 400
// naming `stream`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';

import { USAGE, startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-e2e-stream';
/** The OpenAI Python client's interpreter (scripts/setup.sh installs it in .venv). */
const PYTHON = path.join(import.meta.dirname, '../../.venv/bin/python');
const run = promisify(execFile);
let mock;
let gateway;

before(async () => {
  mock = await startMockUpstream();
  gateway = await startGateway({
    config: {
      default_model: 'imagegate/test-pattern',
      providers: [
        { id: 'imagegate', kind: 'test_pattern' },
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate' },
        { id: 'mock/ok', provider: 'mock', upstream_model: 'ok', pricing: [{ cost_usd: 0.04, unit: 'image' }] },
        { id: 'mock/failing', provider: 'mock', upstream_model: 'seq:500' },
        { id: 'mock/whole-only', provider: 'mock', upstream_model: 'ok', supports: { stream: false } },
      ],
    },
    secrets: {
      IMAGEGATE_KEYS: createHash('sha256').update(GATEWAY_KEY).digest('hex'),
      MOCK_API_KEY: 'sk-mock-provider-secret',
    },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const client = () => new OpenAI({ apiKey: GATEWAY_KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });

/** Every event of a streamed generation, as the client yields them. */
async function streamed(params) {
  const stream = await client().images.generate({ prompt: 'a lighthouse at dusk', stream: true, ...params });
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

test('the test pattern streams a partial image then its image, events the client iterates', async () => {
  const events = await streamed({ model: 'imagegate/test-pattern', size: '256x256', partial_images: 1 });
  assert.deepEqual(events.map((e) => [e.type, e.partial_image_index]), [['image_generation.partial_image', 0], ['image_generation.completed', undefined]]);
  const [partial, completed] = events;
  assert.notEqual(partial.b64_json, completed.b64_json, 'the partial image is of lower detail');
  assert.equal(completed.size, '256x256');
  const png = Buffer.from(completed.b64_json, 'base64');
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.equal(png.readUInt32BE(16), 256, 'the image is the size asked for');
});

test("an upstream's whole answer streams with its usage, and nothing of streaming goes upstream", async () => {
  const before = mock.callsFor('ok').length;
  const [completed] = await streamed({ model: 'mock/ok', quality: 'low' });
  assert.equal(completed.type, 'image_generation.completed');
  assert.equal(completed.quality, 'low');
  assert.equal(completed.usage.output_tokens, USAGE.output_tokens);
  const calls = mock.callsFor('ok');
  assert.equal(calls.length, before + 1);
  assert.equal(calls.at(-1).body.stream, undefined);
  assert.equal(calls.at(-1).body.partial_images, undefined);
});

test('the OpenAI Python client iterates the same stream', async () => {
  const script = [
    'import json, os, openai',
    'client = openai.OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"], max_retries=0)',
    'stream = client.images.generate(model="imagegate/test-pattern", prompt="from python", size="256x256", stream=True, partial_images=2)',
    'print(json.dumps([{"type": e.type, "size": e.size, "png": e.b64_json[:8]} for e in stream]))',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-c', script], { env: { ...process.env, KEY: GATEWAY_KEY, BASE: `${gateway.baseURL}/v1` } });
  assert.deepEqual(JSON.parse(stdout), [
    { type: 'image_generation.partial_image', size: '256x256', png: 'iVBORw0K' },
    { type: 'image_generation.partial_image', size: '256x256', png: 'iVBORw0K' },
    { type: 'image_generation.completed', size: '256x256', png: 'iVBORw0K' },
  ]);
});

test('retries and fallbacks happen before the stream begins', async () => {
  const before = { failing: mock.callsFor('seq:500').length, ok: mock.callsFor('ok').length };
  const events = await streamed({ model: 'mock/failing', retry: { count: 1 }, fallbacks: [{ model: 'mock/ok' }] });
  assert.deepEqual(events.map((e) => e.type), ['image_generation.completed']);
  assert.equal(mock.callsFor('seq:500').length, before.failing + 2, 'the first model, then its retry');
  assert.equal(mock.callsFor('ok').length, before.ok + 1, 'then the fallback, once');
});

test('a model that cannot stream is a 400 naming stream, and the raw answer is event-stream', async () => {
  await assert.rejects(streamed({ model: 'mock/whole-only' }), (error) => error.status === 400 && error.param === 'stream');
  const res = await fetch(`${gateway.baseURL}/v1/images/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${GATEWAY_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'x', model: 'imagegate/test-pattern', size: '256x256', stream: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.match(await res.text(), /^event: image_generation\.completed\ndata: \{"type":"image_generation\.completed"/);
});
