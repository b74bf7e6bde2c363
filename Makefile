# The two commands: `make dev` runs the gateway on 127.0.0.1:8787; `make test` runs every test.
# Both install what is missing first (scripts/setup.sh).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: setup dev-vars dev build test test-native test-e2e bench

setup:
	@bash scripts/setup.sh

dev-vars:
	@bash scripts/dev-vars.sh

dev: setup dev-vars
	wrangler d1 migrations apply imagegate --local < /dev/null
	wrangler dev --ip 127.0.0.1 --port 8787

build: setup
	bash scripts/build.sh

test: setup
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --target wasm32-unknown-unknown --lib -- -D warnings
	cargo test --locked
	bash scripts/build.sh
	node --test --test-concurrency=1 tests/e2e/*.test.mjs

test-native:
	cargo test --locked

test-e2e: build
	node --test --test-concurrency=1 tests/e2e/*.test.mjs

# The benchmark (README, Performance): imagegate in workerd against the floor, a relay and a peer.
bench:
	bash bench/setup.sh
	node bench/run.mjs
