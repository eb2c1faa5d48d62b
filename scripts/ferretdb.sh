#!/usr/bin/env bash
# FerretDB 1.24 (MongoDB wire protocol over SQLite, pure Go): the MongoDB-compatible server the
# tests of the mongodb store driver run against.
#
#   scripts/ferretdb.sh build            installs ${FAAS_DEPS:-$PWD/.deps}/bin/ferretdb if missing
#   scripts/ferretdb.sh start PORT DIR   starts it on 127.0.0.1:PORT with its data in DIR, waits
#                                        until it accepts connections, prints its pid
#   scripts/ferretdb.sh stop PID         stops it (TERM, then KILL after 5 s)
#   scripts/ferretdb.sh reap             stops every FerretDB whose data dir is gone (a test
#                                        that removed its dir but lost track of the process)
#
# Why not a plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: the module
# zip lacks the generated build/version/version.txt, and such a binary panics at start
# ("Invalid build/version/version.txt file content"). So we download the same module through
# the Go module proxy, write version.txt into a copy and `go build` that copy.
set -euo pipefail

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
DEPS=${FAAS_DEPS:-$PWD/.deps}
BIN=$DEPS/bin/ferretdb

die() { echo "ferretdb.sh: $*" >&2; exit 1; }

works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

build() {
    works "$BIN" && return 0
    mkdir -p "$DEPS/bin"
    export PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null || die "cannot build ferretdb: no 'go' on PATH or in /usr/local/go/bin"
    echo "ferretdb.sh: building ferretdb $VERSION (takes a few minutes the first time)" >&2
    local dir tmp
    # go mod download works outside a module: it only fills the module cache
    dir=$(cd / && go mod download -json "$MODULE@$VERSION" |
          sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    [ -n "$dir" ] && [ -d "$dir" ] || die "cannot download '$MODULE@$VERSION'"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    cp -r "$dir" "$tmp/src"
    chmod -R u+w "$tmp/src"
    echo "$VERSION" >"$tmp/src/build/version/version.txt"
    (cd "$tmp/src" && go build -buildvcs=false -trimpath -o "$BIN.tmp" ./cmd/ferretdb) ||
        die "cannot build ferretdb $VERSION"
    mv "$BIN.tmp" "$BIN"
    works "$BIN" || die "built '$BIN' does not run"
}

# Succeeds once something accepts TCP connections on 127.0.0.1:$1.
accepting() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local port=$1 dir=$2 pid i
    [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port'"
    build
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # Own session and no inherited stdout, so a caller reading our output (popen) sees EOF.
    setsid "$BIN" --handler=sqlite --sqlite-url="file:$dir/" --state-dir="$dir" \
        --listen-addr="127.0.0.1:$port" --debug-addr=127.0.0.1:0 --telemetry=disable \
        --log-level=WARN </dev/null >>"$dir/ferretdb.log" 2>&1 &
    pid=$!
    for i in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            tail -n 20 "$dir/ferretdb.log" >&2
            die "ferretdb exited at start (port $port)"
        fi
        if accepting "$port"; then
            echo "$pid"
            return 0
        fi
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    die "ferretdb did not accept connections on 127.0.0.1:$port within 10 s"
}

stop() {
    local pid=$1 i
    [[ $pid =~ ^[0-9]+$ ]] || die "bad pid '$pid'"
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
}

reap() {
    local pid dir
    for pid in $(pgrep -x ferretdb || true); do
        dir=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^--state-dir=//p')
        [ -n "$dir" ] && [ ! -d "$dir" ] && stop "$pid"
    done
    return 0
}

case "${1:-}" in
build) build; echo "$BIN" ;;
start) [ $# = 3 ] || die "usage: $0 start PORT DIR"; start "$2" "$3" ;;
stop) [ $# = 2 ] || die "usage: $0 stop PID"; stop "$2" ;;
reap) reap ;;
*) die "usage: $0 build | start PORT DIR | stop PID | reap" ;;
esac
