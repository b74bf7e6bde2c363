// The Worker's entry module: the wasm gateway that worker-build writes to build/, behind the guard
// that turns anything escaping it into the gateway's error envelope.
import Gateway from '../../build/index.js';
import { guard } from './guard.mjs';

export default guard(Gateway);
// The Durable Object that coalesces identical cache-enabled requests (binding IMAGEGATE_COALESCER).
export { CacheFlight } from '../../build/index.js';
// The Durable Object that runs each asynchronous generation apart from its client (binding
// IMAGEGATE_RUNNER).
export { ActionRun } from '../../build/index.js';
// The Durable Object that keeps each managed key's exact counters: rate, generations in
// flight and spend (binding IMAGEGATE_LIMITS).
export { KeyCounters } from '../../build/index.js';
