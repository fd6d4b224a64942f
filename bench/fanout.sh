#!/usr/bin/env bash
# Fan-out benchmark (not a test): three parallel calls per request, answered
# by async_fetch, OpenResty's ngx.location.capture_multi, echo's
# echo_location_async, SSI `include virtual`, and a sequential chain
# (echo_location), against three fast backends and three 500 ms backends.
# Loopback only; bounded: 10 runs of BENCH_DURATION (default 10s) each.
#
#   bench/fanout.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8480; the backends use +1),
# BENCH_DURATION, BENCH_CONNECTIONS (default 50), BENCH_THREADS (default 2),
# NGINX_BIN (default /usr/sbin/nginx). Prints a Markdown table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8480}
BACKEND=$((PORT + 1))
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
MODS=/usr/lib/nginx/modules
PREFIX=$(mktemp -d /tmp/bench-fanout.XXXXXX)

for f in "$MODULE_SO" "$MODS/ngx_http_echo_module.so" \
         "$MODS/ndk_http_module.so" "$MODS/ngx_http_lua_module.so"; do
    [ -f "$f" ] || { echo "missing $f (apt-get install libnginx-mod-http-echo libnginx-mod-http-lua)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "missing wrk (apt-get install wrk)" >&2; exit 1; }

mkdir -p "$PREFIX/conf" "$PREFIX/logs"
cat >"$PREFIX/conf/nginx.conf" <<EOF
load_module $MODULE_SO;
load_module $MODS/ngx_http_echo_module.so;
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes auto;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 256; }
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        default_type text/plain;

        location /p/ {
            internal;
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location ~ ^/async/(fast|slow)\$ {
            set \$kind \$1;
            async_fetch a /p/\$kind?n=a;
            async_fetch b /p/\$kind?n=b;
            async_fetch c /p/\$kind?n=c;
        }
        location ~ ^/lua/(fast|slow)\$ {
            content_by_lua_block {
                local u = "/p/" .. ngx.var[1]
                local a, b, c = ngx.location.capture_multi{
                    {u, {args = "n=a"}}, {u, {args = "n=b"}}, {u, {args = "n=c"}} }
                ngx.print(a.body, b.body, c.body)
            }
        }
        location ~ ^/echo/(fast|slow)\$ {
            echo_location_async /p/\$1 n=a;
            echo_location_async /p/\$1 n=b;
            echo_location_async /p/\$1 n=c;
        }
        location ~ ^/ssi/(fast|slow)\$ {
            ssi on;
            ssi_types text/plain;
            set \$kind \$1;
            return 200 '<!--# include virtual="/p/\$kind?n=a" --><!--# include virtual="/p/\$kind?n=b" --><!--# include virtual="/p/\$kind?n=c" -->';
        }
        location ~ ^/seq/(fast|slow)\$ {
            echo_location /p/\$1 n=a;
            echo_location /p/\$1 n=b;
            echo_location /p/\$1 n=c;
        }
    }
    server {
        listen 127.0.0.1:$BACKEND backlog=4096;
        keepalive_requests 100000;
        location = /fast { echo -n '{"n":"\$arg_n"}'; }
        location = /slow { echo_sleep 0.5; echo -n '{"n":"\$arg_n"}'; }
    }
}
EOF

"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf -t -q
"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf
trap '"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf -s stop 2>/dev/null; rm -rf "$PREFIX"' EXIT
sleep 0.5

# sanity: every method answers the three values
for m in async lua echo ssi seq; do
    body=$(curl -s "http://127.0.0.1:$PORT/$m/fast")
    case "$body" in
        *'"a"'*'"b"'*'"c"'*) ;;
        *) echo "$m/fast answered: $body" >&2; exit 1 ;;
    esac
done

printf '| method | backends | requests/s | p50 | p99 |\n'
printf '|---|---|---:|---:|---:|\n'
for kind in fast slow; do
    for m in async lua echo ssi seq; do
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
              "http://127.0.0.1:$PORT/$m/$kind")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
        case $m in
            async) name='async_fetch' ;;
            lua) name='ngx.location.capture_multi' ;;
            echo) name='echo_location_async' ;;
            ssi) name='SSI include virtual' ;;
            seq) name='sequential (echo_location)' ;;
        esac
        printf '| %s | 3 × %s | %s | %s | %s |%s\n' "$name" \
            "$([ $kind = fast ] && echo fast || echo 500 ms)" \
            "$rps" "$p50" "$p99" "${errs:+ $errs}"
    done
done
