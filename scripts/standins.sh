#!/usr/bin/env bash
# Builds the local stand-ins for the public base images of compose/docker-compose.yml, for
# machines without a registry (CI, tests). They are tagged faas-standin/* and used only through
# compose/docker-compose.test.yml; the compose file itself keeps the public names.
#
#   faas-standin/debian:bookworm-slim  debootstrap --variant=minbase bookworm, docker import
#   faas-standin/nats:2.10-alpine      Debian's nats-server + busybox wget (health check)
#   faas-standin/mongo:7               FerretDB (MongoDB wire protocol, SQLite backend)
#   faas-standin/nginx:1.25            Debian's nginx-light + curl
#
# Cached: each image carries a label with the hash of its inputs and is rebuilt only when
# that changed or the image is missing; the debootstrap tree is kept as a tarball in
# ${FAAS_STANDIN_CACHE:-.deps/standins}. A second run takes a second or two.
# Needs root (debootstrap), apt's mirror, a Docker engine, nats-server, busybox-static and a
# FerretDB binary ($FERRETDB, .deps/bin/ferretdb, or built by scripts/ferretdb.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${FAAS_STANDIN_CACHE:-$PWD/.deps/standins}
SUITE=bookworm
mkdir -p "$CACHE"

die() { echo "standins: $*" >&2; exit 1; }
say() { echo "standins: $*" >&2; }

# The Debian mirror apt itself uses (deb822 .sources or one-line sources.list).
mirror() {
    local m
    m=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true) |
         awk '/^URIs:/ {print $2}' | grep -m1 -E '/debian/?$' || true)
    [ -n "$m" ] || m=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true) |
         awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}')
    echo "${m:-http://deb.debian.org/debian}"
}

label_of() { docker image inspect -f '{{index .Config.Labels "faas.standin.hash"}}' "$1" 2>/dev/null || true; }

# build TAG HASH DIR: docker build of DIR (a Dockerfile + files) unless TAG has HASH.
build() {
    local tag=$1 hash=$2 dir=$3 out
    [ "$(label_of "$tag")" = "$hash" ] && return 0
    say "building $tag"
    # The legacy builder warns on stderr that it is deprecated: keep only real errors.
    out=$(docker build -q --label "faas.standin.hash=$hash" -t "$tag" "$dir" 2>&1) ||
        die "cannot build '$tag': $out"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Debian base ---------------------------------------------------------------------------
BASE=faas-standin/debian:bookworm-slim
tarball=$CACHE/debian-$SUITE-minbase.tar
# The recipe, not the tarball's bytes (debootstrap is not reproducible), names the base.
base_hash=$(echo "debootstrap minbase $SUITE $(mirror) policy-rc.d v1" | sha256sum | cut -c1-64)
if [ "$(label_of "$BASE")" != "$base_hash" ]; then
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || {
            [ "$(id -u)" = 0 ] || die "debootstrap missing (apt-get install debootstrap)"
            apt-get install -y -qq debootstrap >/dev/null
        }
        root=$tmp/rootfs
        say "debootstrap $SUITE from $(mirror) (about a minute)"
        debootstrap --variant=minbase "$SUITE" "$root" "$(mirror)" >"$tmp/debootstrap.log" 2>&1 ||
            { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
        # What the slim images do: no apt caches; no services started by postinst scripts.
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    say "importing $BASE"
    docker import -c "LABEL faas.standin.hash=$base_hash" -c 'CMD ["bash"]' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$BASE" >/dev/null
fi
base_id=$(docker image inspect -f '{{.Id}}' "$BASE")

# --- NATS --------------------------------------------------------------------------------
nats=$(command -v nats-server || true)
[ -x "$nats" ] || die "no nats-server (apt-get install nats-server)"
[ -x /bin/busybox ] || die "no /bin/busybox (apt-get install busybox-static)"
d=$tmp/nats; mkdir -p "$d"
cp "$nats" "$d/nats-server"; cp /bin/busybox "$d/busybox"
cat >"$d/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY nats-server /usr/local/bin/nats-server
COPY busybox /usr/local/bin/busybox
RUN ln -s busybox /usr/local/bin/wget && mkdir -p /data
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
DOCKERFILE
build faas-standin/nats:2.10-alpine \
    "$( (echo "$base_id"; cat "$d/Dockerfile"; sha256sum <"$d/nats-server"; sha256sum <"$d/busybox") | sha256sum | cut -c1-64)" "$d"

# --- MongoDB: FerretDB ----------------------------------------------------------------------
ferret=${FERRETDB:-}
if [ -z "$ferret" ]; then
    for c in .deps/bin/ferretdb /work/cache/bin/ferretdb; do
        if [ -x "$c" ] && "$c" --version >/dev/null 2>&1; then ferret=$c; break; fi
    done
fi
if [ -z "$ferret" ] && [ -x scripts/ferretdb.sh ]; then
    scripts/ferretdb.sh build >&2 && ferret=.deps/bin/ferretdb
fi
[ -n "$ferret" ] && "$ferret" --version >/dev/null 2>&1 ||
    die "no working FerretDB binary (set FERRETDB, or build it with scripts/ferretdb.sh build)"
d=$tmp/mongo; mkdir -p "$d"
cp "$ferret" "$d/ferretdb"
cat >"$d/Dockerfile" <<'DOCKERFILE'
FROM faas-standin/debian:bookworm-slim
COPY ferretdb /usr/local/bin/ferretdb
RUN mkdir -p /data/db
VOLUME /data/db
EXPOSE 27017
CMD ["ferretdb", "--handler=sqlite", "--sqlite-url=file:/data/db/", "--state-dir=/data/db", \
     "--listen-addr=0.0.0.0:27017", "--telemetry=disable", "--debug-addr=127.0.0.1:0"]
DOCKERFILE
build faas-standin/mongo:7 \
    "$( (echo "$base_id"; cat "$d/Dockerfile"; sha256sum <"$d/ferretdb") | sha256sum | cut -c1-64)" "$d"

# --- nginx ---------------------------------------------------------------------------------
d=$tmp/nginx; mkdir -p "$d"
cat >"$d/Dockerfile" <<'DOCKERFILE'
FROM faas-standin/debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light curl \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
DOCKERFILE
build faas-standin/nginx:1.25 \
    "$( (echo "$base_id"; cat "$d/Dockerfile") | sha256sum | cut -c1-64)" "$d"

say "ready: $BASE faas-standin/nats:2.10-alpine faas-standin/mongo:7 faas-standin/nginx:1.25"
