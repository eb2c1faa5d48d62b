#!/usr/bin/env bash
# Added latency of the five shipped plugins, enabled together, against none: p50 of
# GET /api/v1/functions/{id} and of the execute path (POST ...?async=true: validate_execution and
# quota run there), in two stacks measured in the same run; and the worker-side postprocess
# time per call from the worker's /metrics. quota's max_concurrent is off by default here:
# it counts the user's queued+running executions on each request, and this benchmark queues
# thousands with no worker, far past any real max_concurrent (MAXCONC=N turns it on).
source "$(dirname "$0")/lib.sh"
DURATION=${BENCH_DURATION:-5s}
ALL='{ dir = "'$ROOT'/plugins", lua_dir = "'$ROOT'/lua", enabled = {
  { name = "image_policy", conf = { allow = { ".*" } } },
  { name = "input_limits", conf = { max_bytes = 1048576 } },
  { name = "quota", conf = { max_functions = 1000, executions_per_minute = 100000000, max_concurrent = '"${MAXCONC:-0}"' } },
  { name = "output", conf = { strip_ansi = true, parse_json = true } },
  { name = "redact", conf = { patterns = { "%d%d%d%d%-%d%d%d%d" } } } } }'

p50_us() { # URL wrk-args... -> p50 in microseconds
    local url=$1; shift
    wrk --latency "$@" "$url" | awk '$1=="50%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v)} else if (v ~ /ms$/) {sub(/ms/,"",v); v=v*1000} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000000} print v}'
}

measure() { # prints "get_p50 exec_p50"
    new_user
    local fid
    fid=$(curl -fsS -X POST "$API/api/v1/functions" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"image":"faas-test/echo:latest","name":"p"}' |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["functionId"])')
    cat > "$TMP/exec.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
    local get exec
    get=$(p50_us "$API/api/v1/functions/$fid" -t1 -c1 -d"$DURATION" -H "Authorization: Bearer $TOKEN")
    exec=$(p50_us "$API/api/v1/functions/execute/$fid?async=true" -t1 -c1 -d"$DURATION" -s "$TMP/exec.lua")
    echo "$get $exec"
}

BENCH_PLUGINS='{ enabled = {} }' start_stack 0
read -r GET0 EXEC0 < <(measure)
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
BENCH_PLUGINS=${ALL/executions_per_minute = 100000000/executions_per_minute = 0} start_stack 0
read -r GETN EXECN < <(measure)
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
rm -rf "$TMP/nats"
BENCH_PLUGINS=$ALL start_stack 0
read -r GET5 EXEC5 < <(measure)
# the time spent inside the Lua hooks themselves, per call, from the API's own counters
HOOK_US=$(curl -fsS "$API/metrics" | awk '
    /^faas_plugin_seconds_total\{/ {s += $2}
    /^faas_plugin_calls_total\{.*hook="quota"/ {n += $2}
    END {if (n) printf "%.1f", s / n * 1e6; else print "n/a"}')

# worker side: postprocess of output + redact on real executions, in a third stack (the async
# measurement above left thousands of executions queued in the second)
"$ROOT/scripts/test-images.sh" echo >/dev/null
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
rm -rf "$TMP/nats"
WPORT=$(free_port)
WORKER_PORT=$WPORT BENCH_PLUGINS=$ALL start_stack 1
new_user
FID=$(curl -fsS -X POST "$API/api/v1/functions" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"image":"faas-test/echo:latest","name":"w"}' |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["functionId"])')
for i in $(seq 1 10); do
    curl -fsS -o /dev/null -X POST "$API/api/v1/functions/execute/$FID" -H "Authorization: Bearer $TOKEN" \
        -d '{"card": "1234-5678"}'
done
POST_US=$(curl -fsS "http://127.0.0.1:$WPORT/metrics" | awk '
    /^faas_plugin_seconds_total\{.*hook="postprocess"/ {s += $2}
    /^faas_plugin_calls_total\{.*hook="postprocess"/ {c += $2}
    END {if (c) printf "%.1f", s / c * 1e6 * 2; else print "n/a"}')

printf 'GET /functions/{id} p50, no plugins:      %s us\n' "$GET0"
printf 'GET /functions/{id} p50, five plugins:    %s us\n' "$GET5"
printf 'execute (async) p50, no plugins:          %s us\n' "$EXEC0"
printf 'execute (async) p50, five plugins:        %s us\n' "$EXEC5"
printf 'execute p50, five plugins, no rate limit:  %s us\n' "$EXECN"
awk -v a="$GET5" -v b="$GET0" -v c="$EXEC5" -v d="$EXEC0" -v n="$EXECN" 'BEGIN {
    printf "added p50: GET %.0f us, execute %.0f us (%.0f us without the rate limiter'"'"'s store write) (target <= 50 us)\n", a - b, c - d, n - d }'
printf 'Lua time of the API-side hooks per execute:   %s us\n' "$HOOK_US"
printf 'worker postprocess (output + redact) per execution: %s us\n' "$POST_US"
