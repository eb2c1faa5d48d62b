#!/usr/bin/env bash
# Runs the C unit test binaries given as arguments; each prints "file: N passed, N failed".
# Ends with one summary line for the C harness.
set -u
passed=0 failed=0
for t in "$@"; do
    "$t" >"$t.out" 2>"$t.log"
    rc=$?
    line=$(tail -n 1 "$t.out")
    p=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' <<<"$line")
    f=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' <<<"$line")
    if [ -z "$p" ]; then p=0; f=1; fi
    if [ "$f" != 0 ] || [ $rc != 0 ]; then
        echo "--- $t"; grep -v '^ok ' "$t.log" | tail -n 40
        [ "$f" = 0 ] && f=1
    fi
    passed=$((passed + p)); failed=$((failed + f))
done
echo "unit: $passed passed, $failed failed"
[ "$failed" = 0 ]
