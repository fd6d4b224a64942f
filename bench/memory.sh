#!/usr/bin/env bash
# Worker memory benchmark (not a test): the resident size of a single
# nginx worker before and after one fan-out call that returns a 40 MB JSON
# document, which the json aggregation validates (simdjson) to inline it.
# What stays after the answer is what the worker keeps for its life.
#
#   bench/memory.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8490), BENCH_JSON_MB (default 40),
# NGINX_BIN (default /usr/sbin/nginx). Prints a Markdown table row:
# VmRSS before, VmRSS after, VmHWM (the peak) after, in MB.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=$(realpath "${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}")
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8490}
MB=${BENCH_JSON_MB:-40}
PREFIX=$(mktemp -d /tmp/bench-memory.XXXXXX)

[ -f "$MODULE_SO" ] || { echo "missing $MODULE_SO" >&2; exit 1; }
command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }

mkdir -p "$PREFIX/conf" "$PREFIX/logs" "$PREFIX/html"
chmod 755 "$PREFIX" "$PREFIX/html" # workers may run as another user
# an array of small objects, as an API returns them
python3 - "$PREFIX/html/big.json" "$MB" <<'PY'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
item = '{"id":%d,"name":"item %d","tags":["alpha","beta"],"price":12.5,"ok":true}'
with open(path, 'w') as f:
    f.write('[')
    n, i = 1, 0
    while n < mb * 1024 * 1024:
        s = (',' if i else '') + item % (i, i)
        f.write(s)
        n += len(s)
        i += 1
    f.write(']')
PY

cat >"$PREFIX/conf/nginx.conf" <<CONF
load_module $MODULE_SO;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$PORT;
        root html;
        location = /big.json { default_type application/json; }
        location = /fan {
            async_fetch_max_size 64m;
            async_fetch big /big.json;
        }
    }
}
CONF

cleanup() {
    [ -f "$PREFIX/logs/nginx.pid" ] && kill "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null
    sleep 0.5
    [ -n "${BENCH_KEEP:-}" ] && grep -v "\[notice\]" "$PREFIX/logs/error.log" >&2; rm -rf "$PREFIX"
}
trap cleanup EXIT

"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/big.json" -r 0-0 && break
    sleep 0.1
done
master=$(cat "$PREFIX/logs/nginx.pid")
worker=$(pgrep -P "$master" | head -1)
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$worker/status"; }
mb() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }

before=$(kb VmRSS)
out=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$PORT/fan")
sleep 0.5 # the request's pool is freed once the answer is out
after=$(kb VmRSS)
peak=$(kb VmHWM)
echo "answer: $out (status, bytes)" >&2
echo "| ${MB} MB JSON, one call | $(mb "$before") | $(mb "$after") | $(mb "$peak") |"
