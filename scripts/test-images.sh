#!/usr/bin/env bash
# Builds the tiny test function images from spec/images/<name>/Dockerfile as
# faas-test/<name>:latest (FROM scratch + the static /bin/busybox). Idempotent and fast: each
# image carries a label with a hash of its Dockerfile and of busybox, and is only rebuilt when
# that hash changed or the image is missing. Usage: scripts/test-images.sh [name...]
set -euo pipefail
cd "$(dirname "$0")/.."

busybox=/bin/busybox
linkage=$(ldd "$busybox" 2>&1 || true)
if [ ! -x "$busybox" ] || ! grep -q -E 'not a dynamic|statically' <<<"$linkage"; then
    echo "test-images: '$busybox' is missing or not static (apt-get install busybox-static)" >&2
    exit 1
fi
bb_hash=$(sha256sum "$busybox" | cut -c1-64)

names=("$@")
if [ ${#names[@]} = 0 ]; then
    for d in spec/images/*/; do names+=("$(basename "$d")"); done
fi

ctx=""
trap '[ -n "$ctx" ] && rm -rf "$ctx"' EXIT
for name in "${names[@]}"; do
    df=spec/images/$name/Dockerfile
    [ -f "$df" ] || { echo "test-images: no '$df'" >&2; exit 1; }
    tag=faas-test/$name:latest
    hash=$( (cat "$df"; echo "$bb_hash") | sha256sum | cut -c1-64)
    have=$(docker image inspect -f '{{index .Config.Labels "faas.test.hash"}}' "$tag" 2>/dev/null || true)
    [ "$have" = "$hash" ] && continue
    if [ -z "$ctx" ]; then
        ctx=$(mktemp -d)
        cp "$busybox" "$ctx/busybox"
    fi
    cp "$df" "$ctx/Dockerfile"
    # The legacy builder warns on stderr that it is deprecated: keep only real errors.
    if ! out=$(docker build -q --label "faas.test.hash=$hash" -t "$tag" "$ctx" 2>&1); then
        echo "test-images: cannot build '$tag': $out" >&2
        exit 1
    fi
    echo "test-images: built $tag"
done
