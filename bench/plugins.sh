#!/usr/bin/env bash
# Added latency of the five shipped plugins, enabled together, against none: p50 of
# GET /api/v1/functions/{id} and of the execute path (POST ...?async=true: validate_execution and
# quota run there). Three stacks run side by side, each with its own nats-server, faas-api and
# SQLite file: no plugins, the five, and the five with quota's rate limiter off. In each of
# ROUNDS rounds every stack is measured in turn (one connection, SLICE each, the order rotating);
# a figure is the median of its rounds, so whatever drifts during the run (JetStream's stream
# growing, other load on the machine) weighs on the three alike. Then the worker-side postprocess
# time per call from the worker's /metrics. quota's max_concurrent is off by default here: it
# counts the user's queued+running executions on each request, and this benchmark queues
# thousands with no worker, far past any real max_concurrent (MAXCONC=N turns it on).
source "$(dirname "$0")/lib.sh"
ROUNDS=${BENCH_ROUNDS:-9}
SLICE=${BENCH_SLICE:-1s}
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
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# stack NAME PLUGINS: starts a stack in $TMP/NAME with a user and a function of its own
declare -A API_OF FID_OF TOKEN_OF
stack() {
    STACK_DIR=$TMP/$1 BENCH_PLUGINS=$2 start_stack 0
    new_user
    API_OF[$1]=$API
    TOKEN_OF[$1]=$TOKEN
    FID_OF[$1]=$(curl -fsS -X POST "$API/api/v1/functions" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"image":"faas-test/echo:latest","name":"p"}' |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["functionId"])')
    cat > "$TMP/$1/exec.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
}
measure() { # NAME: appends one p50 of each path to $TMP/NAME/{get,exec}
    local api=${API_OF[$1]} fid=${FID_OF[$1]}
    p50_us "$api/api/v1/functions/$fid" -t1 -c1 -d"$SLICE" \
        -H "Authorization: Bearer ${TOKEN_OF[$1]}" >>"$TMP/$1/get"
    p50_us "$api/api/v1/functions/execute/$fid?async=true" -t1 -c1 -d"$SLICE" \
        -s "$TMP/$1/exec.lua" >>"$TMP/$1/exec"
}

stack none '{ enabled = {} }'
stack five "$ALL"
FIVE_API=$API
stack norate "${ALL/executions_per_minute = 100000000/executions_per_minute = 0}"
order=(none five norate)
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do measure "${order[(i + r) % 3]}"; done
done
[ -n "${BENCH_VERBOSE:-}" ] && for n in none five norate; do echo "$n get: $(tr "\n" " " <"$TMP/$n/get")  exec: $(tr "\n" " " <"$TMP/$n/exec")"; done
GET0=$(median "$TMP/none/get");  EXEC0=$(median "$TMP/none/exec")
GET5=$(median "$TMP/five/get");  EXEC5=$(median "$TMP/five/exec")
EXECN=$(median "$TMP/norate/exec")
# the time spent inside the Lua hooks themselves, per execute, from the API's own counters
HOOK_US=$(curl -fsS "$FIVE_API/metrics" | awk '
    /^faas_plugin_seconds_total\{/ {s += $2}
    /^faas_plugin_calls_total\{.*hook="quota"/ {n += $2}
    END {if (n) printf "%.1f", s / n * 1e6; else print "n/a"}')
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()

# worker side: postprocess of output + redact on real executions, in a third stack (the async
# measurement above left thousands of executions queued in the second)
"$ROOT/scripts/test-images.sh" echo >/dev/null
WPORT=$(free_port)
STACK_DIR=$TMP/worker WORKER_PORT=$WPORT BENCH_PLUGINS=$ALL start_stack 1
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

printf 'medians of %s rounds of %s per stack and path, one connection\n' "$ROUNDS" "$SLICE"
printf 'GET /functions/{id} p50, no plugins:      %s us\n' "$GET0"
printf 'GET /functions/{id} p50, five plugins:    %s us\n' "$GET5"
printf 'execute (async) p50, no plugins:          %s us\n' "$EXEC0"
printf 'execute (async) p50, five plugins:        %s us\n' "$EXEC5"
printf 'execute p50, five plugins, no rate limit:  %s us\n' "$EXECN"
awk -v a="$GET5" -v b="$GET0" -v c="$EXEC5" -v d="$EXEC0" -v n="$EXECN" 'BEGIN {
    printf "added p50: GET %.0f us, execute %.0f us (%.0f us with quota'"'"'s rate limiter off) (target <= 50 us)\n", a - b, c - d, n - d }'
printf 'Lua time of the API-side hooks per execute:   %s us\n' "$HOOK_US"
printf 'worker postprocess (output + redact) per execution: %s us\n' "$POST_US"
