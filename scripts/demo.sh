#!/usr/bin/env bash
# Run the RMM on this machine with the embedded defaults: a server on SQLite, this host's agent
# enrolled and reporting, /metrics served. Ctrl-C stops both. State lives in ./run (RMM_DEMO_DIR).
# Settings (environment): RMM_GRPC_PORT, RMM_HTTP_PORT, RMM_INTERVAL, RMM_DEMO_DIR,
# RMM_POLICIES (a policy directory, instead of the shipped policies/) and
# RMM_NOTIFY_CONFIG (a notification config, as deploy/notifications.example.yaml).
set -euo pipefail

# Paths given relative to where the demo was started from, before moving to the checkout.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="$(absolute "${RMM_DEMO_DIR:-$ROOT/run}")"
POLICIES="${RMM_POLICIES:+$(absolute "$RMM_POLICIES")}"
NOTIFY_CONFIG="${RMM_NOTIFY_CONFIG:+$(absolute "$RMM_NOTIFY_CONFIG")}"
if [ -n "$POLICIES" ] && [ ! -d "$POLICIES" ]; then
  echo "demo: RMM_POLICIES=$RMM_POLICIES: no such directory (give a directory of policy YAML files)" >&2
  exit 2
fi
if [ -n "$NOTIFY_CONFIG" ] && [ ! -f "$NOTIFY_CONFIG" ]; then
  echo "demo: RMM_NOTIFY_CONFIG=$RMM_NOTIFY_CONFIG: no such file (see deploy/notifications.example.yaml)" >&2
  exit 2
fi
cd "$ROOT"
GRPC_PORT="${RMM_GRPC_PORT:-50051}"
HTTP_PORT="${RMM_HTTP_PORT:-9464}"
INTERVAL="${RMM_INTERVAL:-10}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$RUN_DIR"
if [ ! -x .venv/bin/rmm-server ]; then
  echo "== installing into .venv (first run only; log: $RUN_DIR/pip.log)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]' \
    >"$RUN_DIR/pip.log" 2>&1 || { cat "$RUN_DIR/pip.log"; exit 1; }
fi
BIN="$PWD/.venv/bin"
server_args=()
[ -z "$POLICIES" ] || server_args+=(--policies "$POLICIES")
[ -z "$NOTIFY_CONFIG" ] || server_args+=(--notify-config "$NOTIFY_CONFIG")

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; state kept in $RUN_DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

echo "== starting the server (log: $RUN_DIR/server.log; policies: ${POLICIES:-the shipped ones}${NOTIFY_CONFIG:+; notifications: $NOTIFY_CONFIG})"
# TLS by default: the first start makes the server's own CA in $RUN_DIR/server/tls.
"$BIN/rmm-server" serve --data-dir "$RUN_DIR/server" \
  --grpc-listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  ${server_args[@]+"${server_args[@]}"} >>"$RUN_DIR/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null; then break; fi
  kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$RUN_DIR/server.log"; exit 1; }
  sleep 0.1
done

# The CLI and the agent pin the server's CA by its fingerprint.
RMM_CA_FINGERPRINT="$("$BIN/rmm-server" ca show --data-dir "$RUN_DIR/server" 2>&1 >/dev/null \
  | sed -n 's/^fingerprint //p')"
RMM_TOKEN="$(cat "$RUN_DIR/server/admin.token")"
export RMM_SERVER="127.0.0.1:$GRPC_PORT" RMM_TOKEN RMM_CA_FINGERPRINT

identity="$RUN_DIR/agent/identity.json"
# An agent a plaintext demo enrolled (before TLS was the default) enrolls again.
if [ ! -f "$identity" ] || grep -q '"insecure": true' "$identity"; then
  echo "== enrolling this host's agent (client demo, site local)"
  token="$("$BIN/rmm" tokens create --client demo --site local --uses 1 --expires 10m --output json \
    | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  "$BIN/rmm-agent" enroll --server "$RMM_SERVER" --token "$token" --state-dir "$RUN_DIR/agent" \
    --ca-fingerprint "$RMM_CA_FINGERPRINT" --tag demo --force
fi

echo "== starting the agent, reporting every ${INTERVAL}s (log: $RUN_DIR/agent.log)"
"$BIN/rmm-agent" run --state-dir "$RUN_DIR/agent" --interval "$INTERVAL" \
  >>"$RUN_DIR/agent.log" 2>&1 &
pids+=($!)

sleep 3
"$BIN/rmm" agents list
cat <<EOT

The RMM is running. In another terminal:
  export RMM_SERVER=$RMM_SERVER RMM_CA_FINGERPRINT=$RMM_CA_FINGERPRINT
  export RMM_TOKEN=\$(cat $RUN_DIR/server/admin.token)
  $BIN/rmm agents list                 # every agent, online/offline, key metrics
  $BIN/rmm agents show <id|hostname>   # one agent in full (add --output json)
  curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep '^rmm_'   # what Prometheus scrapes
Press Ctrl-C to stop.
EOT
wait -n "${pids[@]}"  # until Ctrl-C, or until either process dies
