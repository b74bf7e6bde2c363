// The benchmark: imagegate in workerd (the production runtime, serving the bundle `wrangler deploy
// --dry-run` produces) against the floor (the mock upstream itself), the runtime's own floor for a
// relaying worker, the floor for a worker that checks what it relays, and a peer gateway (Portkey on
// Node 22), all in one run on 127.0.0.1.
// Prints a table per scenario with ratios measured in the same run and writes
// bench/results/latest.{md,svg,json}. Every process it starts is stopped at the end, however it ends.
//
// Usage: node bench/run.mjs [--seconds N] [--quick] [--cold N]   (`make bench` runs bench/setup.sh first)
// --quick measures only the two relays and imagegate, writes no results, and takes --scenarios 1,3 to
// run only some scenarios (numbered from 1): for trying changes. --cold N measures N cold starts
// per workerd target (7 by default; 0 with --quick unless given).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chart } from './lib/chart.mjs';
import { load } from './lib/load.mjs';
import { cpuSeconds, peakRssMb, resetPeakRss, stopAll } from './lib/processes.mjs';
import { ROOT, buildBundle, startImagegate, startInspectingRelay, startPortkey, startRelay, startUpstream } from './lib/targets.mjs';

const RUN = path.join(ROOT, 'bench/.run');
const RESULTS = path.join(ROOT, 'bench/results');
const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 5;
const QUICK = process.argv.includes('--quick');
const scenariosArg = process.argv.indexOf('--scenarios');
const ONLY = scenariosArg > 0 ? process.argv[scenariosArg + 1].split(',').map(Number) : null;
const SCENARIOS = [
  { name: 'small answer, concurrency 1', answer: 'small', connections: 1 },
  { name: 'small answer, concurrency 32', answer: 'small', connections: 32 },
  { name: '2 MB answer, concurrency 1', answer: 'big', connections: 1 },
  { name: '2 MB answer, concurrency 8', answer: 'big', connections: 8 },
  // imagegate answers from its response cache; the other targets relay the small answer, as a
  // request without a cache costs them.
  { name: 'small answer, cache hit (imagegate), concurrency 1', answer: 'cached', connections: 1 },
  // imagegate records every generation as an action and keeps its images (D1 and R2 stand-ins
  // that store nothing, so what is measured is the gateway's own cost: the record, the answer
  // read whole and decoded, the `waitUntil` writes); the other targets relay the same answer.
  { name: 'small answer, actions recorded (imagegate), concurrency 1', answer: 'recorded', connections: 1 },
  { name: '2 MB answer, actions recorded (imagegate), concurrency 1', answer: 'recorded-big', connections: 1 },
  // As the sixth, and every generation runs in its action's Durable Object (the runner, storage
  // in memory), so that a client who hangs up loses nothing: what that durability costs.
  { name: 'small answer, generated in a Durable Object (imagegate), concurrency 1', answer: 'durable', connections: 1 },
  // As the sixth, with a managed key that has limits and a budget: its counters (a Durable
  // Object per key) admit each generation before its call and settle it after.
  { name: 'small answer, actions recorded, managed key with limits (imagegate), concurrency 1', answer: 'limited', connections: 1 },
  // As the eighth, asked with `Prefer: respond-async`: each request is answered 202 with its
  // action once the job is handed to its Durable Object, which then runs it in the same process
  // (its CPU counted against the 202s); the other targets relay the small answer.
  { name: 'small answer, asynchronous 202 (imagegate), concurrency 1', answer: 'async', connections: 1 },
  // The plain deployment asked with `stream: true` of an upstream that answers whole: the answer
  // read whole and written as its `completed` event (text/event-stream); the other targets relay
  // the small answer.
  { name: 'small answer, streamed as events (imagegate), concurrency 1', answer: 'streamed', connections: 1 },
  // A provider's own image stream (two 16 KiB partial images, a 32 KiB final image): imagegate
  // asks for it and relays it event by event; the other targets relay the same stream.
  { name: 'image stream, relayed event by event, concurrency 1', answer: 'events', connections: 1 },
];
const coldArg = process.argv.indexOf('--cold');
const COLD_SAMPLES = coldArg > 0 ? Number(process.argv[coldArg + 1]) : QUICK ? 0 : 7;

/** What the targets other than imagegate relay for a scenario's answer. */
const RELAYED = { cached: 'small', recorded: 'small', 'recorded-big': 'big', durable: 'small', limited: 'small', async: 'small', streamed: 'small' };

function fmt(value, digits = 2) {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

function measure(target, scenario) {
  const answer = !target.name.startsWith('imagegate') ? RELAYED[scenario.answer] ?? scenario.answer : scenario.answer;
  const run = (seconds) => load({
    url: target.url(answer), headers: target.headers(answer), body: target.body(answer),
    connections: scenario.connections, seconds, scriptPath: path.join(RUN, `${target.name}-${scenario.answer}.lua`),
  });
  run(1); // warm-up: JIT, connection pools, caches
  resetPeakRss(target.child.pid);
  const cpuBefore = cpuSeconds(target.child.pid);
  const figures = run(SECONDS);
  figures.cpuUsPerRequest = ((cpuSeconds(target.child.pid) - cpuBefore) * 1e6) / figures.requests;
  figures.peakRssMb = peakRssMb(target.child.pid);
  return figures;
}

/**
 * `measure`, except that the peer failing a scenario (answers that are not 2xx: Portkey does not
 * relay an image stream) is recorded as `{ failed }` and reported, rather than ending the run.
 * imagegate and the workerd relays must serve every scenario.
 */
function measureOrFailure(target, scenario) {
  try {
    return measure(target, scenario);
  } catch (error) {
    if (target.name !== 'portkey') throw error;
    const bad = /(\d+) bad answers/.exec(error.message)?.[1];
    return { failed: `fails: every answer an error (${bad ?? '?'} in its warm-up)` };
  }
}

/** The median of `sorted` (ascending). */
const median = (sorted) => (sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2);

function coldReport(cold) {
  if (!cold) return '';
  let md = `\n### Cold start: a fresh workerd per sample, to its first answer (${COLD_SAMPLES} samples)\n\n| target | median ms | fastest ms |\n| --- | ---: | ---: |\n`;
  for (const [label, times] of cold) md += `| ${label} | ${fmt(median(times), 1)} | ${fmt(times[0], 1)} |\n`;
  return md;
}

function report(bundle, targets, results, cold) {
  const ratio = (a, b) => fmt(a / b);
  const cpu = os.cpus();
  let md = `Machine: ${cpu[0].model}, ${cpu.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; `
    + `${SECONDS} s per measurement after a 1 s warm-up; wrk with 1 thread; everything on 127.0.0.1, sharing the cores.\n`
    + `imagegate wasm: ${(bundle.wasmSize.raw / 1024).toFixed(1)} KiB raw, ${(bundle.wasmSize.gzip / 1024).toFixed(1)} KiB gzipped. `
    + 'CPU µs/req is the serving process\'s whole CPU time over the requests it served.\n';
  for (const scenario of SCENARIOS) {
    const r = results[scenario.name];
    md += `\n### ${scenario.name}\n\n| target | p50 ms | p99 ms | req/s | peak RSS MB | CPU µs/req |\n| --- | ---: | ---: | ---: | ---: | ---: |\n`;
    for (const t of targets) {
      const f = r[t.name];
      md += f.failed
        ? `| ${t.label} | ${f.failed} | | | | |\n`
        : `| ${t.label} | ${fmt(f.p50)} | ${fmt(f.p99)} | ${fmt(f.rps, 0)} | ${fmt(f.peakRssMb, 1)} | ${fmt(f.cpuUsPerRequest, 0)} |\n`;
    }
    md += `\nimagegate/relay: p50 ${ratio(r.imagegate.p50, r.relay.p50)}x, throughput ${ratio(r.imagegate.rps, r.relay.rps)}x. `
      + `imagegate/inspecting relay: p50 ${ratio(r.imagegate.p50, r.inspecting.p50)}x, throughput ${ratio(r.imagegate.rps, r.inspecting.rps)}x. `
      + `imagegate/Portkey: p50 ${ratio(r.imagegate.p50, r.portkey.p50)}x, throughput ${ratio(r.imagegate.rps, r.portkey.rps)}x.\n`;
  }
  return md + coldReport(cold);
}

async function main() {
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  mkdirSync(RESULTS, { recursive: true });
  const bundle = buildBundle(path.join(RUN, 'dist'));
  const upstream = await startUpstream(RUN);
  const relay = await startRelay(RUN, upstream);
  const inspecting = await startInspectingRelay(RUN, upstream);
  const imagegate = await startImagegate(RUN, upstream, bundle);
  const recording = await startImagegate(RUN, upstream, bundle, { recording: true });
  const durable = await startImagegate(RUN, upstream, bundle, { recording: true, durable: true });
  const limited = await startImagegate(RUN, upstream, bundle, { recording: true, limited: true });
  const targets = QUICK ? [relay, inspecting, imagegate] : [upstream, relay, inspecting, imagegate, await startPortkey(RUN, upstream)];
  const results = {};
  for (const [index, scenario] of SCENARIOS.entries()) {
    if (QUICK && ONLY && !ONLY.includes(index + 1)) continue;
    results[scenario.name] = {};
    for (const listed of targets) {
      // The recording scenario measures the deployment with a history in imagegate's place.
      const stateful = { recorded: recording, 'recorded-big': recording, durable, limited, async: durable }[scenario.answer];
      const target = stateful && listed.name === 'imagegate' ? stateful : listed;
      const figures = measureOrFailure(target, scenario);
      results[scenario.name][listed.name] = figures;
      const shown = figures.failed ?? `p50 ${fmt(figures.p50)} ms  ${fmt(figures.rps, 0)} req/s  ${fmt(figures.cpuUsPerRequest, 0)} CPU µs/req`;
      process.stderr.write(`${scenario.name.padEnd(30)} ${target.name.padEnd(11)} ${shown}\n`);
    }
  }
  // Cold starts after the load, one workerd target at a time, each sample a fresh process.
  let cold = null;
  if (COLD_SAMPLES > 0) {
    cold = [];
    for (const target of [relay, inspecting, imagegate]) {
      const times = await target.coldStarts(COLD_SAMPLES);
      cold.push([target.label, times]);
      process.stderr.write(`cold start ${target.name.padEnd(11)} median ${fmt(median(times), 1)} ms  fastest ${fmt(times[0], 1)} ms\n`);
    }
  }
  stopAll();
  if (QUICK) return;
  const md = report(bundle, targets, results, cold);
  const title = `imagegate benchmark: ${os.cpus().length} cores, ${SECONDS} s per measurement`;
  writeFileSync(path.join(RESULTS, 'latest.md'), md);
  writeFileSync(path.join(RESULTS, 'latest.svg'), chart({ title, scenarios: SCENARIOS, targets, results }));
  writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify({ seconds: SECONDS, wasmSize: bundle.wasmSize, results, coldStartMs: cold && Object.fromEntries(cold) }, null, 2));
  process.stdout.write(`${md}\nWritten: bench/results/latest.md, latest.svg, latest.json\n`);
}

main().catch((error) => { stopAll(); console.error(error.message ?? error); process.exit(1); });
