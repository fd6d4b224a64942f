#!/usr/bin/env bash
# Fan-out benchmark (not a test): three parallel calls per request, answered
# by async_fetch, OpenResty's ngx.location.capture_multi, echo's
# echo_location_async, SSI `include virtual`, and a sequential chain
# (echo_location), against three fast backends and three 500 ms backends.
# Loopback only; bounded: BENCH_ROUNDS (default 3) runs of BENCH_DURATION
# (default 10s) per method with the fast backends, one with the slow ones,
# every run after a 1 s warm-up of its own. The table shows the median run.
#
#   bench/fanout.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8480; the backends use +1),
# BENCH_DURATION, BENCH_ROUNDS, BENCH_CONNECTIONS (default 50),
# BENCH_THREADS (default 2), NGINX_BIN (default /usr/sbin/nginx).
# Prints Markdown tables.
#
# BENCH_INSTRUCTIONS=1 adds a second table, CPU instructions per request
# with the fast backends (needs perf): requests/s on two cores shared with
# wrk move by +-25 % between runs, instructions per request by about 1 %.
# For it the fan-out runs in an nginx of its own with one worker (the
# backends in a second nginx); perf counts that worker's user and kernel
# instructions while `wrk -t1 -c10 -d5s` runs, divided by wrk's requests.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8480}
BACKEND=$((PORT + 1))
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
MODS=/usr/lib/nginx/modules
PREFIX=$(mktemp -d /tmp/bench-fanout.XXXXXX)

for f in "$MODULE_SO" "$MODS/ngx_http_echo_module.so" \
         "$MODS/ndk_http_module.so" "$MODS/ngx_http_lua_module.so"; do
    [ -f "$f" ] || { echo "missing $f (apt-get install libnginx-mod-http-echo libnginx-mod-http-lua)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "missing wrk (apt-get install wrk)" >&2; exit 1; }
if [ "${BENCH_INSTRUCTIONS:-0}" = 1 ]; then
    command -v perf >/dev/null || { echo "missing perf (apt-get install linux-perf)" >&2; exit 1; }
fi

# write_conf DIR WORKERS FRONT BACK: an nginx.conf with the fan-out server
# (FRONT=1) and/or the backend server (BACK=1)
write_conf() {
    local dir=$1 workers=$2 front=$3 back=$4
    mkdir -p "$dir/conf" "$dir/logs"
    {
        cat <<EOF
load_module $MODULE_SO;
load_module $MODS/ngx_http_echo_module.so;
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes $workers;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
EOF
        if [ "$front" = 1 ]; then front_server; fi
        if [ "$back" = 1 ]; then back_server; fi
        echo '}'
    } >"$dir/conf/nginx.conf"
}

front_server() {
    cat <<EOF
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
EOF
}

back_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$BACKEND backlog=4096;
        keepalive_requests 100000;
        location = /fast { echo -n '{"n":"\$arg_n"}'; }
        location = /slow { echo_sleep 0.5; echo -n '{"n":"\$arg_n"}'; }
    }
EOF
}

STARTED=()
start_nginx() {
    "$NGINX_BIN" -p "$1" -c conf/nginx.conf -t -q
    "$NGINX_BIN" -p "$1" -c conf/nginx.conf
    STARTED+=("$1")
}
stop_nginx() {
    local dir
    for dir in "${STARTED[@]}"; do
        "$NGINX_BIN" -p "$dir" -c conf/nginx.conf -s stop 2>/dev/null || true
    done
    STARTED=()
    sleep 0.5
}
trap 'stop_nginx; rm -rf "$PREFIX"' EXIT

method_name() {
    case $1 in
        async) echo 'async_fetch' ;;
        lua) echo 'ngx.location.capture_multi' ;;
        echo) echo 'echo_location_async' ;;
        ssi) echo 'SSI include virtual' ;;
        seq) echo 'sequential (echo_location)' ;;
    esac
}

write_conf "$PREFIX/all" auto 1 1
start_nginx "$PREFIX/all"
sleep 0.5

# sanity: every method answers the three values
for m in async lua echo ssi seq; do
    body=$(curl -s "http://127.0.0.1:$PORT/$m/fast")
    case "$body" in
        *'"a"'*'"b"'*'"c"'*) ;;
        *) echo "$m/fast answered: $body" >&2; exit 1 ;;
    esac
done

# run KIND METHOD ROUND: one measured wrk run, kept in a file
run() {
    # not measured: upstream keepalive connections, pool and heap growth
    wrk -t"$THREADS" -c"$CONNS" -d1s "http://127.0.0.1:$PORT/$2/$1" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        "http://127.0.0.1:$PORT/$2/$1" >"$PREFIX/wrk.$1.$2.$3"
}

# the fast rows interleave their rounds, so that a busy moment of the
# machine does not land on one method only
for round in $(seq "$ROUNDS"); do
    for m in async lua echo ssi seq; do
        run fast $m "$round"
    done
done
for m in async lua echo ssi seq; do
    run slow $m 1
done

printf '| method | backends | requests/s (median) | runs | p50 | p99 |\n'
printf '|---|---|---:|---|---:|---:|\n'
for kind in fast slow; do
    n=$([ $kind = fast ] && echo "$ROUNDS" || echo 1)
    for m in async lua echo ssi seq; do
        runs=$(for f in "$PREFIX"/wrk.$kind.$m.*; do
                   awk -v f="$f" '/^Requests\/sec/ {print $2, f}' "$f"
               done | sort -n)
        median=$(sed -n "$(( (n + 1) / 2 ))p" <<<"$runs" | cut -d' ' -f2)
        all=$(cut -d' ' -f1 <<<"$runs" | paste -sd' ')
        rps=$(awk '/^Requests\/sec/ {print $2}' "$median")
        p50=$(awk '$1 == "50%" {print $2}' "$median")
        p99=$(awk '$1 == "99%" {print $2}' "$median")
        errs=$(cat "$PREFIX"/wrk.$kind.$m.* \
               | awk '/Non-2xx|Socket errors/ {printf "%s ", $0}')
        printf '| %s | 3 × %s | %s | %s | %s | %s |%s\n' "$(method_name $m)" \
            "$([ $kind = fast ] && echo fast || echo 500 ms)" \
            "$rps" "$all" "$p50" "$p99" "${errs:+ $errs}"
    done
done

[ "${BENCH_INSTRUCTIONS:-0}" = 1 ] || exit 0

stop_nginx
write_conf "$PREFIX/front" 1 1 0
write_conf "$PREFIX/back" 1 0 1
start_nginx "$PREFIX/back"
start_nginx "$PREFIX/front"
sleep 0.5
worker=$(pgrep -P "$(cat "$PREFIX/front/logs/nginx.pid")" | head -1)

printf '\n| method (3 × fast) | instructions/request, user | kernel | requests/s (1 worker, -c10) |\n'
printf '|---|---:|---:|---:|\n'
for m in async lua echo ssi seq; do
    wrk -t1 -c10 -d1s "http://127.0.0.1:$PORT/$m/fast" >/dev/null
    perf stat -x, -e instructions:u,instructions:k -p "$worker" \
        -o "$PREFIX/perf.txt" -- \
        wrk -t1 -c10 -d5s "http://127.0.0.1:$PORT/$m/fast" >"$PREFIX/wrk.txt"
    reqs=$(awk '/requests in/ {print $1}' "$PREFIX/wrk.txt")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$PREFIX/wrk.txt")
    user=$(awk -F, '$3 ~ /instructions:u/ {print $1}' "$PREFIX/perf.txt")
    kernel=$(awk -F, '$3 ~ /instructions:k/ {print $1}' "$PREFIX/perf.txt")
    printf '| %s | %d | %d | %s |\n' "$(method_name $m)" \
        $((user / reqs)) $((kernel / reqs)) "$rps"
done
