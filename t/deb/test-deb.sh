#!/usr/bin/env bash
# Installs the .deb of `./build.sh deb` into this machine's own nginx, the
# way an operator would, and takes it out again:
#   - apt installs it; modules-enabled gets its snippet; `nginx -t` on the
#     system configuration passes;
#   - an nginx whose configuration loads modules only through
#     /etc/nginx/modules-enabled answers from a queue location and shows
#     the zone in async_status (its own prefix and port: the system
#     nginx's configuration and port 80 are left alone);
#   - `apt-get purge` removes the .so, the snippet and the link; `nginx -t`
#     still passes and nginx still starts and answers.
# It changes the machine's packages, so it runs only as root with
# ASYNC_TEST_DEB=1 (.ci/run sets it); otherwise it skips.
#
#   ASYNC_TEST_DEB=1 t/deb/test-deb.sh [PATH.deb]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
PORT=${TEST_NGINX_SERVER_PORT:-1984}
PKG=libnginx-mod-http-async
SO=/usr/lib/nginx/modules/ngx_http_async_module.so
LINK=/etc/nginx/modules-enabled/50-mod-http-async.conf

if [ "${ASYNC_TEST_DEB:-}" != 1 ] || [ "$(id -u)" != 0 ]; then
    echo "1..0 # SKIP installs a package into the system nginx: root and ASYNC_TEST_DEB=1 only"
    exit 0
fi

deb=${1:-}
if [ -z "$deb" ]; then
    deb=$(ls "$BUILD_DIR"/deb/${PKG}_*.deb 2>/dev/null | head -1 || true)
fi
[ -f "$deb" ] || { echo "Bail out! no .deb: run ./build.sh deb first"; exit 1; }

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() {
    local title=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$title"; else not_ok "$title"; fi
}

prefix=$(mktemp -d /tmp/async-deb-test.XXXXXX)
# the workers run as nginx's default user, not root
chmod 755 "$prefix"
pid_file=$prefix/logs/nginx.pid
stop_nginx() {
    if [ -f "$pid_file" ]; then
        local pid
        pid=$(cat "$pid_file")
        kill -QUIT "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pid_file"
    fi
}
cleanup() {
    stop_nginx
    # never leave the package behind, whatever failed
    if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
        apt-get purge -y -q "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf "$prefix"
}
trap cleanup EXIT

# An nginx of its own on 127.0.0.1:PORT that loads modules only through
# the system's modules-enabled, as the system nginx.conf does.
write_conf() {
    local with_module=$1
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"
    # load_module modules/... is relative to the prefix: Debian's prefix
    # /usr/share/nginx has this same link
    ln -sfn /usr/lib/nginx/modules "$prefix/modules"
    {
        echo "include /etc/nginx/modules-enabled/*.conf;"
        echo "worker_processes 2;"
        echo "pid $pid_file;"
        echo "error_log $prefix/logs/error.log info;"
        echo "events { worker_connections 256; }"
        echo "http {"
        echo "    access_log off;"
        echo "    client_body_temp_path $prefix/tmp/body;"
        echo "    proxy_temp_path $prefix/tmp/proxy;"
        echo "    fastcgi_temp_path $prefix/tmp/fastcgi;"
        echo "    uwsgi_temp_path $prefix/tmp/uwsgi;"
        echo "    scgi_temp_path $prefix/tmp/scgi;"
        [ "$with_module" = 1 ] && echo "    async_queue_zone zone=deb:1m active=2 length=10;"
        echo "    server {"
        echo "        listen 127.0.0.1:$PORT;"
        echo "        root $prefix/html;"
        [ "$with_module" = 1 ] && echo "        location /q/ { async_queue deb; }"
        [ "$with_module" = 1 ] && echo "        location = /status { async_status; }"
        echo "    }"
        echo "}"
    } >"$prefix/conf/nginx.conf"
    mkdir -p "$prefix/html/q"
    echo "queued page" >"$prefix/html/q/index.html"
    echo "plain page" >"$prefix/html/index.html"
}

start_nginx() {
    stop_nginx
    nginx -p "$prefix" -c "$prefix/conf/nginx.conf" || return 1
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        sleep 0.1
    done
    return 1
}

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
    apt-get purge -y -q "$PKG" >/dev/null 2>&1
fi

echo "# installing $deb"
export DEBIAN_FRONTEND=noninteractive
check "apt-get install ./$(basename "$deb")" apt-get install -y -q "$deb"
check "the module is in nginx's module directory" test -f "$SO"
check "modules-available has the load_module snippet" \
    grep -qx "load_module modules/ngx_http_async_module.so;" \
    /usr/share/nginx/modules-available/mod-http-async.conf
check "modules-enabled links it" test -L "$LINK"
abi=$(dpkg-query -W -f='${Depends}' "$PKG" | grep -o 'nginx-abi-[^ ,]*' || true)
if [ -n "$abi" ] && dpkg-query -W -f='${Provides}' nginx-common nginx 2>/dev/null \
        | grep -q "$abi"; then
    ok "depends on the exact ABI of the installed nginx ($abi)"
else
    not_ok "depends on the exact ABI of the installed nginx (got '$abi')"
fi
check "the docs are installed" test -f /usr/share/doc/$PKG/directives.md.gz
check "nginx -t on the system configuration" nginx -t -q

write_conf 1
if start_nginx; then
    ok "nginx starts with the module from modules-enabled"
    body=$(curl -s "http://127.0.0.1:$PORT/q/" || true)
    if [ "$body" = "queued page" ]; then ok "a queue location answers"; else not_ok "a queue location answers (got '$body')"; fi
    status=$(curl -s "http://127.0.0.1:$PORT/status" || true)
    if printf '%s' "$status" | grep -q '"deb":{"active":0,.*"passed":1'; then
        ok "async_status counts it in zone deb"
    else
        not_ok "async_status counts it in zone deb (got '$status')"
    fi
else
    not_ok "nginx starts with the module from modules-enabled"
    cat "$prefix/logs/error.log" >&2 || true
fi
stop_nginx

echo "# purging $PKG"
check "apt-get purge $PKG" apt-get purge -y -q "$PKG"
check "the module is gone" test ! -e "$SO"
check "the snippet is gone" test ! -e /usr/share/nginx/modules-available/mod-http-async.conf
check "the modules-enabled link is gone" test ! -e "$LINK" -a ! -L "$LINK" -a ! -L "$LINK.removed"
check "nginx -t on the system configuration after the purge" nginx -t -q
write_conf 0
if start_nginx && [ "$(curl -s "http://127.0.0.1:$PORT/")" = "plain page" ]; then
    ok "nginx still starts and answers without the module"
else
    not_ok "nginx still starts and answers without the module"
fi
stop_nginx

echo "1..$n"
[ $failed -eq 0 ] || { echo "# $failed of $n failed"; exit 1; }
