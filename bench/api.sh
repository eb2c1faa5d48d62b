#!/usr/bin/env bash
# GET /api/v1/users/me (JWT check + store lookup) under wrk against nginx serving the same
# bytes, idle RSS, and /me p99 with and without a concurrent login storm.
# Usage: bench/api.sh [sqlite|mongodb]   (mongodb needs FAAS_TEST_MONGO_URI)
source "$(dirname "$0")/lib.sh"
DRIVER=${1:-sqlite}
DURATION=${BENCH_DURATION:-10s}
if [ "$DRIVER" = mongodb ]; then
    start_stack 0 "{ driver = \"mongodb\", uri = \"${FAAS_TEST_MONGO_URI:?}\", database = \"bench$RANDOM\" }"
else
    start_stack 0
fi
new_user
sleep 1
IDLE_RSS=$(rss_kb "$API_PID")
IDLE_ANON=$(anon_kb "$API_PID")

# nginx serving the same response body as a static file
mkdir -p "$TMP/www/api/v1/users" "$TMP/nginx"
curl -fsS "$API/api/v1/users/me" -H "Authorization: Bearer $TOKEN" > "$TMP/www/api/v1/users/me"
NGINX_PORT=$(free_port)
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    server { listen 127.0.0.1:$NGINX_PORT; root $TMP/www; }
}
CONF
nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx"
PIDS+=($(cat "$TMP/nginx/nginx.pid"))

AUTH="Authorization: Bearer $TOKEN"
wrk -t2 -c4 -d1s -H "$AUTH" "$API/api/v1/users/me" >/dev/null   # warm-up
OURS=$(wrk_rps "$API/api/v1/users/me" -t2 -c4 -d"$DURATION" -H "$AUTH")
NGINX=$(wrk_rps "http://127.0.0.1:$NGINX_PORT/api/v1/users/me" -t2 -c4 -d"$DURATION" -H "$AUTH")
kill "$(cat "$TMP/nginx/nginx.pid")" 2>/dev/null || true

# /me p99 alone, then under a login storm (Argon2id on the offload pool)
P99_ALONE=$(wrk_p99 "$API/api/v1/users/me" -t1 -c2 -d5s -H "$AUTH")
cat > "$TMP/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"email":"$EMAIL","password":"bench password"}'
wrk.headers["Content-Type"] = "application/json"
LUA
wrk -t2 -c8 -d7s -s "$TMP/login.lua" "$API/api/v1/users/login" > "$TMP/storm.txt" &
STORM=$!
sleep 1
P99_STORM=$(wrk_p99 "$API/api/v1/users/me" -t1 -c2 -d5s -H "$AUTH")
wait $STORM
LOGINS=$(awk '/Requests\/sec/ {print $2}' "$TMP/storm.txt")

printf 'store driver:                 %s\n' "$DRIVER"
printf 'GET /users/me faas-api:       %s req/s\n' "$OURS"
printf 'same bytes from nginx:        %s req/s\n' "$NGINX"
awk -v a="$OURS" -v b="$NGINX" 'BEGIN {printf "ratio faas-api/nginx:          %.2f (target >= 0.5)\n", a/b}'
awk -v r="$IDLE_RSS" -v a="$IDLE_ANON" 'BEGIN {printf "idle faas-api RSS:            %.1f MB (target <= 15), private %.1f MB\n", r/1024, a/1024}'
printf '/me p99 alone:                %s ms\n' "$P99_ALONE"
printf '/me p99 under login storm:    %s ms (%s logins/s)\n' "$P99_STORM" "$LOGINS"
awk -v a="$P99_STORM" -v b="$P99_ALONE" 'BEGIN {printf "p99 storm/alone:              %.2f (target <= 2)\n", a/b}'
