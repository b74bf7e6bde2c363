#!/usr/bin/env bash
# Installs what the benchmark needs beyond the project's own set-up: wrk (Debian), the mock
# upstream (a std-only Rust binary), and the peer gateway (Portkey, from npm). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
say() { printf 'bench setup: %s\n' "$*" >&2; }
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
cargo build --quiet --release --locked --manifest-path bench/upstream/Cargo.toml
if [[ ! -f bench/peer/node_modules/.setup-done || bench/peer/package-lock.json -nt bench/peer/node_modules/.setup-done ]]; then
  say "installing the peer gateway"
  npm install --prefix bench/peer --no-audit --no-fund --loglevel=error
  touch bench/peer/node_modules/.setup-done
fi
