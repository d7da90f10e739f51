#!/usr/bin/env bash
# The test command. On a fresh machine it installs what the tests need into
# .venv (moto server, localstripe, cfn-lint), starts moto and localstripe on
# 127.0.0.1 on free ports, runs every Rust test against them, lints
# template.yaml, and stops the servers whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${CONNECTOR_TEST_VENV:-$root/.venv}
run=$root/.test-run
rm -rf "$run" && mkdir -p "$run"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r infra/requirements-test.txt

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_http() { # url name log
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not start; its log:" >&2
  cat "$3" >&2
  return 1
}

moto_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$run/moto.log" 2>&1 &
pids+=($!)
stripe_port=$(free_port)
(cd "$run" && exec "$venv/bin/python" "$root/infra/localstripe_server.py" "$stripe_port") >"$run/localstripe.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/" moto "$run/moto.log"
wait_http "http://127.0.0.1:$stripe_port/v1/customers" localstripe "$run/localstripe.log"
curl -s -X DELETE "http://127.0.0.1:$stripe_port/_config/data" >/dev/null

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export LOCALSTRIPE_URL="http://127.0.0.1:$stripe_port"
unset AWS_PROFILE AWS_SESSION_TOKEN

echo "== moto on $AWS_ENDPOINT_URL, localstripe on $LOCALSTRIPE_URL"
status=0
cargo fmt --all -- --check || { echo "cargo fmt --all would change files" >&2; status=1; }
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

echo "== cfn-lint template.yaml"
"$venv/bin/cfn-lint" template.yaml || status=$?
exit "$status"
