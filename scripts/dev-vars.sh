#!/usr/bin/env bash
# Makes .dev.vars, the local secrets `make dev` runs with: a copy of .dev.vars.example when it is
# missing, and a signing secret for file URLs (IMAGEGATE_FILES_SECRET) drawn at random when the
# file has none, so an older .dev.vars gains one too. Idempotent; never changes a value set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -f .dev.vars ]]; then
  cp .dev.vars.example .dev.vars
  echo "dev-vars: created .dev.vars from .dev.vars.example" >&2
fi
if ! grep -q '^IMAGEGATE_FILES_SECRET=' .dev.vars; then
  secret="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
  printf '\n# Signs the URLs of stored images (drawn at random by scripts/dev-vars.sh).\nIMAGEGATE_FILES_SECRET="%s"\n' "$secret" >> .dev.vars
  echo "dev-vars: added a random IMAGEGATE_FILES_SECRET to .dev.vars" >&2
fi
if ! grep -q '^IMAGEGATE_ADMIN_KEY=' .dev.vars; then
  printf '\n# The local management key (see .dev.vars.example).\nIMAGEGATE_ADMIN_KEY="sk-imagegate-dev-admin"\n' >> .dev.vars
  echo "dev-vars: added the local management key to .dev.vars" >&2
fi
