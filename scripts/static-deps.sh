#!/usr/bin/env bash
# Builds the two libraries both binaries link statically, from Debian's own source packages
# (fetched by `apt-get source`, so signature-checked and with Debian's security patches):
#
#   libcurl        HTTP/1.1 over unix sockets only: no TLS, no other protocol, no compression
#   libmicrohttpd  everything but HTTPS
#
# Why: Debian's shared builds are linked against GnuTLS, OpenSSL, Kerberos, LDAP, SSH, RTMP,
# nghttp2, PSL, IDN... and loading those (their constructors, their relocations) cost the worker
# about 5 MB of its idle RSS, for features we never use: the worker speaks plain HTTP to the
# local Docker socket and serves plain HTTP on loopback/backend networks, and TLS belongs to the
# gateway in front of the API.
#
#   scripts/static-deps.sh [OUT]   (default .deps/static: OUT/include, OUT/lib/*.a)
#
# Cached: does nothing when OUT holds a build made by this very script. Needs apt's mirror (the
# deb-src twin of every Debian source apt already has), dpkg-dev and a C toolchain; not root.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.deps/static}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$OUT/.built-by
want=$(sha256sum <"$0" | cut -c1-64)
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$OUT/lib/libcurl.a" ] &&
    [ -f "$OUT/lib/libmicrohttpd.a" ] && exit 0

die() { echo "static-deps: $*" >&2; exit 1; }
say() { echo "static-deps: $*" >&2; }
for tool in apt-get dpkg-source cc make; do
    command -v "$tool" >/dev/null || die "'$tool' missing (apt-get install build-essential dpkg-dev)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/cache/archives/partial"

# The deb-src twin of every Debian source apt has (deb822 .sources and one-line .list files).
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v RS= -v ORS='\n\n' '/URIs:[^\n]*\/debian(-security)?\/?(\n|$)/ {
        sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f" >"$tmp/parts/$(basename "$f")"
done
cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $0 ~ /\/debian(-security)?\/? / {$1 = "deb-src"; print}' >"$tmp/sources.list" || true
grep -qs . "$tmp/parts"/* "$tmp/sources.list" || die "no Debian source in apt's configuration"

apt=(apt-get -q -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts="$tmp/parts"
     -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Debug::NoLocking=1
     -o APT::Sandbox::User="$(id -un)")
say "fetching the Debian sources of curl and libmicrohttpd"
"${apt[@]}" update >"$tmp/apt.log" 2>&1 || { tail -n 20 "$tmp/apt.log" >&2; die "apt-get update failed"; }
(cd "$tmp" && "${apt[@]}" source --only-source curl libmicrohttpd >>apt.log 2>&1) ||
    { tail -n 20 "$tmp/apt.log" >&2; die "apt-get source failed"; }

common=(--prefix="$OUT" --disable-shared --enable-static --with-pic --disable-dependency-tracking)
curl_opts=(--without-ssl --without-zlib --without-brotli --without-zstd --without-libpsl
    --without-libidn2 --without-nghttp2 --without-libssh2 --without-librtmp --without-gssapi
    --disable-ldap --disable-ldaps --disable-rtsp --disable-dict --disable-telnet --disable-tftp
    --disable-pop3 --disable-imap --disable-smtp --disable-gopher --disable-mqtt --disable-smb
    --disable-ftp --disable-file --disable-proxy --disable-cookies --disable-manual
    --disable-ntlm --disable-netrc --disable-alt-svc --disable-hsts --disable-doh --disable-mime
    --disable-progress-meter --disable-threaded-resolver --disable-ipv6 --disable-crypto-auth
    --disable-tls-srp --disable-dateparse --disable-headers-api --disable-bindlocal
    --disable-aws --disable-http-auth --disable-websockets --enable-unix-sockets)
mhd_opts=(--disable-https --disable-curl --disable-doc --disable-examples --disable-tools)

# build NAME DIR LIBDIR INCDIR CONFIGURE-OPTIONS...: configure, then build and install only the
# library and its headers.
build() {
    local name=$1 dir=$2 lib=$3 inc=$4; shift 4
    (cd "$dir" && ./configure "${common[@]}" "$@" && make -j"$(nproc)" -C "$lib" install &&
        make -C "$inc" install) >"$tmp/$name.log" 2>&1 ||
        { tail -n 30 "$tmp/$name.log" >&2; die "building $name failed (log above)"; }
}
rm -rf "$OUT"/include "$OUT"/lib
say "building libcurl and libmicrohttpd into $OUT (about 30 s)"
build libcurl "$(echo "$tmp"/curl-*/)" lib include "${curl_opts[@]}" &
build libmicrohttpd "$(echo "$tmp"/libmicrohttpd-*/)" src/microhttpd src/include "${mhd_opts[@]}" &
wait -n && wait -n
[ -f "$OUT/lib/libcurl.a" ] && [ -f "$OUT/lib/libmicrohttpd.a" ] &&
    [ -f "$OUT/include/curl/curl.h" ] && [ -f "$OUT/include/microhttpd.h" ] ||
    die "the builds left no libraries or headers in $OUT"
rm -rf "$OUT"/lib/*.la "$OUT"/lib/pkgconfig "$OUT"/share "$OUT"/bin
echo "$want" >"$STAMP"
say "done: $(cd "$OUT/lib" && echo *.a)"
