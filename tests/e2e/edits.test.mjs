// End to end: image edits and variations under `wrangler dev`, called by the official OpenAI
// Node client (`images.edit`, `images.createVariation`) against the test pattern and against a
// mock upstream that records the form it gets, with the digest of every file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import { Orq } from '@orq-ai/node';

import { startGateway } from './gateway-process.mjs';
import { startMockUpstream } from './mock-upstream.mjs';

const KEY = 'sk-imagegate-edits';
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
let gateway;
let upstream;
let backup;
let client;

before(async () => {
  upstream = await startMockUpstream();
  backup = await startMockUpstream();
  gateway = await startGateway({
    config: {
      providers: [
        { id: 'imagegate', kind: 'test_pattern' },
        { id: 'mock', kind: 'openai', base_url: `http://127.0.0.1:${upstream.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
        { id: 'backup', kind: 'openai', base_url: `http://127.0.0.1:${backup.port}/v1`, api_key_secret: 'MOCK_API_KEY' },
      ],
      models: [
        { id: 'imagegate/test-pattern', provider: 'imagegate' },
        { id: 'mock/gpt-image-1', provider: 'mock', upstream_model: 'ok' },
        { id: 'mock/flaky', provider: 'mock', upstream_model: 'seq:500,200' },
        { id: 'mock/down', provider: 'mock', upstream_model: 'seq:500' },
        { id: 'backup/gpt-image-1', provider: 'backup', upstream_model: 'ok' },
      ],
    },
    secrets: { IMAGEGATE_KEYS: createHash('sha256').update(KEY).digest('hex'), MOCK_API_KEY: 'sk-upstream' },
  });
  client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.baseURL}/v1`, maxRetries: 0 });
}, { timeout: 180_000 });

after(async () => {
  await gateway?.stop();
  await upstream?.stop();
  await backup?.stop();
});

/** A PNG of `size` made by the gateway's own test pattern, to send back in. */
async function png(size, prompt = 'input') {
  const made = await client.images.generate({ model: 'imagegate/test-pattern', prompt, size });
  return Buffer.from(made.data[0].b64_json, 'base64');
}

const file = (bytes, name = 'image.png') => toFile(bytes, name, { type: 'image/png' });
const pngSize = (bytes) => [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];

test('the OpenAI client edits with the test pattern: the image comes back at the input\'s size', async () => {
  const input = await png('96x64');
  const edited = await client.images.edit({ model: 'imagegate/test-pattern', image: await file(input), prompt: 'add a hat' });
  const output = Buffer.from(edited.data[0].b64_json, 'base64');
  assert.deepEqual(pngSize(output), [96, 64]);
  const other = await client.images.edit({ model: 'imagegate/test-pattern', image: await file(await png('96x64', 'another')), prompt: 'add a hat' });
  assert.notEqual(other.data[0].b64_json, edited.data[0].b64_json, 'another input, another picture');
  const variation = await client.images.createVariation({ model: 'imagegate/test-pattern', image: await file(input), n: 2 });
  assert.equal(variation.data.length, 2);
});

test('an edit with several images and a mask reaches the upstream with the same bytes and fields', async () => {
  const [one, two, mask] = [await png('32x32', 'one'), await png('32x32', 'two'), await png('32x32', 'mask')];
  const before = upstream.calls.length;
  const edited = await client.images.edit({
    model: 'mock/gpt-image-1', image: [await file(one, 'one.png'), await file(two, 'two.png')], mask: await file(mask, 'mask.png'),
    prompt: 'merge them', n: 2, size: '1024x1024', input_fidelity: 'high',
  });
  assert.equal(edited.data.length, 1);
  const calls = upstream.calls.slice(before);
  assert.equal(calls.length, 1);
  const [call] = calls;
  assert.equal(call.path, '/v1/images/edits');
  assert.deepEqual(
    { model: call.body.model, prompt: call.body.prompt, n: call.body.n, size: call.body.size, input_fidelity: call.body.input_fidelity },
    { model: 'ok', prompt: 'merge them', n: '2', size: '1024x1024', input_fidelity: 'high' },
  );
  assert.deepEqual(call.files.map((f) => [f.name, f.sha256]), [['image[]', sha256(one)], ['image[]', sha256(two)], ['mask', sha256(mask)]]);
  assert.equal(call.authorization, 'Bearer sk-upstream');
});

test('a variation reaches the upstream without a prompt', async () => {
  const input = await png('32x32', 'variation');
  const before = upstream.calls.length;
  await client.images.createVariation({ model: 'mock/gpt-image-1', image: await file(input), size: '256x256' });
  const [call] = upstream.calls.slice(before);
  assert.equal(call.path, '/v1/images/variations');
  assert.equal(call.body.prompt, undefined);
  assert.deepEqual(call.files.map((f) => f.sha256), [sha256(input)]);
});

test('a retry and a fallback send the same image bytes', async () => {
  const input = await png('32x32', 'retry');
  let before = upstream.calls.length;
  await client.images.edit({ model: 'mock/flaky', image: await file(input), prompt: 'p' });
  const retried = upstream.calls.slice(before);
  assert.deepEqual(retried.map((c) => c.files[0].sha256), [sha256(input), sha256(input)], 'a 500, then the retry');

  before = upstream.calls.length;
  const backupBefore = backup.calls.length;
  await client.images.edit({ model: 'mock/down', image: await file(input), prompt: 'p', retry: { count: 0 }, fallbacks: [{ model: 'backup/gpt-image-1' }] });
  assert.deepEqual(upstream.calls.slice(before).map((c) => c.files[0].sha256), [sha256(input)]);
  assert.deepEqual(backup.calls.slice(backupBefore).map((c) => [c.path, c.files[0].sha256]), [['/v1/images/edits', sha256(input)]]);
});

test("orq's client edits through its router path with retry and fallbacks sent as JSON parts", async () => {
  const input = await png('32x32', 'orq');
  const orq = new Orq({ apiKey: KEY, serverURL: gateway.baseURL });
  const before = upstream.calls.length;
  const backupBefore = backup.calls.length;
  const edited = await orq.router.images.edits.create({
    model: 'mock/down', prompt: 'p', image: { fileName: 'in.png', content: new Uint8Array(input) },
    retry: { count: 1, onCodes: [500] }, fallbacks: [{ model: 'backup/gpt-image-1' }],
  });
  assert.equal(edited.data.length, 1);
  assert.deepEqual(upstream.calls.slice(before).map((c) => c.files[0].sha256), [sha256(input), sha256(input)], 'the first call and its retry');
  assert.deepEqual(backup.calls.slice(backupBefore).map((c) => [c.path, c.files[0].sha256]), [['/v1/images/edits', sha256(input)]], 'then the fallback');
});

/** Sends a hand-made form body to the edits endpoint. */
const post = (body, contentType = 'multipart/form-data; boundary=B', path = '/v1/images/edits') => fetch(`${gateway.baseURL}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': contentType }, body,
});
const part = (name, value, filename) => Buffer.concat([
  Buffer.from(`--B\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"\r\nContent-Type: image/png` : ''}\r\n\r\n`),
  Buffer.from(value), Buffer.from('\r\n'),
]);
const closed = (...parts) => Buffer.concat([...parts, Buffer.from('--B--\r\n')]);

test('every malformed form is a 400 naming its field, and nothing reaches an upstream', async () => {
  const image = await png('16x16', 'bad');
  const before = upstream.calls.length;
  const gif = Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;', 'latin1');
  const cases = [
    [closed(part('prompt', 'p'), part('model', 'mock/gpt-image-1')), 'image'],
    [closed(part('prompt', 'p'), part('image', 'not a file')), 'image'],
    [closed(part('prompt', 'p'), part('image', 'plain text, not an image', 'a.png')), 'image'],
    [closed(part('prompt', 'p'), part('image', image, 'a.png'), part('mask', gif, 'm.png')), 'mask'],
    [closed(part('prompt', 'p'), ...Array.from({ length: 17 }, () => part('image[]', image, 'a.png'))), 'image'],
    [closed(part('image', image, 'a.png')), 'prompt'],
    [closed(part('prompt', 'p'), part('image', image, 'a.png'), part('n', 'eleven')), 'n'],
  ];
  for (const [body, param] of cases) {
    const res = await post(body);
    const error = (await res.json()).error;
    assert.equal(res.status, 400, `${param}: ${error.message}`);
    assert.equal(error.param, param, error.message);
  }
  for (const [body, contentType] of [
    [closed(part('prompt', 'p')), 'multipart/form-data'],
    [Buffer.from('--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\np'), undefined],
    [Buffer.from('--B\r\nContent-Disposition: form-data\r\n\r\np\r\n--B--\r\n'), undefined],
  ]) {
    const res = await post(body, contentType);
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.code, 'invalid_multipart');
  }
  assert.equal((await post('{}', 'text/plain')).status, 415);
  assert.equal(upstream.calls.length, before);
});

test('a 30 MiB body is a 413 (over the default max_edit_body_bytes, 25 MiB)', async () => {
  const res = await post(closed(part('prompt', 'p'), part('image', Buffer.alloc(30 << 20), 'big.png')));
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.type, 'invalid_request_error');
});

test('GET /v1/models says which models edit', async () => {
  const models = await client.models.list();
  const pattern = models.data.find((m) => m.id === 'imagegate/test-pattern');
  assert.deepEqual(pattern.capabilities, ['generate', 'edit', 'variation']);
});
