#!/usr/bin/env bash
# Installs whatever is missing to build, run and test imagegate: the wasm32 target, rustfmt and
# clippy, worker-build, a wasm-bindgen CLI matching Cargo.lock, the npm packages (wrangler,
# Node 22, binaryen, the OpenAI client, playwright-core), the OpenAI Python client in .venv and
# Debian's Chromium for the console's browser tests. Idempotent, and
# quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
say() { printf 'setup: %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding the $component component"
    rustup component add "$component"
  fi
done

if [[ "$(worker-build --version 2>/dev/null)" != *"$WORKER_BUILD_VERSION"* ]]; then
  # worker-build builds openssl-sys, which needs pkg-config and the OpenSSL headers.
  missing=()
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install --locked "worker-build@$WORKER_BUILD_VERSION"
fi

bindgen_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]]; then
  say "installing wasm-bindgen-cli $bindgen_version to match Cargo.lock (a few minutes, once)"
  # No --locked: the CLI's own lock file pins a webpki-roots that no longer builds.
  cargo install --force wasm-bindgen-cli --version "$bindgen_version"
fi

if [[ ! -f node_modules/.setup-done || package-lock.json -nt node_modules/.setup-done ]]; then
  say "installing npm packages"
  # `npm install` honours package-lock.json; `npm ci` trips over the platform-specific optional
  # packages (workerd, esbuild) that this npm leaves out of the lock file.
  npm install --no-audit --no-fund --loglevel=error
  touch node_modules/.setup-done
fi

# The OpenAI Python client, for the end-to-end test that Python callers see (requirements-test.txt),
# in a virtual environment of its own.
if [[ ! -f .venv/.setup-done || requirements-test.txt -nt .venv/.setup-done ]]; then
  say "installing the Python test client"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
  touch .venv/.setup-done
fi

# A real browser for the console's tests: Debian's Chromium, driven by playwright-core (npm), so
# nothing is downloaded from outside the package registries.
if [[ ! -x /usr/bin/chromium ]]; then
  say "installing Chromium (Debian's package, for the console's browser tests)"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
