#!/usr/bin/env bash
# Builds the worker bundle into build/ with worker-build, using the local wasm-bindgen, wasm-opt
# (binaryen from npm) and esbuild instead of the GitHub downloads worker-build would attempt.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/@esbuild/linux-x64/bin/esbuild"
exec worker-build --release
