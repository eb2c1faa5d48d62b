#!/usr/bin/env bash
# `make test`: the C unit tests (one summary line), then the end-to-end suite under pytest
# against real services (its own summary line). Non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
rc=0
./scripts/unit.sh "$@" || rc=1
if ls spec/e2e/test_*.py >/dev/null 2>&1; then
    /usr/bin/python3 -m pytest -q -p no:cacheprovider spec/e2e ${PYTEST_ARGS:-} || rc=1
fi
exit $rc
