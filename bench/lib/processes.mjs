// Starting, measuring and stopping the benchmark's server processes. Every process runs in its own
// process group and is killed when the benchmark ends, however it ends.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

const children = [];

/** Kills every process started with `start`. */
export function stopAll() {
  for (const child of children) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  children.length = 0;
}
process.on('exit', stopAll);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { stopAll(); process.exit(130); });

/** A free loopback port. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The CPU a process is pinned to (`taskset`), so that the server measured and the load
 * generator do not steal each other's core: servers on the first CPU, everything else on the
 * second. Unpinned on a single-CPU machine.
 */
export const CPU = { server: '0', load: '1' };
export function pinned(cpu, command, args) {
  return os.cpus().length > 1 ? ['taskset', ['-c', cpu, command, ...args]] : [command, args];
}

/** Starts a server, logging to `<logDir>/<name>.log`; resolves once `probe.url` answers. */
export async function start({ name, logDir, command, args, probe, env = {}, cpu = CPU.server }) {
  const log = path.join(logDir, `${name}.log`);
  const out = openSync(log, 'w');
  const [program, programArgs] = pinned(cpu, command, args);
  const child = spawn(program, programArgs, { detached: true, stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  children.push(child);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited early; see ${log}`);
    try { await fetch(probe.url, probe.init); return child; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not start within 60 s; see ${log}`);
}

/**
 * A cold start: spawns a fresh `command` (a new process, so a new isolate) and measures the
 * milliseconds until `url` first answers `init` with a 2xx, polling every millisecond, for at
 * most 60 s; the process is killed before this settles (and by `stopAll` if the benchmark is
 * stopped meanwhile).
 */
export async function timeToFirstAnswer({ name, logDir, command, args, url, init }) {
  const out = openSync(path.join(logDir, `${name}.log`), 'w');
  const [program, programArgs] = pinned(CPU.server, command, args);
  const started = performance.now();
  const child = spawn(program, programArgs, { detached: true, stdio: ['ignore', out, out] });
  children.push(child);
  const exited = new Promise((resolve) => { child.once('exit', resolve); child.once('error', resolve); });
  let gone = false;
  exited.then(() => { gone = true; });
  try {
    for (;;) {
      const left = 60_000 - (performance.now() - started);
      if (left <= 0) throw new Error(`${name} did not answer within 60 s`);
      if (gone) throw new Error(`${name} exited early; see its log in ${logDir}`);
      let answer;
      try {
        answer = await fetch(url, { ...init, signal: AbortSignal.timeout(Math.ceil(left)) });
        await answer.arrayBuffer();
      } catch {
        await new Promise((r) => setTimeout(r, 1)); // not listening yet
        continue;
      }
      if (!answer.ok) throw new Error(`${name} answered ${answer.status}`);
      return performance.now() - started;
    }
  } finally {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    await exited;
    children.splice(children.indexOf(child), 1);
    closeSync(out);
  }
}

function processTree(pid) {
  let kids = [];
  try { kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number); } catch { /* gone */ }
  return [pid, ...kids.flatMap(processTree)];
}

/** Peak resident memory (MB) of a process and its descendants since the last `resetPeakRss`. */
export function peakRssMb(pid) {
  let kb = 0;
  for (const p of processTree(pid)) {
    try { kb += Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0); } catch { /* gone */ }
  }
  return kb / 1024;
}

/** Resets the peak-memory mark of a process and its descendants. */
export function resetPeakRss(pid) {
  for (const p of processTree(pid)) {
    try { writeFileSync(`/proc/${p}/clear_refs`, '5'); } catch { /* not permitted or gone */ }
  }
}

/** CPU seconds (user + system) used so far by a process and its descendants. */
export function cpuSeconds(pid) {
  const ticksPerSecond = 100; // USER_HZ on Linux
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* gone */ }
  }
  return ticks / ticksPerSecond;
}
