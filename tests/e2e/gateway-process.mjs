// Starts the built worker (build/) under `wrangler dev` with a test configuration, in a temporary
// directory of its own, and stops it by its process group when done, also when a test fails.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');
const NODE_BIN = path.join(ROOT, 'node_modules/.bin');

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The secret every gateway started here signs its file URLs with. */
export const FILES_SECRET = 'e2e-files-secret';

/**
 * Runs the gateway with `config` (the IMAGEGATE_CONFIG object; null leaves it unset, for the
 * embedded default) and `secrets` (written to the temporary .dev.vars). `sql` is run on the
 * database after the migrations (rows a test needs, such as old actions), and `migrate: false`
 * leaves the database without tables (a broken deployment); `objects` ({ key, bytes, contentType })
 * are put in the file store's bucket before the gateway starts, and `files: false` leaves the
 * bucket out (a deployment that keeps no images, whose answers are relayed as they stream), and
 * `runner: false` the Durable Object that runs generations apart from their clients; `testScheduled`
 * serves /__scheduled, which runs the cron handler. `crash()` kills it and starts it again on the
 * same state. Resolves once the gateway answers
 * /healthz, with any status.
 */
export async function startGateway({ config, secrets, sql = [], objects = [], migrate = true, files = true, runner = true, limits = true, webConsole = false, testScheduled = false }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'imagegate-e2e-'));
  const port = await freePort();
  const toml = [
    'name = "imagegate-e2e"',
    `main = ${JSON.stringify(path.join(ROOT, 'src/edge/entry.mjs'))}`,
    'compatibility_date = "2026-11-01"',
    // The response cache's KV namespace, simulated under this run's own state directory.
    '[[kv_namespaces]]', 'binding = "IMAGEGATE_CACHE"', 'id = "imagegate-cache-e2e"',
    // Coalescing identical cache-enabled requests, as in the project's wrangler.toml.
    '[[durable_objects.bindings]]', 'name = "IMAGEGATE_COALESCER"', 'class_name = "CacheFlight"',
    '[[migrations]]', 'tag = "v1"', 'new_sqlite_classes = ["CacheFlight"]',
    // Generation apart from the client: one Durable Object per action (unless `runner: false`).
    ...(runner ? ['[[durable_objects.bindings]]', 'name = "IMAGEGATE_RUNNER"', 'class_name = "ActionRun"'] : []),
    '[[migrations]]', 'tag = "v2"', 'new_sqlite_classes = ["ActionRun"]',
    // Managed keys' exact counters: one Durable Object per key (unless `limits: false`).
    ...(limits ? ['[[durable_objects.bindings]]', 'name = "IMAGEGATE_LIMITS"', 'class_name = "KeyCounters"'] : []),
    '[[migrations]]', 'tag = "v3"', 'new_sqlite_classes = ["KeyCounters"]',
    // Actions, on D1, with the project's migrations applied below before the gateway starts.
    '[[d1_databases]]', 'binding = "IMAGEGATE_DB"', 'database_name = "imagegate"', 'database_id = "imagegate-e2e"',
    `migrations_dir = ${JSON.stringify(path.join(ROOT, 'migrations'))}`,
    // The images of recorded generations, on R2 (unless `files: false`).
    ...(files ? ['[[r2_buckets]]', 'binding = "IMAGEGATE_FILES"', 'bucket_name = "imagegate-files-e2e"'] : []),
    // The web console's static files (with `webConsole: true`).
    ...(webConsole ? ['[assets]', `directory = ${JSON.stringify(path.join(ROOT, 'console'))}`] : []),
    ...(config === null ? [] : ['[vars]', `IMAGEGATE_CONFIG = ${JSON.stringify(JSON.stringify(config))}`]),
  ].join('\n');
  await writeFile(path.join(dir, 'wrangler.toml'), toml);
  // File URLs are signed with a secret, as `make dev`'s .dev.vars has one.
  const vars = { IMAGEGATE_FILES_SECRET: FILES_SECRET, ...secrets };
  await writeFile(path.join(dir, '.dev.vars'), Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n'));

  const wranglerEnv = { ...process.env, PATH: `${NODE_BIN}:${process.env.PATH}`, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', NO_COLOR: '1' };
  // The database's tables, as `make dev` applies them: from the project's migrations.
  if (migrate) {
    execFileSync(WRANGLER, ['d1', 'migrations', 'apply', 'imagegate', '--local', '--config', path.join(dir, 'wrangler.toml'),
      '--persist-to', path.join(dir, 'state')], { cwd: dir, env: wranglerEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  for (const statement of sql) {
    execFileSync(WRANGLER, ['d1', 'execute', 'imagegate', '--local', '--config', path.join(dir, 'wrangler.toml'),
      '--persist-to', path.join(dir, 'state'), '--command', statement], { cwd: dir, env: wranglerEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  for (const { key, bytes, contentType } of objects) {
    const file = path.join(dir, 'object');
    await writeFile(file, bytes);
    execFileSync(WRANGLER, ['r2', 'object', 'put', `imagegate-files-e2e/${key}`, '--file', file, '--ct', contentType, '--local', '--config',
      path.join(dir, 'wrangler.toml'), '--persist-to', path.join(dir, 'state')], { cwd: dir, env: wranglerEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  }

  let output = '';
  let child;
  let exited;
  const launch = () => {
    child = spawn(WRANGLER, ['dev', '--config', path.join(dir, 'wrangler.toml'), '--ip', '127.0.0.1', '--port', String(port),
      '--persist-to', path.join(dir, 'state'), '--show-interactive-dev-session=false', ...(testScheduled ? ['--test-scheduled'] : [])], {
      cwd: dir,
      detached: true, // its own process group, so stopping it stops workerd too
      env: wranglerEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    exited = new Promise((resolve) => child.on('exit', resolve));
  };
  const kill = async (signal) => {
    try { process.kill(-child.pid, signal); } catch { /* already gone */ }
    const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await exited;
    clearTimeout(timer);
  };
  const stop = async () => {
    await kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  };
  process.once('exit', () => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } });

  const baseURL = `http://127.0.0.1:${port}`;
  const answering = async () => {
    const started = Date.now();
    while (true) {
      if (child.exitCode !== null) { await stop(); throw new Error(`wrangler dev exited early:\n${output}`); }
      try {
        await fetch(`${baseURL}/healthz`);
        break;
      } catch { /* not up yet */ }
      if (Date.now() - started > 120_000) { await stop(); throw new Error(`wrangler dev did not answer in 120 s:\n${output}`); }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  launch();
  await answering();
  /** Kills the gateway at once (SIGKILL, as a crash) and starts it again on the same state. */
  const crash = async () => {
    await kill('SIGKILL');
    launch();
    await answering();
  };
  return { baseURL, stop, crash, output: () => output };
}
