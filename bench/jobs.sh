#!/usr/bin/env bash
# Jobs benchmark (not a test), store=shm against store=redis in one run:
# submits per second, status polls per second, long-poll wake-up latency
# (p50/p99; across two nodes with Redis), worker RSS per parked long-poll,
# and, with Redis, the latency of a queue location while Redis is stalled
# (SIGSTOP). Loopback only; bounded: per store two wrk runs of
# BENCH_DURATION (default 10s), BENCH_WAKES (default 100) sequential
# wake-ups, one BENCH_PARKED-connection park; with Redis two 5 s wrk runs
# more. The redis-server is the suite's own (no persistence, temp dir).
#
#   bench/jobs.sh [MODULE_SO]     (default: ./build.sh's output)
#
# Environment: BENCH_PORT (default 8490; the backend uses +1, node B +2,
# Redis +5), BENCH_DURATION, BENCH_CONNECTIONS (default 50), BENCH_THREADS
# (default 2), BENCH_PARKED (default 10000), BENCH_WAKES (default 100),
# BENCH_STORES (default "shm redis"), NGINX_BIN (default /usr/sbin/nginx).
# Prints the raw runs, then one Markdown table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_SO=${1:-$(cd "$ROOT" && ./build.sh 2>/dev/null | tail -1)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${BENCH_PORT:-8490}
BACKEND=$((PORT + 1))
PORT_B=$((PORT + 2))
REDIS_PORT=$((PORT + 5))
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
PARKED=${BENCH_PARKED:-10000}
WAKES=${BENCH_WAKES:-100}
STORES=${BENCH_STORES:-"shm redis"}
ECHO=/usr/lib/nginx/modules/ngx_http_echo_module.so
PREFIX=$(mktemp -d /tmp/bench-jobs.XXXXXX)
REDIS_PID=

[ -f "$MODULE_SO" ] || { echo "missing $MODULE_SO" >&2; exit 1; }
[ -f "$ECHO" ] || { echo "missing $ECHO (apt-get install libnginx-mod-http-echo)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "missing wrk (apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "missing redis-server (apt-get install redis-server)" >&2; exit 1; }

# write_conf DIR PORT STORE: one node; node A also serves the backend
write_conf() {
    local dir=$1 port=$2 store=$3 store_args="" backend=""
    mkdir -p "$dir/conf" "$dir/logs"
    if [ "$store" = redis ]; then
        store_args="store=redis redis=127.0.0.1:$REDIS_PORT"
    fi
    if [ "$port" = "$PORT" ]; then
        backend="server {
        listen 127.0.0.1:$BACKEND;
        location /fast { echo \"done\"; }
        location /slow { echo_sleep \$arg_s; echo \"done\"; }
    }"
    fi
    cat >"$dir/conf/nginx.conf" <<EOF
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
    async_job_zone zone=jobs:256m ttl=5s active=64 length=100000 $store_args;
    async_job_max_wait 300s;
    async_queue_zone zone=q:1m active=64 length=1000;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    $backend
    server {
        listen 127.0.0.1:$port backlog=4096;
        location /submit { async_job jobs /p/fast; }
        location /long { async_job jobs /p/slow; }
        location /p/ {
            internal;
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /jobs/ { async_job_status jobs; }
        location /queued { async_queue q; echo "ok"; }
    }
}
EOF
}

node_start() { "$NGINX_BIN" -p "$1" -c conf/nginx.conf; }
node_stop() {
    local pidf=$1/logs/nginx.pid
    [ -f "$pidf" ] || return 0
    kill -QUIT "$(cat "$pidf")" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -f "$pidf" ] || break; sleep 0.1; done
}

redis_start() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$PREFIX" --daemonize no >"$PREFIX/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis-server did not start" >&2
    exit 1
}
redis_stop() {
    [ -n "$REDIS_PID" ] || return 0
    kill -CONT "$REDIS_PID" 2>/dev/null || true
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

cleanup() {
    node_stop "$PREFIX/a" || true
    node_stop "$PREFIX/b" || true
    redis_stop
    rm -rf "$PREFIX"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true

# wait_jobs PORT: until the job locations answer (Redis connected)
wait_jobs() {
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/jobs/AAAAAAAAAAAAAAAAAAAAAA")" = 404 ] && return 0
        sleep 0.1
    done
    echo "node on $1 does not answer" >&2
    exit 1
}

cat >"$PREFIX/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "payload"
wrk.headers["Content-Type"] = "text/plain"
EOF

# wrk_field OUT: requests/s, good (2xx) answers/s, p50, p99 from wrk --latency
wrk_numbers() {
    awk -v d="${DURATION%s}" '
        /requests in/ { total = $1 }
        /Non-2xx or 3xx/ { bad = $NF }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        END { printf "%.0f %.0f %s %s\n", rps, (total - bad) / d, p50, p99 }'
}

rss() {
    local total=0 pid kb
    for pid in $(pgrep -P "$(cat "$1/logs/nginx.pid")"); do
        kb=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
        total=$((total + kb))
    done
    echo "$total"
}

declare -A RESULT

run_store() {
    local store=$1 a=$PREFIX/a b=$PREFIX/b status_port=$PORT
    rm -rf "$a" "$b"
    write_conf "$a" "$PORT" "$store"
    [ "$store" = redis ] && { redis_start; write_conf "$b" "$PORT_B" redis; }
    node_start "$a"
    [ "$store" = redis ] && { node_start "$b"; status_port=$PORT_B; }
    wait_jobs "$PORT"
    wait_jobs "$status_port"

    echo "## [$store] submits: POST /submit on A, $CONNS connections, $DURATION"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$PREFIX/post.lua" \
        "http://127.0.0.1:$PORT/submit" | tee "$PREFIX/submit.out"
    read -r _ ok p50 p99 < <(wrk_numbers <"$PREFIX/submit.out")
    RESULT[$store,submit]="$ok 202/s (p50 $p50, p99 $p99)"
    sleep 6 # the accepted jobs run and expire (ttl=5s)

    local id
    id=$(curl -s -X POST "http://127.0.0.1:$PORT/long?s=600" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    echo "## [$store] status polls: GET /jobs/ID on port $status_port, $CONNS connections, $DURATION"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        "http://127.0.0.1:$status_port/jobs/$id" | tee "$PREFIX/status.out"
    read -r rps _ p50 p99 < <(wrk_numbers <"$PREFIX/status.out")
    RESULT[$store,status]="$rps/s (p50 $p50, p99 $p99)"

    echo "## [$store] long-poll wake-up: $WAKES jobs of 0.2 s submitted on A, long-polled on port $status_port"
    RESULT[$store,wake]=$(perl -MIO::Socket::INET -MTime::HiRes=time -e '
        my ($pa, $pb, $n) = @ARGV;
        sub req { my ($port, $m, $p) = @_;
            my $s = IO::Socket::INET->new("127.0.0.1:$port") or die;
            print $s "$m $p HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
            local $/; my $r = <$s>; return $r }
        my @lag;
        for (1 .. $n) {
            my ($id) = req($pa, "POST", "/long?s=0.2") =~ /"id":"([^"]+)"/;
            my $r = req($pb, "GET", "/jobs/$id?wait=10");
            my $t = time;
            my ($fin) = $r =~ /"finished":([\d.]+)/ or next;
            push @lag, ($t - $fin) * 1000;
        }
        @lag = sort { $a <=> $b } @lag;
        printf "p50 %.1f ms, p99 %.1f ms (%d jobs)", $lag[int(@lag * 0.5)],
            $lag[int(@lag * 0.99)], scalar @lag;
    ' "$PORT" "$status_port" "$WAKES")
    echo "${RESULT[$store,wake]}"

    if [ "$store" = redis ]; then
        echo "## [redis] queue location on B: 5 s with Redis up, 5 s with Redis stopped (SIGSTOP)"
        wrk -t"$THREADS" -c"$CONNS" -d5s --latency "http://127.0.0.1:$PORT_B/queued" >"$PREFIX/q1.out"
        kill -STOP "$REDIS_PID"
        wrk -t"$THREADS" -c"$CONNS" -d5s --latency "http://127.0.0.1:$PORT_B/queued" >"$PREFIX/q2.out"
        local t0 code
        t0=$(date +%s%N)
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_B/jobs/$id")
        RESULT[redis,stalled]="status answer $code after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
        kill -CONT "$REDIS_PID"
        read -r rps _ p50 p99 < <(DURATION=5s wrk_numbers <"$PREFIX/q1.out")
        RESULT[redis,queue_up]="$rps/s (p50 $p50, p99 $p99)"
        read -r rps _ p50 p99 < <(DURATION=5s wrk_numbers <"$PREFIX/q2.out")
        RESULT[redis,queue_stopped]="$rps/s (p50 $p50, p99 $p99)"
    fi

    # fresh workers: the runs above grew their memory
    node_stop "$a"
    node_stop "$b"
    node_start "$a"
    [ "$store" = redis ] && node_start "$b"
    wait_jobs "$PORT"
    wait_jobs "$status_port"
    sleep 1
    id=$(curl -s -X POST "http://127.0.0.1:$PORT/long?s=600" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    echo "## [$store] memory: $PARKED parked long-polls on port $status_port"
    local dir=$a
    [ "$store" = redis ] && dir=$b
    local before after client
    before=$(rss "$dir")
    perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
        my ($port, $n, $id, $flag) = @ARGV;
        my @s;
        for (1 .. $n) {
            my $s = IO::Socket::INET->new("127.0.0.1:$port") or die "connect $_: $!";
            print $s "GET /jobs/$id?wait=300 HTTP/1.1\r\nHost: x\r\n\r\n";
            push @s, $s;
        }
        open my $fh, ">", $flag or die; close $fh;
        sleep 30;   # bounded: the measurement happens meanwhile
    ' "$status_port" "$PARKED" "$id" "$PREFIX/parked.$store" &
    client=$!
    for _ in $(seq 1 300); do [ -f "$PREFIX/parked.$store" ] && break; sleep 0.1; done
    sleep 2
    after=$(rss "$dir")
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    RESULT[$store,rss]="$(( (after - before) * 1024 / PARKED )) bytes ($before -> $after kB)"
    echo "${RESULT[$store,rss]}"
    for d in "$a" "$b"; do
        [ -f "$d/logs/error.log" ] || continue
        echo "[$store] $(basename "$d"): $(grep -c '\[error\]\|\[alert\]\|\[crit\]' "$d/logs/error.log" || true) error/alert lines"
    done
    node_stop "$a"
    node_stop "$b"
    redis_stop
}

for s in $STORES; do
    run_store "$s"
done

echo
echo "| measure | shm (one node) | redis (submit on A, read on B) |"
echo "|---|---|---|"
echo "| submits, 50 connections | ${RESULT[shm,submit]:-} | ${RESULT[redis,submit]:-} |"
echo "| status polls | ${RESULT[shm,status]:-} | ${RESULT[redis,status]:-} |"
echo "| long-poll wake-up, from \`finished\` | ${RESULT[shm,wake]:-} | ${RESULT[redis,wake]:-} |"
echo "| worker RSS per parked long-poll | ${RESULT[shm,rss]:-} | ${RESULT[redis,rss]:-} |"
echo "| queue location on B, Redis up | | ${RESULT[redis,queue_up]:-} |"
echo "| queue location on B, Redis stopped | | ${RESULT[redis,queue_stopped]:-} |"
echo "| a status request, Redis stopped | | ${RESULT[redis,stalled]:-} |"
