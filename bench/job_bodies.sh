#!/usr/bin/env bash
# Memory of queued job bodies (not a test): one worker, its one job slot
# held by a long job, then N queued POSTs of SIZE MB each; the worker's RSS
# before and after. nginx spools bodies over client_body_buffer_size to
# temp files; a job keeps such a body on disk (a dup()ed descriptor), so
# the RSS must not grow with N x SIZE.
#
#   bench/job_bodies.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8496), BENCH_JOBS (default 30),
# BENCH_BODY_MB (default 8), NGINX_BIN (default /usr/sbin/nginx).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8496}
JOBS=${BENCH_JOBS:-30}
MB=${BENCH_BODY_MB:-8}
ECHO=/usr/lib/nginx/modules/ngx_http_echo_module.so
PREFIX=$(mktemp -d /tmp/bench-job-bodies.XXXXXX)

[ -f "$MODULE_SO" ] || { echo "missing $MODULE_SO" >&2; exit 1; }
command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }
mkdir -p "$PREFIX/conf" "$PREFIX/logs" "$PREFIX/tmp"
# workers may run as another user: they write the temp files
chmod 755 "$PREFIX"
chmod 777 "$PREFIX/tmp"
cat >"$PREFIX/conf/nginx.conf" <<EOF
load_module $MODULE_SO;
load_module $ECHO;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp;
    async_job_zone zone=jobs:4m active=1 length=$((JOBS + 5));
    server {
        listen 127.0.0.1:$PORT;
        client_max_body_size $((MB + 1))m;
        location /hold { async_job jobs /work/hold; }
        location /submit { async_job jobs /work/body; }
        location /work/hold { internal; echo_sleep 60; echo held; }
        location /work/body { internal; echo ok; }
        location /jobs/ { async_job_status jobs; }
    }
}
EOF
cleanup() {
    if [ -f "$PREFIX/logs/nginx.pid" ]; then
        kill "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null || true
    fi
    sleep 0.5
    rm -rf "$PREFIX"
}
trap cleanup EXIT
"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf
sleep 0.5
master=$(cat "$PREFIX/logs/nginx.pid")
worker=$(pgrep -P "$master" | head -1)
rss() { awk '/VmRSS/ { print $2 }' "/proc/$worker/status"; }

head -c $((MB * 1024 * 1024)) /dev/zero >"$PREFIX/body"
curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/hold"
before=$(rss)
for _ in $(seq "$JOBS"); do
    curl -s -o /dev/null -X POST --data-binary @"$PREFIX/body" \
        -H 'Content-Type: application/octet-stream' \
        "http://127.0.0.1:$PORT/submit"
done
after=$(rss)
echo "module:      $MODULE_SO"
echo "queued:      $JOBS jobs with ${MB} MB POST bodies (one slot, held)"
echo "worker RSS:  ${before} kB before, ${after} kB after" \
    "(+$(( (after - before) / 1024 )) MB)"
echo "worker fds:  $(ls "/proc/$worker/fd" | wc -l) open"
