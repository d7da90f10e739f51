# Shared by infra/test.sh and infra/bench.sh: the Python venv with the test
# services, free ports, starting servers on 127.0.0.1 and stopping them.
# Source it after setting `root`.
venv=${CONNECTOR_TEST_VENV:-$root/.venv}
run=$root/.test-run
rm -rf "$run" && mkdir -p "$run"

ensure_venv() {
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/infra/requirements-test.txt"
}

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

# Starts moto (one request at a time: see infra/moto_server.py) and points
# the AWS SDK at it (fake credentials, us-east-1).
start_moto() {
  local port
  port=$(free_port)
  "$venv/bin/python" "$root/infra/moto_server.py" "$port" >"$run/moto.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/moto-api/" moto "$run/moto.log"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  unset AWS_PROFILE AWS_SESSION_TOKEN
}

# Starts localstripe with an empty store; exports LOCALSTRIPE_URL.
start_localstripe() {
  local port
  port=$(free_port)
  (cd "$run" && exec "$venv/bin/python" "$root/infra/localstripe_server.py" "$port") >"$run/localstripe.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/v1/customers" localstripe "$run/localstripe.log"
  curl -s -X DELETE "http://127.0.0.1:$port/_config/data" >/dev/null
  export LOCALSTRIPE_URL="http://127.0.0.1:$port"
}
