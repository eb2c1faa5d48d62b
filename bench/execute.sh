#!/usr/bin/env bash
# Sync execution end to end (HTTP in, result out) against `docker run --rm -i --network none`
# of the same image and input, alternating; throughput with 8 in flight against 8 parallel
# docker runs; async accept rate; worker idle RSS.
source "$(dirname "$0")/lib.sh"
N=${BENCH_RUNS:-20}
"$ROOT/scripts/test-images.sh" >/dev/null
IMAGE=faas-test/echo:latest
start_stack 1
WORKER_PID=${PIDS[1]}
new_user
FID=$(curl -fsS -X POST "$API/api/v1/functions" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"image\":\"$IMAGE\",\"name\":\"bench\"}" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["functionId"])')
sleep 1
WORKER_RSS=$(rss_kb "$WORKER_PID")
WORKER_ANON=$(anon_kb "$WORKER_PID")

ms() { date +%s%N; }
ours=() theirs=()
curl -fsS -X POST "$API/api/v1/functions/execute/$FID" -H "Authorization: Bearer $TOKEN" -d warm >/dev/null
for i in $(seq 1 "$N"); do
    t0=$(ms)
    out=$(curl -fsS -X POST "$API/api/v1/functions/execute/$FID" -H "Authorization: Bearer $TOKEN" \
        -H 'Accept: text/plain' --data-binary "input-$i")
    t1=$(ms)
    [ "$out" = "input-$i" ] || { echo "wrong result: $out"; exit 1; }
    ours+=($(( (t1 - t0) / 1000000 )))
    t0=$(ms)
    out=$(printf 'input-%s' "$i" | docker run --rm -i --network none "$IMAGE")
    t1=$(ms)
    [ "$out" = "input-$i" ] || { echo "docker run gave: $out"; exit 1; }
    theirs+=($(( (t1 - t0) / 1000000 )))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
M_OURS=$(median "${ours[@]}")
M_THEIRS=$(median "${theirs[@]}")

# throughput: 8 in flight, 40 executions, against 8 parallel docker runs of 40
T=40
t0=$(ms)
seq 1 $T | xargs -P 8 -I{} curl -fsS -o /dev/null -X POST "$API/api/v1/functions/execute/$FID" \
    -H "Authorization: Bearer $TOKEN" --data-binary "t{}"
t1=$(ms)
OURS_TPS=$(awk -v n=$T -v ns=$((t1 - t0)) 'BEGIN {printf "%.2f", n / (ns / 1e9)}')
t0=$(ms)
seq 1 $T | xargs -P 8 -I{} sh -c "echo t{} | docker run --rm -i --network none $IMAGE >/dev/null"
t1=$(ms)
DOCKER_TPS=$(awk -v n=$T -v ns=$((t1 - t0)) 'BEGIN {printf "%.2f", n / (ns / 1e9)}')

# async accept rate: 202s per second (JetStream file storage), 8 connections, 5 s; the
# worker is stopped first so that thousands of queued runs do not compete for the CPU
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
cat > "$TMP/async.lua" <<LUA
wrk.method = "POST"
wrk.body = "x"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
ASYNC=$(wrk_rps "$API/api/v1/functions/execute/$FID?async=true" -t2 -c8 -d5s -s "$TMP/async.lua")

printf 'sync execution median, faas:        %s ms (n=%s)\n' "$M_OURS" "$N"
printf 'docker run --rm -i median:          %s ms\n' "$M_THEIRS"
awk -v a="$M_OURS" -v b="$M_THEIRS" 'BEGIN {printf "ratio faas/docker-run:              %.2f (target <= 1.0)\n", a/b}'
printf 'throughput, 8 in flight, faas:      %s exec/s\n' "$OURS_TPS"
printf 'throughput, 8 parallel docker run:  %s exec/s\n' "$DOCKER_TPS"
printf 'async accept rate:                  %s 202/s (target >= 2000)\n' "$ASYNC"
awk -v r="$WORKER_RSS" -v a="$WORKER_ANON" 'BEGIN {printf "idle faas-worker RSS:               %.1f MB (target <= 10), private %.1f MB, the rest shared library pages\n", r/1024, a/1024}'
