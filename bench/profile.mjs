// Where imagegate's time goes: a CPU profile of imagegate in workerd (through its inspector) under
// the benchmark's load, summarised as the functions with the most self time.
//
// Usage: node bench/profile.mjs [--answer small|big|recorded|recorded-big] [--connections N] [--seconds N]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { load } from './lib/load.mjs';
import { freePort, stopAll } from './lib/processes.mjs';
import { ROOT, buildBundle, startImagegate, startUpstream } from './lib/targets.mjs';

const RUN = path.join(ROOT, 'bench/.profile');
const arg = (name, fallback) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : fallback; };
const ANSWER = arg('answer', 'small');
const CONNECTIONS = Number(arg('connections', '1'));
const SECONDS = Number(arg('seconds', '5'));

/** A minimal Chrome DevTools Protocol session over the inspector's WebSocket. */
async function inspect(inspectorPort) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  let nextId = 1;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id && pending.has(message.id)) { pending.get(message.id)(message); pending.delete(message.id); }
  };
  const send = (method, params = {}) => new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
  });
  return { send, close: () => socket.close() };
}

async function main() {
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  const bundle = buildBundle(path.join(RUN, 'dist'));
  const upstream = await startUpstream(RUN);
  const inspectorPort = await freePort();
  const imagegate = await startImagegate(RUN, upstream, bundle, { inspectorPort, recording: ANSWER.startsWith('recorded') });
  const run = (seconds) => load({
    url: imagegate.url(ANSWER), headers: imagegate.headers(ANSWER), body: imagegate.body(ANSWER),
    connections: CONNECTIONS, seconds, scriptPath: path.join(RUN, 'load.lua'),
  });
  run(1);
  const session = await inspect(inspectorPort);
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: 100 });
  await session.send('Profiler.start');
  const figures = run(SECONDS);
  const { result } = await session.send('Profiler.stop');
  session.close();
  stopAll();

  const profile = result.profile;
  writeFileSync(path.join(RUN, 'imagegate.cpuprofile'), JSON.stringify(profile));
  const total = profile.samples.length;
  const selfByName = new Map();
  const hits = new Map(profile.samples.reduce((m, id) => m.set(id, (m.get(id) ?? 0) + 1), new Map()));
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const name = `${functionName || '(anonymous)'} ${url ? `${path.basename(url)}:${lineNumber + 1}` : ''}`.trim();
    selfByName.set(name, (selfByName.get(name) ?? 0) + (hits.get(node.id) ?? 0));
  }
  const top = [...selfByName.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
  console.log(`${figures.requests} requests (${ANSWER} answer, concurrency ${CONNECTIONS}), ${total} samples; self time by function:`);
  for (const [name, count] of top) console.log(`${((100 * count) / total).toFixed(1).padStart(6)}%  ${name}`);
  console.log(`Full profile: ${path.relative(ROOT, path.join(RUN, 'imagegate.cpuprofile'))} (open in Chrome DevTools)`);
}

main().catch((error) => { stopAll(); console.error(error.message ?? error); process.exit(1); });
