#!/usr/bin/env bash
# The test command. On a fresh machine it installs what the tests need into
# .venv (moto server, localstripe, cfn-lint), starts moto and localstripe on
# 127.0.0.1 on free ports, runs every Rust test against them, lints
# template.yaml, gates on fmt and clippy, and stops the servers whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source infra/lib.sh

ensure_venv
start_moto
start_localstripe

echo "== moto on $AWS_ENDPOINT_URL, localstripe on $LOCALSTRIPE_URL"
status=0
# The declared rust-version is the toolchain these tests build with: older
# ones are not tried here, so none is claimed.
declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
active=$(rustc --version | sed -E 's/^rustc ([0-9]+\.[0-9]+).*/\1/')
if [[ "$declared" != "$active" ]]; then
  echo "Cargo.toml declares rust-version $declared but the tests build with $active" >&2
  status=1
fi
cargo fmt --all -- --check || { echo "cargo fmt --all would change files" >&2; status=1; }
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings || status=1
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

echo "== openapi-spec-validator docs/openapi.json"
"$venv/bin/openapi-spec-validator" docs/openapi.json || status=$?

echo "== cfn-lint template.yaml"
"$venv/bin/cfn-lint" template.yaml || status=$?
exit "$status"
