# Shared by the benchmarks: starts nats-server, faas-api (and optionally faas-worker) on free
# loopback ports in a temp dir, and stops them on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${FAAS_BIN:-$ROOT/bin}
TMP=$(mktemp -d /tmp/faas-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
export FAAS_JWT_SECRET=bench-secret-0123456789abcdefghijklmnopqrstuvwxyz

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }

# start_stack [workers] [store-lua]: sets API, API_PID, NATS_PORT. Files go to $STACK_DIR
# (default $TMP): give each of several stacks running at once its own.
start_stack() {
    local workers=${1:-0}
    local dir=${STACK_DIR:-$TMP}
    mkdir -p "$dir"
    local store=${2:-"{ driver = \"sqlite\", path = \"$dir/faas.db\" }"}
    local plugins=${BENCH_PLUGINS:-"{ enabled = {} }"}
    NATS_PORT=$(free_port)
    API_PORT=$(free_port)
    mkdir -p "$dir/nats"
    printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n' \
        "$NATS_PORT" "$dir/nats" > "$dir/nats.conf"
    nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    PIDS+=($!)
    cat > "$dir/config.lua" <<LUA
server = { listen = "127.0.0.1", port = $API_PORT, threads = 4, sync_wait = 60 }
auth = { jwt_secret = env("FAAS_JWT_SECRET") }
store = $store
nats = { url = "nats://127.0.0.1:$NATS_PORT" }
worker = { concurrency = 8, pull_policy = "never", port = ${WORKER_PORT:-0}, reap_interval = 60 }
limits = { timeout = { default = 30, max = 60 } }
plugins = $plugins
log = { level = "warn" }
LUA
    for i in $(seq 1 "$workers"); do
        "$BIN/faas-worker" --config "$dir/config.lua" >"$dir/worker$i.log" 2>&1 &
        PIDS+=($!)
    done
    "$BIN/faas-api" --config "$dir/config.lua" >"$dir/api.log" 2>&1 &
    API_PID=$!
    PIDS+=($API_PID)
    API="http://127.0.0.1:$API_PORT"
    for _ in $(seq 1 100); do
        curl -fsS "$API/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "faas-api did not become ready"; cat "$dir/api.log"; exit 1
}

# new_user: sets TOKEN
new_user() {
    local email="bench-$RANDOM$RANDOM@example.com"
    curl -fsS -X POST "$API/api/v1/users" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"bench password\"}" >/dev/null
    TOKEN=$(curl -fsS -X POST "$API/api/v1/users/login" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"bench password\"}" |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    EMAIL=$email
}

# wrk_rps URL [wrk args...]: prints requests/s
wrk_rps() {
    local url=$1; shift
    wrk "$@" "$url" | awk '/Requests\/sec/ {print $2}'
}
# wrk_p99 URL [wrk args...]: prints the 99th percentile latency in ms
wrk_p99() {
    local url=$1; shift
    wrk --latency "$@" "$url" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000} print v}'
}
