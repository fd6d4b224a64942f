#!/usr/bin/env bash
# Jobs benchmark (not a test): accept rate and latency of the 202 under
# load, status polls per second, long-poll wake-up latency, and memory per
# parked long-poll with 10,000 parked. Loopback only; bounded: three wrk
# runs of BENCH_DURATION (default 10s) and one 10,000-connection park.
#
#   bench/jobs.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8490; the backend uses +1),
# BENCH_DURATION, BENCH_CONNECTIONS (default 50), BENCH_THREADS (default 2),
# BENCH_PARKED (default 10000), NGINX_BIN (default /usr/sbin/nginx).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8490}
BACKEND=$((PORT + 1))
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
PARKED=${BENCH_PARKED:-10000}
ECHO=/usr/lib/nginx/modules/ngx_http_echo_module.so
PREFIX=$(mktemp -d /tmp/bench-jobs.XXXXXX)

[ -f "$MODULE_SO" ] || { echo "missing $MODULE_SO" >&2; exit 1; }
[ -f "$ECHO" ] || { echo "missing $ECHO (apt-get install libnginx-mod-http-echo)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "missing wrk (apt-get install wrk)" >&2; exit 1; }

mkdir -p "$PREFIX/conf" "$PREFIX/logs"
cat >"$PREFIX/conf/nginx.conf" <<EOF
load_module $MODULE_SO;
load_module $ECHO;
worker_processes 2;
worker_rlimit_nofile 20000;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 15000; }
http {
    access_log off;
    # ttl short enough that the accept run never fills the table
    async_job_zone zone=jobs:256m ttl=5s active=64 length=100000;
    async_job_max_wait 300s;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    server {
        listen 127.0.0.1:$BACKEND;
        location /fast { echo "done"; }
        location /slow { echo_sleep \$arg_s; echo "done"; }
    }
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location /submit { async_job jobs /p/fast; }
        location /long { async_job jobs /p/slow; }
        location /p/ {
            internal;
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /jobs/ { async_job_status jobs; }
    }
}
EOF

cleanup() {
    [ -f "$PREFIX/logs/nginx.pid" ] && kill "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null
    sleep 0.5
    rm -rf "$PREFIX"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true
"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf
sleep 0.5

cat >"$PREFIX/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "payload"
wrk.headers["Content-Type"] = "text/plain"
EOF

echo "## accept: POST /submit (job: proxied echo), $CONNS connections, $DURATION"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$PREFIX/post.lua" \
    "http://127.0.0.1:$PORT/submit"

ID=$(curl -s -X POST "http://127.0.0.1:$PORT/long?s=600" | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "## status polls: GET /jobs/ID, $CONNS connections, $DURATION"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$PORT/jobs/$ID"

echo "## long-poll wake-up: 20 one-second jobs, ms from 'finished' to the answer"
perl -MIO::Socket::INET -MTime::HiRes=time -e '
    my ($port) = @ARGV;
    sub req { my ($m, $p) = @_;
        my $s = IO::Socket::INET->new("127.0.0.1:$port") or die;
        print $s "$m $p HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        local $/; my $r = <$s>; return $r }
    my @lag;
    for (1 .. 20) {
        my ($id) = req("POST", "/long?s=1") =~ /"id":"([^"]+)"/;
        my $r = req("GET", "/jobs/$id?wait=10");
        my $t = time;
        my ($fin) = $r =~ /"finished":([\d.]+)/;
        push @lag, ($t - $fin) * 1000;
    }
    @lag = sort { $a <=> $b } @lag;
    printf "median %.1f ms, max %.1f ms (finished has ms resolution)\n",
        $lag[@lag / 2], $lag[-1];
' "$PORT"

echo "## memory: $PARKED parked long-polls on one running job (fresh workers)"
grep '\[error\]\|\[alert\]' "$PREFIX/logs/error.log" | head -3 || true
kill -QUIT "$(cat "$PREFIX/logs/nginx.pid")"
for _ in $(seq 1 100); do [ -f "$PREFIX/logs/nginx.pid" ] || break; sleep 0.1; done
"$NGINX_BIN" -p "$PREFIX" -c conf/nginx.conf
sleep 1
ID=$(curl -s -X POST "http://127.0.0.1:$PORT/long?s=600" | sed 's/.*"id":"\([^"]*\)".*/\1/')
rss() {
    local total=0 pid kb
    for pid in $(pgrep -P "$(cat "$PREFIX/logs/nginx.pid")"); do
        kb=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
        total=$((total + kb))
    done
    echo "$total"
}
before=$(rss)
perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
    my ($port, $n, $id, $prefix) = @ARGV;
    my @s;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new("127.0.0.1:$port") or die "connect $_: $!";
        print $s "GET /jobs/$id?wait=300 HTTP/1.1\r\nHost: x\r\n\r\n";
        push @s, $s;
    }
    open my $fh, ">", "$prefix/parked" or die; close $fh;
    sleep 30;   # bounded: the measurement happens meanwhile
' "$PORT" "$PARKED" "$ID" "$PREFIX" &
client=$!
for _ in $(seq 1 300); do [ -f "$PREFIX/parked" ] && break; sleep 0.1; done
sleep 2
after=$(rss)
kill "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
echo "worker RSS before: ${before} kB, with $PARKED parked: ${after} kB"
echo "per parked long-poll: $(( (after - before) * 1024 / PARKED )) bytes"
grep -c '\[error\]\|\[alert\]' "$PREFIX/logs/error.log" | sed 's/^/error and alert lines: /' || true
