#!/usr/bin/env bash
# `make run`: the whole system on the embedded defaults (config.lua): a JetStream nats-server
# under ./data/nats when none answers, faas-worker, faas-api. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${FAAS_CONFIG:-config.lua}
mkdir -p data
pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    echo "stopped"
}
trap stop INT TERM EXIT

if [ -z "${FAAS_JWT_SECRET:-}" ]; then
    if [ ! -s data/jwt.secret ]; then
        head -c 48 /dev/urandom | base64 | tr -d '\n' > data/jwt.secret
        chmod 600 data/jwt.secret
        echo "generated a random JWT secret into data/jwt.secret"
    fi
    FAAS_JWT_SECRET=$(cat data/jwt.secret)
    export FAAS_JWT_SECRET
fi

NATS_URL=$(bin/faas-api --config "$CONFIG" --get nats.url)
API_HOST=$(bin/faas-api --config "$CONFIG" --get server.listen)
API_PORT=$(bin/faas-api --config "$CONFIG" --get server.port)
hostport=${NATS_URL#nats://}
host=${hostport%%:*}
port=${hostport##*:}
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    command -v nats-server >/dev/null || { echo "nats-server is not installed: run 'make deps'"; exit 1; }
    mkdir -p data/nats
    printf 'listen: %s:%s\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n' \
        "$host" "$port" "$PWD/data/nats" > data/nats.conf
    nats-server -c data/nats.conf > data/nats.log 2>&1 &
    pids+=($!)
    echo "started nats-server on $host:$port (JetStream in data/nats, log data/nats.log)"
fi

if ! curl -fsS --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; then
    echo "WARNING: no Docker engine answers on /var/run/docker.sock: the API serves, but" \
         "executions wait in the queue until an engine is reachable"
fi

bin/faas-worker --config "$CONFIG" &
pids+=($!)
bin/faas-api --config "$CONFIG" &
pids+=($!)

url="http://${API_HOST:-127.0.0.1}:${API_PORT:-8080}"
for _ in $(seq 1 100); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo
echo "FaaS API on $url  (Ctrl-C stops everything)"
echo "try: curl -s -X POST $url/api/v1/users -H 'Content-Type: application/json' -d '{\"email\":\"me@example.com\",\"password\":\"correct horse\"}'"
wait -n "${pids[@]}" || true
