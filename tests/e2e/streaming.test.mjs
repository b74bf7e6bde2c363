// End to end: `stream: true` under `wrangler dev` (with the history, files and runner `make dev`
// deploys), the official `openai` clients (Node and Python) iterating the events.
//
// A whole answer (the test pattern's, or an upstream's that answers whole) streams as its
// `completed` event; retries and fallbacks happen before it; a model that cannot stream is a
// 400 naming `stream`.
//
// A provider's own stream is relayed: the mock upstream sends two partial images then the final
// one, STREAM_GAP_MS apart, and each event reaches the client before the next is sent (so it is
// not buffered). Fallbacks happen before the first event, never after it: a stream that breaks
// ends with an error event and no other upstream call; a stalled one is cut at the deadline. The
// action, its cost and its image are recorded once the stream has ended.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI, { toFile } from 'openai';

import { STREAMED_IMAGES, STREAM_GAP_MS, USAGE, startMockUpstream } from './mock-upstream.mjs';
import { startGateway } from './gateway-process.mjs';

const GATEWAY_KEY = 'sk-imagegate-e2e-stream';
/** Short, so that a stalled stream is cut within the test. */
const DEADLINE_MS = 5000;
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
      deadline_ms: DEADLINE_MS,
      providers: [
        { id: 'imagegate', kind: 'test_pattern' },
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
        { id: 'host', kind: 'openai_compatible', base_url: `http://127.0.0.1:${mock.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate' },
        // The mock's model names are not gpt-image ones: these say they stream.
        { id: 'mock/ok', provider: 'mock', upstream_model: 'ok', pricing: [{ cost_usd: 0.04, unit: 'image' }], supports: { stream: true } },
        { id: 'mock/failing', provider: 'mock', upstream_model: 'seq:500' },
        { id: 'mock/whole-only', provider: 'mock', upstream_model: 'ok', supports: { stream: false } },
        { id: 'mock/stream', provider: 'mock', upstream_model: 'stream', pricing: [{ cost_usd: 0.04, unit: 'image' }], supports: { stream: true } },
        { id: 'mock/stream-cut', provider: 'mock', upstream_model: 'stream-cut', supports: { stream: true } },
        { id: 'mock/stream-stall', provider: 'mock', upstream_model: 'stream-stall', supports: { stream: true } },
        { id: 'host/whole', provider: 'host', upstream_model: 'stream' },
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

/** Iterates a streamed generation: its events with the time each arrived, and its action id. */
async function relayed(params) {
  const { data: stream, response } = await client().images.generate({ prompt: 'a lighthouse', stream: true, ...params }).withResponse();
  const events = [];
  const arrivedAt = [];
  for await (const event of stream) {
    arrivedAt.push(Date.now());
    events.push(event);
  }
  return { events, arrivedAt, actionId: response.headers.get('x-imagegate-action-id') };
}

/** Every event of a streamed generation, as the client yields them. */
async function streamed(params) {
  return (await relayed(params)).events;
}

/** What the OpenAI Python client yields for a streamed generation with `args` (Python keywords). */
async function pythonEvents(args) {
  const script = [
    'import json, os, openai',
    'client = openai.OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"], max_retries=0)',
    `stream = client.images.generate(prompt="from python", stream=True, ${args})`,
    'print(json.dumps([{"type": e.type, "index": getattr(e, "partial_image_index", None), "size": e.size, "b64": e.b64_json} for e in stream]))',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-c', script], { env: { ...process.env, KEY: GATEWAY_KEY, BASE: `${gateway.baseURL}/v1` } });
  return JSON.parse(stdout);
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

test("an upstream's whole answer streams with its usage", async () => {
  const before = mock.callsFor('ok').length;
  const [completed] = await streamed({ model: 'mock/ok', quality: 'low' });
  assert.equal(completed.type, 'image_generation.completed');
  assert.equal(completed.quality, 'low');
  assert.equal(completed.usage.output_tokens, USAGE.output_tokens);
  const calls = mock.callsFor('ok');
  assert.equal(calls.length, before + 1);
  assert.equal(calls.at(-1).body.stream, true, 'an OpenAI upstream is asked to stream, and may answer whole');
});

test('the OpenAI Python client iterates the same stream', async () => {
  const events = await pythonEvents('model="imagegate/test-pattern", size="256x256", partial_images=2');
  assert.deepEqual(events.map((e) => [e.type, e.index, e.size, e.b64.slice(0, 8)]), [
    ['image_generation.partial_image', 0, '256x256', 'iVBORw0K'],
    ['image_generation.partial_image', 1, '256x256', 'iVBORw0K'],
    ['image_generation.completed', null, '256x256', 'iVBORw0K'],
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

/** The recorded action `id` once it has `status` (it is written after the stream ends). */
async function actionOnceEnded(id) {
  for (let i = 0; i < 50; i += 1) {
    const res = await fetch(`${gateway.baseURL}/v1/actions/${id}`, { headers: { authorization: `Bearer ${GATEWAY_KEY}` } });
    if (res.status === 200) {
      const action = await res.json();
      if (!['queued', 'in-progress'].includes(action.status)) return action;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the action ${id} was never recorded`);
}

test('each event reaches the Node client before the upstream sends the next', async () => {
  const before = mock.callsFor('stream').length;
  const { events, arrivedAt, actionId } = await relayed({ model: 'mock/stream', partial_images: 2 });
  assert.deepEqual(events.map((e) => [e.type, e.partial_image_index]), [
    ['image_generation.partial_image', 0], ['image_generation.partial_image', 1], ['image_generation.completed', undefined],
  ]);
  assert.deepEqual(events.map((e) => e.b64_json), STREAMED_IMAGES);
  assert.deepEqual(events[2].usage, USAGE);
  const [call] = mock.callsFor('stream').slice(before);
  assert.equal(call.body.stream, true, 'the upstream is asked to stream');
  assert.equal(call.body.partial_images, 2);
  for (let i = 0; i < 2; i += 1) {
    assert.ok(arrivedAt[i] < call.sentAt[i + 1], `event ${i} arrived before event ${i + 1} was sent (${arrivedAt[i]} < ${call.sentAt[i + 1]})`);
  }
  const action = await actionOnceEnded(actionId);
  assert.equal(action.status, 'success');
  assert.equal(action.cost_usd, 0.04, 'priced at the end');
  assert.equal(action.response.data.length, 1, 'the final image is kept');
  const file = await fetch(action.response.data[0].url);
  assert.equal(Buffer.from(await file.arrayBuffer()).toString(), 'final image');
});

test('the OpenAI Python client iterates the relayed stream', async () => {
  const events = await pythonEvents('model="mock/stream", partial_images=2');
  assert.deepEqual(events.map((e) => [e.type, e.index, e.b64]), [
    ['image_generation.partial_image', 0, STREAMED_IMAGES[0]],
    ['image_generation.partial_image', 1, STREAMED_IMAGES[1]],
    ['image_generation.completed', null, STREAMED_IMAGES[2]],
  ]);
});

test('a failure before the first event falls back', async () => {
  const before = { failing: mock.callsFor('seq:500').length, stream: mock.callsFor('stream').length };
  const { events } = await relayed({ model: 'mock/failing', retry: { count: 0 }, fallbacks: [{ model: 'mock/stream' }] });
  assert.equal(events.at(-1).type, 'image_generation.completed');
  assert.equal(mock.callsFor('seq:500').length, before.failing + 1);
  assert.equal(mock.callsFor('stream').length, before.stream + 1);
});

test('a stream that breaks after its first event ends with an error event, and nothing is tried again', async () => {
  const before = { cut: mock.callsFor('stream-cut').length, stream: mock.callsFor('stream').length };
  const { data: stream, response } = await client()
    .images.generate({ prompt: 'p', model: 'mock/stream-cut', stream: true, retry: { count: 2 }, fallbacks: [{ model: 'mock/stream' }] })
    .withResponse();
  const seen = [];
  await assert.rejects(
    (async () => { for await (const event of stream) seen.push(event.type); })(),
    (error) => /broke off/.test(error.message),
  );
  assert.deepEqual(seen, ['image_generation.partial_image', 'image_generation.partial_image']);
  assert.equal(mock.callsFor('stream-cut').length, before.cut + 1, 'no retry');
  assert.equal(mock.callsFor('stream').length, before.stream, 'no fallback');
  const action = await actionOnceEnded(response.headers.get('x-imagegate-action-id'));
  assert.equal(action.status, 'error');
  assert.match(action.error, /broke off/);
});

test('a stalled stream is cut with an error event at the deadline, and the upstream call is closed', async () => {
  const started = Date.now();
  const before = mock.callsFor('stream-stall').length;
  const stream = await client().images.generate({ prompt: 'p', model: 'mock/stream-stall', stream: true });
  const seen = [];
  await assert.rejects(
    (async () => { for await (const event of stream) seen.push(event.type); })(),
    (error) => /deadline/.test(error.message),
  );
  const elapsed = Date.now() - started;
  assert.equal(seen.length, 2, 'both partial images came first');
  assert.ok(elapsed >= DEADLINE_MS - 200 && elapsed < DEADLINE_MS + 3000, `cut at the deadline (after ${elapsed} ms)`);
  const [call] = mock.callsFor('stream-stall').slice(before);
  for (let i = 0; i < 30 && !call.aborted; i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(call.aborted, true, 'the gateway closed the upstream connection');
});

test('a host that does not declare streaming is asked whole, and its answer comes as one completed event', async () => {
  const before = mock.callsFor('stream').length;
  const { events } = await relayed({ model: 'host/whole', partial_images: 2 });
  assert.deepEqual(events.map((e) => e.type), ['image_generation.completed']);
  const [call] = mock.callsFor('stream').slice(before);
  assert.equal(call.body.stream, undefined, 'nothing of streaming goes upstream');
  assert.equal(events[0].usage.output_tokens, USAGE.output_tokens);
});

test('an upstream that answers a stream request whole is written as one completed event', async () => {
  const { events } = await relayed({ model: 'mock/ok' });
  assert.deepEqual(events.map((e) => e.type), ['image_generation.completed']);
});

test("a streamed edit is relayed as the upstream's image_edit events", async () => {
  const made = await client().images.generate({ model: 'imagegate/test-pattern', prompt: 'input', size: '256x256' });
  const image = await toFile(Buffer.from(made.data[0].b64_json, 'base64'), 'image.png', { type: 'image/png' });
  const before = mock.callsFor('stream').length;
  const stream = await client().images.edit({ model: 'mock/stream', image, prompt: 'add a hat', stream: true, partial_images: 2 });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(events.map((e) => e.type), ['image_edit.partial_image', 'image_edit.partial_image', 'image_edit.completed']);
  assert.equal(events[2].b64_json, STREAMED_IMAGES[2]);
  const [call] = mock.callsFor('stream').slice(before);
  assert.equal(call.path, '/v1/images/edits');
  assert.equal(call.body.stream, 'true', 'the form asks the upstream to stream');
});

// Whether the runtime tells the gateway at once that its client has gone depends on its buffers
// (events this small still fit them); either way the generation is read to its end and recorded.
// The native tests cover the gateway noticing (tests/stream_relay.rs).
test('a client that hangs up after the first event does not lose the generation: it is read to its end and recorded', async () => {
  const before = mock.callsFor('stream').length;
  const stop = new AbortController();
  const { data: stream, response } = await client()
    .images.generate({ prompt: 'p', model: 'mock/stream', stream: true, partial_images: 2 }, { signal: stop.signal })
    .withResponse();
  const seen = [];
  try {
    for await (const event of stream) {
      seen.push(event.type);
      stop.abort();
    }
  } catch {
    // The client's abort may end the iteration with an error, or quietly.
  }
  assert.deepEqual(seen, ['image_generation.partial_image']);
  const action = await actionOnceEnded(response.headers.get('x-imagegate-action-id'));
  assert.equal(action.status, 'success', 'read to its end after the client left');
  assert.equal(action.cost_usd, 0.04);
  assert.equal(action.response.data.length, 1, 'the final image is kept');
  const [call] = mock.callsFor('stream').slice(before);
  assert.equal(call.sentAt.length, 3, 'the upstream sent its whole stream');
});
