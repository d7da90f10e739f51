#!/usr/bin/env bash
# The benchmarks whose results are in docs/benchmarks.md.
#   infra/bench.sh ingest     ingest throughput of the dev server (no services needed)
#   infra/bench.sh coldstart  cold start and peak RSS of every Lambda (starts moto)
#   infra/bench.sh cost       AWS calls, write units and cost per million events (starts moto)
#   infra/bench.sh verify     webhook signature verification (criterion)
#   infra/bench.sh noisy      noisy-neighbour load: dev server (default) or --host moto (starts moto)
# Extra arguments go to the harness, e.g. `infra/bench.sh ingest --requests 20000`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
what=${1:-}
shift || true
case "$what" in
  ingest)
    cargo build --release -p dev-server -p connector-bench
    exec target/release/ingest-load "$@"
    ;;
  coldstart)
    cargo build --release --workspace --bins
    source infra/lib.sh
    ensure_venv
    start_moto
    target/release/coldstart "$@"
    ;;
  cost)
    cargo build --release -p connector-bench
    source infra/lib.sh
    ensure_venv
    start_moto
    target/release/cost-model "$@"
    ;;
  noisy)
    cargo build --release -p connector-bench --bin noisy-neighbour
    source infra/lib.sh
    if [[ " $* " == *" moto "* ]]; then
      ensure_venv
      start_moto
    fi
    target/release/noisy-neighbour "$@"
    ;;
  verify)
    exec cargo bench -p connector-core --bench webhook_verify "$@"
    ;;
  *)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
