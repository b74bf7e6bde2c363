// The benchmark's targets: the mock upstream (the floor), a minimal relay worker in workerd, imagegate
// in workerd serving the production bundle, and the Portkey gateway on Node 22.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CPU, freePort, start, timeToFirstAnswer } from './processes.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKERD = path.join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd');
const NODE22 = path.join(ROOT, 'node_modules/.bin/node');
const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');
const UPSTREAM_BIN = path.join(ROOT, 'bench/upstream/target/release/bench-upstream');
const PORTKEY = path.join(ROOT, 'bench/peer/node_modules/@portkey-ai/gateway/build/start-server.js');

const GATEWAY_KEY = 'sk-bench-gateway-key';
/** A managed key (`limits`): found in the D1 stand-in, counted in its Durable Object. */
const MANAGED_KEY = `sk-ig-v1-${'ab'.repeat(32)}`;
const PROVIDER_KEY = 'sk-bench-provider-key';

/** Bundles the worker exactly as `wrangler deploy` would upload it; returns its files and wasm size. */
export function buildBundle(outDir) {
  execFileSync(WRANGLER, ['deploy', '--dry-run', '--outdir', outDir], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, PATH: `${path.dirname(NODE22)}:${process.env.PATH}`, WRANGLER_SEND_METRICS: 'false' },
  });
  const files = readdirSync(outDir);
  const wasmFile = files.find((f) => f.endsWith('.wasm'));
  const entryFile = files.find((f) => f.endsWith('.js'));
  const wasm = readFileSync(path.join(outDir, wasmFile));
  return { dir: outDir, entryFile, wasmFile, wasmSize: { raw: wasm.length, gzip: gzipSync(wasm, { level: 9 }).length } };
}

/**
 * A workerd config serving `modules` (the first is the entry point) on `port`; `kv` names the
 * KV bindings, each served by the in-memory stand-in `bench/fixtures/kv-memory.js`, `d1` the D1
 * bindings, each the stand-in that stores nothing, `bench/fixtures/d1-memory.js`, and `r2` the R2
 * bindings, each the stand-in that keeps nothing, `bench/fixtures/r2-memory.js`.
 */
function workerdConfig({ runDir, port, modules, bindings, kv = [], d1 = [], r2 = [], runner = false, limits = null }) {
  const quote = JSON.stringify; // capnp string literals accept JSON's escapes
  const mods = modules.map((m) => `(name = ${quote(m.name)}, ${m.kind} = embed ${quote(path.relative(runDir, m.file))})`).join(',\n        ');
  const binds = [
    ...Object.entries(bindings).map(([k, v]) => `(name = ${quote(k)}, text = ${quote(v)})`),
    ...kv.map((name) => `(name = ${quote(name)}, kvNamespace = "kv")`),
    // With `limits`, the database answers the managed key's lookup with that record.
    ...d1.map((name) => `(name = ${quote(name)}, wrapped = (moduleName = "bench:d1-memory"${limits ? `, innerBindings = [(name = "KEY_RECORD", text = ${quote(JSON.stringify(limits))})]` : ''}))`),
    ...r2.map((name) => `(name = ${quote(name)}, wrapped = (moduleName = "bench:r2-memory"))`),
    ...(runner ? ['(name = "IMAGEGATE_RUNNER", durableObjectNamespace = "ActionRun")'] : []),
    ...(limits ? ['(name = "IMAGEGATE_LIMITS", durableObjectNamespace = "KeyCounters")'] : []),
  ].join(',\n        ');
  // The runner's and the key counters' Durable Objects, with their storage (and alarms) in memory.
  const classes = [...(runner ? ['ActionRun'] : []), ...(limits ? ['KeyCounters'] : [])];
  const objects = classes.length
    ? `durableObjectNamespaces = [${classes.map((c) => `(className = "${c}", uniqueKey = "bench-${c}", enableSql = true)`).join(', ')}],\n      durableObjectStorage = (inMemory = void),`
    : '';
  const standIn = (name) => `(name = "bench:${name}", esModule = embed ${quote(path.relative(runDir, path.join(ROOT, `bench/fixtures/${name}.js`)))}, internal = true)`;
  const standIns = [...(d1.length ? ['d1-memory'] : []), ...(r2.length ? ['r2-memory'] : [])];
  const extensions = standIns.length === 0 ? '' : `extensions = [(modules = [${standIns.map(standIn).join(', ')}])],`;
  const kvService = kv.length === 0 ? '' : `(name = "kv", worker = (
      modules = [(name = "kv-memory.js", esModule = embed ${quote(path.relative(runDir, path.join(ROOT, 'bench/fixtures/kv-memory.js')))})],
      compatibilityDate = "2026-11-01",
    )),`;
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [
        ${mods}
      ],
      compatibilityDate = "2026-11-01",
      bindings = [
        ${binds}
      ],
      ${objects}
    )),
    (name = "internet", network = (allow = ["public", "private", "local"])),
    ${kvService}
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
  ${extensions}
);
`;
}

const requestBody = (model) => ({ model, prompt: 'a lighthouse at dusk, oil on canvas', size: '1024x1024', n: 1 });

/** Starts the mock upstream; every other target relays to it. */
export async function startUpstream(runDir) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await start({
    name: 'upstream', logDir: runDir, command: UPSTREAM_BIN, args: [String(port)], cpu: CPU.load,
    probe: { url: `${base}/small/v1/images/generations`, init: { method: 'POST', body: '{}' } },
  });
  return {
    name: 'upstream', label: 'mock upstream (floor)', child, base,
    url: (answer) => `${base}/${answer}/v1/images/generations`,
    headers: () => ({ 'content-type': 'application/json' }),
    body: () => requestBody('gpt-image-1'),
  };
}

/**
 * `samples` cold starts of a workerd target, fastest first: the milliseconds from spawning a
 * fresh workerd (a new process and isolate) serving `configFor(port)` to its first answer to
 * the small answer's request at `url(port)`.
 */
async function coldStarts({ name, runDir, configFor, url, headers, body }, samples) {
  const times = [];
  for (let i = 0; i < samples; i++) {
    const port = await freePort();
    const init = { method: 'POST', headers, body: JSON.stringify(body) };
    times.push(await timeToFirstAnswer({ name: `${name}-cold`, logDir: runDir, command: WORKERD, args: ['serve', configFor(port)], url: url(port), init }));
  }
  return times.sort((a, b) => a - b);
}

/** A JS worker in workerd, relaying to the mock; `fixture` names its file in bench/fixtures. */
async function startWorker(runDir, upstream, { name, label, fixture }) {
  const configFor = (port) => {
    const file = path.join(runDir, `${name}-${port}.capnp`);
    writeFileSync(file, workerdConfig({
      runDir, port,
      modules: [{ name: fixture, kind: 'esModule', file: path.join(ROOT, 'bench/fixtures', fixture) }],
      bindings: { UPSTREAM: upstream.base },
    }));
    return file;
  };
  const port = await freePort();
  const child = await start({
    name, logDir: runDir, command: WORKERD, args: ['serve', configFor(port)],
    probe: { url: `http://127.0.0.1:${port}/small/v1/images/generations`, init: { method: 'POST', body: '{}' } },
  });
  const headers = () => ({ 'content-type': 'application/json', authorization: `Bearer ${PROVIDER_KEY}` });
  const body = () => requestBody('gpt-image-1');
  return {
    name, label, child, headers, body,
    url: (answer) => `http://127.0.0.1:${port}/${answer}/v1/images/generations`,
    coldStarts: (samples) => coldStarts({
      name, runDir, configFor, headers: headers(), body: body(), url: (p) => `http://127.0.0.1:${p}/small/v1/images/generations`,
    }, samples),
  };
}

/** The runtime's own floor: a few-line worker that forwards the request and streams the answer. */
export function startRelay(runDir, upstream) {
  return startWorker(runDir, upstream, { name: 'relay', label: 'minimal relay in workerd', fixture: 'relay.js' });
}

/**
 * The floor for a checking gateway: reads the client's body and the start of the answer before
 * relaying, as imagegate does, with none of imagegate's work in between.
 */
export function startInspectingRelay(runDir, upstream) {
  return startWorker(runDir, upstream, { name: 'inspecting', label: 'inspecting relay in workerd', fixture: 'inspecting-relay.js' });
}

/**
 * imagegate in workerd with a realistic deployment: auth on (two keys), validation, a routing
 * policy with retries and a fallback (configured, not triggered), aliases, the production
 * deadline, logging as in production. `inspectorPort` opens the inspector for profiling;
 * `recording` gives it a history and a file store (the D1 and R2 stand-ins), so that every generation records an action and keeps its images;
 * `durable` adds the runner, so that every generation runs in its action's Durable Object;
 * `limited` calls with a managed key with limits and a budget, counted in its Durable Object.
 */
export async function startImagegate(runDir, upstream, bundle, { inspectorPort, recording = false, durable = false, limited = false } = {}) {
  const name = limited ? 'imagegate-limited' : durable ? 'imagegate-durable' : recording ? 'imagegate-recording' : 'imagegate';
  const price = [{ cost_usd: 0.000001, unit: 'image' }];
  const port = await freePort();
  const config = {
    deadline_ms: 150000,
    cors: { allowed_origins: ['https://app.example.com'] },
    default_model: 'bench/small',
    default_policy: { retry: { count: 2 }, timeout: { call_timeout: 120000 } },
    providers: [
      { id: 'primary', kind: 'openai', base_url: `${upstream.base}/small/v1`, api_key_secret: 'PRIMARY_API_KEY' },
      { id: 'large', kind: 'openai', base_url: `${upstream.base}/big/v1`, api_key_secret: 'PRIMARY_API_KEY' },
      { id: 'streaming', kind: 'openai', base_url: `${upstream.base}/events/v1`, api_key_secret: 'PRIMARY_API_KEY' },
      { id: 'backup', kind: 'openai', base_url: `${upstream.base}/small/v1`, api_key_secret: 'BACKUP_API_KEY' },
      { id: 'imagegate', kind: 'test_pattern' },
    ],
    models: [
      { id: 'bench/small', provider: 'primary', upstream_model: 'gpt-image-1', aliases: ['gpt-image-1'],
        policy: { fallbacks: [{ model: 'bench/small-backup' }] }, pricing: price },
      { id: 'bench/small-backup', provider: 'backup', upstream_model: 'gpt-image-1', pricing: price },
      { id: 'bench/big', provider: 'large', upstream_model: 'gpt-image-1', policy: { fallbacks: [{ model: 'bench/big-backup' }] }, pricing: price },
      { id: 'bench/big-backup', provider: 'backup', upstream_model: 'gpt-image-1', pricing: price },
      { id: 'bench/events', provider: 'streaming', upstream_model: 'gpt-image-1', pricing: price },
      { id: 'imagegate/test-pattern', provider: 'imagegate' },
    ],
  };
  const configFor = (configPort) => {
    const file = path.join(runDir, `${name}-${configPort}.capnp`);
    writeFileSync(file, workerdConfig({
      runDir, port: configPort,
      modules: [bundle.entryFile, bundle.wasmFile].map((f) => ({ name: f, kind: f.endsWith('.wasm') ? 'wasm' : 'esModule', file: path.join(bundle.dir, f) })),
      bindings: {
        IMAGEGATE_CONFIG: JSON.stringify(config),
        IMAGEGATE_KEYS: `other:${'0'.repeat(64)},bench:${createHash('sha256').update(GATEWAY_KEY).digest('hex')}`,
        PRIMARY_API_KEY: PROVIDER_KEY,
        BACKUP_API_KEY: PROVIDER_KEY,
        ...(recording ? { IMAGEGATE_FILES_SECRET: 'bench-files-secret' } : {}),
      },
      kv: ['IMAGEGATE_CACHE'],
      d1: recording ? ['IMAGEGATE_DB'] : [],
      r2: recording ? ['IMAGEGATE_FILES'] : [],
      runner: durable,
      limits: limited ? managedKeyRecord() : null,
    }));
    return file;
  };
  const args = ['serve', configFor(port)];
  if (inspectorPort) args.push(`--inspector-addr=127.0.0.1:${inspectorPort}`);
  const child = await start({ name, logDir: runDir, command: WORKERD, args, probe: { url: `http://127.0.0.1:${port}/healthz` } });
  const headers = (answer) => ({
    'content-type': 'application/json', authorization: `Bearer ${limited ? MANAGED_KEY : GATEWAY_KEY}`,
    // `async`: answered 202 at once, the generation run by its action's Durable Object.
    ...(answer === 'async' ? { prefer: 'respond-async' } : {}),
  });
  return {
    name, label: durable ? 'imagegate in workerd, generating in Durable Objects' : recording ? 'imagegate in workerd, actions recorded with their images' : 'imagegate in workerd', child,
    url: () => `http://127.0.0.1:${port}/v1/images/generations`,
    headers,
    coldStarts: (samples) => coldStarts({
      name, runDir, configFor, headers: headers('small'), body: requestBody('bench/small'), url: (p) => `http://127.0.0.1:${p}/v1/images/generations`,
    }, samples),
    // `cached`: the small answer with the response cache on; after the warm-up, every request hits.
    // `streamed`: the small answer asked with `stream: true`, answered as its events.
    // `events`: the upstream's image stream asked for and relayed event by event.
    body: (answer) => {
      if (answer === 'cached') return { ...requestBody('bench/small'), cache: { type: 'exact_match', ttl: 3600 } };
      if (answer === 'streamed') return { ...requestBody('bench/small'), stream: true };
      if (answer === 'events') return { ...requestBody('bench/events'), stream: true, partial_images: 2 };
      return requestBody(`bench/${{ recorded: 'small', 'recorded-big': 'big', durable: 'small', limited: 'small', async: 'small' }[answer] ?? answer}`);
    },
  };
}

/** The managed key's record: a budget, a rate and a parallel limit it never reaches. */
function managedKeyRecord() {
  return {
    hash: createHash('sha256').update(MANAGED_KEY).digest('hex'), name: 'bench', label: 'sk-ig-v1-aba...abab',
    limit: 1000000, limit_reset: 'monthly', expires_at: null, models: null, routes: null,
    rpm: 100000, max_parallel: 1000, metadata: null, created_at: 0, updated_at: null,
  };
}

/** The peer: Portkey's open-source gateway on Node 22, pointed at the same mock. */
export async function startPortkey(runDir, upstream) {
  const port = await freePort();
  const child = await start({
    name: 'portkey', logDir: runDir, command: NODE22, args: [PORTKEY, `--port=${port}`, '--headless'],
    probe: { url: `http://127.0.0.1:${port}/` }, env: { NODE_ENV: 'production' },
  });
  return {
    name: 'portkey', label: 'Portkey gateway on Node 22', child,
    url: () => `http://127.0.0.1:${port}/v1/images/generations`,
    headers: (answer) => ({
      'content-type': 'application/json', authorization: `Bearer ${PROVIDER_KEY}`,
      'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream.base}/${answer}/v1`,
    }),
    // The image stream is asked for as imagegate asks for it: Portkey passes a stream on as it is.
    body: (answer) => (answer === 'events' ? { ...requestBody('gpt-image-1'), stream: true, partial_images: 2 } : requestBody('gpt-image-1')),
  };
}
