// Load generation with wrk: POSTs of a fixed body, bounded in time, latency percentiles parsed.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { CPU, pinned } from './processes.mjs';

function toMs(value, unit) {
  return Number(value) * { us: 0.001, ms: 1, s: 1000, m: 60000 }[unit];
}

/**
 * Loads `url` for `seconds` with `connections` connections (one wrk thread); returns p50, p99
 * (ms), req/s and the request count. Any non-2xx answer or socket error fails the run: the
 * figures would describe something other than the gateway doing its job.
 */
export function load({ url, headers, body, connections, seconds, scriptPath }) {
  const headerLines = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join('\n');
  writeFileSync(scriptPath, `wrk.method = "POST"\nwrk.body = ${JSON.stringify(JSON.stringify(body))}\n${headerLines}\n`);
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '30s', '--latency', '-s', scriptPath, url];
  const [program, programArgs] = pinned(CPU.load, 'wrk', args);
  const output = execFileSync(program, programArgs, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: (seconds + 60) * 1000 });
  const latency = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(output);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1];
  const socketErrors = /Socket errors: (.*)$/m.exec(output)?.[1];
  if (bad || socketErrors) {
    throw new Error(`${url} (${path.basename(scriptPath)}): ${bad ?? 0} bad answers, socket errors: ${socketErrors ?? 'none'}\n${output}`);
  }
  return {
    p50: latency(50),
    p99: latency(99),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0),
    requests: Number(/(\d+) requests in/.exec(output)?.[1] ?? 0),
  };
}
