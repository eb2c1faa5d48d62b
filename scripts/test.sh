#!/usr/bin/env bash
# `make test`: every test. The C unit tests (one summary line), the end-to-end suite under
# pytest against real services on the SQLite store (its own summary line), then the store
# conformance suite and the end-to-end suite again against a MongoDB-compatible server:
# FAAS_TEST_MONGO_URI when set (a real mongod), else FerretDB built and started here.
# FAAS_SKIP_MONGO=1 skips the MongoDB stage. Non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
rc=0
PYTEST="/usr/bin/python3 -m pytest -q -p no:cacheprovider"

./scripts/unit.sh "$@" || rc=1

echo "== end-to-end, sqlite store"
$PYTEST spec/e2e ${PYTEST_ARGS:-} || rc=1

if [ "${FAAS_SKIP_MONGO:-}" != 1 ]; then
    ferret_pid=""
    ferret_dir=""
    if [ -z "${FAAS_TEST_MONGO_URI:-}" ]; then
        port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        ferret_dir=$(mktemp -d /tmp/faas-ferretdb.XXXXXX)
        if ferret_pid=$(./scripts/ferretdb.sh start "$port" "$ferret_dir"); then
            export FAAS_TEST_MONGO_URI="mongodb://127.0.0.1:$port"
        else
            echo "mongodb: cannot start FerretDB"
            echo "mongodb: 0 passed, 1 failed"
            rc=1
        fi
    fi
    if [ -n "${FAAS_TEST_MONGO_URI:-}" ]; then
        echo "== store conformance and end-to-end, mongodb store ($FAAS_TEST_MONGO_URI)"
        FAAS_TEST_STORE=mongodb ./scripts/unit.sh build/spec/test_store build/spec/test_store_mongo || rc=1
        FAAS_TEST_STORE=mongodb $PYTEST spec/e2e ${PYTEST_ARGS:-} || rc=1
    fi
    [ -n "$ferret_pid" ] && ./scripts/ferretdb.sh stop "$ferret_pid"
    [ -n "$ferret_dir" ] && rm -rf "$ferret_dir"
    ./scripts/ferretdb.sh reap
fi
exit $rc
