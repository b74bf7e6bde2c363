// The Worker's entry module: the wasm gateway that worker-build writes to build/, behind the guard
// that turns anything escaping it into the gateway's error envelope.
import Gateway from '../../build/index.js';
import { guard } from './guard.mjs';

export default guard(Gateway);
