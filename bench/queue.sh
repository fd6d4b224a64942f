#!/usr/bin/env bash
# Admission-queue benchmarks (a measurement, not a test). Loopback only;
# every phase is bounded in time. Prints a Markdown report on stdout.
#
#   bench/queue.sh [SECONDS_PER_WRK_RUN]      (default 5)
#
# 1. overhead of async_queue with free slots vs the same location without it
# 2. memory per parked request and drain time with 10,000 parked
# 3. wake latency from a slot's release to the parked request's answer
# 4. the same overload through HAProxy (maxconn + timeout queue) and here,
#    over HTTP/1.1 (wrk) and over HTTP/2 (h2load: streams of few connections)
#
#   BENCH_ONLY=wake bench/queue.sh     only 3. (no backend, no HAProxy)
set -euo pipefail
ONLY=${BENCH_ONLY:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-5}
BASE=${BENCH_PORT:-8700}
FRONT=$BASE BACK=$((BASE + 1)) HAP=$((BASE + 2)) H2=$((BASE + 3))
WORK=$(mktemp -d /tmp/async-bench-queue.XXXXXX)
NGINX=${NGINX_BIN:-/usr/sbin/nginx}

for tool in wrk haproxy python3 h2load; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk haproxy nghttp2-client)" >&2; exit 1; }
done
SO=$("$ROOT/build.sh" build 2>/dev/null | tail -1)
ECHO_SO=/usr/lib/nginx/modules/ngx_http_echo_module.so
ulimit -n "$(ulimit -Hn)"
# h2c: `listen ... http2` before nginx 1.25.1, `http2 on;` since
H2_LISTEN=http2 H2_ON=
if printf '%s\n' 1.25.1 "$("$NGINX" -v 2>&1 | sed 's#.*nginx/##')" | sort -V -C; then
    H2_LISTEN= H2_ON='http2 on;'
fi

cleanup() {
    for d in front back; do
        [ -f "$WORK/$d/logs/nginx.pid" ] && kill -QUIT "$(cat "$WORK/$d/logs/nginx.pid")" 2>/dev/null || true
    done
    [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

start_nginx() { # name http-block
    local dir=$WORK/$1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    cat >"$dir/conf/nginx.conf" <<EOF
load_module $SO;
load_module $ECHO_SO;
user root;
worker_processes 2;
worker_rlimit_nofile 19000;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 15000; }
http {
    access_log off;
    client_body_temp_path tmp;
    keepalive_requests 100000;
$2
}
EOF
    "$NGINX" -p "$dir" -c conf/nginx.conf
    sleep 0.5
}

worker_pids() {
    pgrep -P "$(cat "$WORK/$1/logs/nginx.pid")" | paste -sd, -
}

[ "$ONLY" = wake ] || start_nginx back "
    server {
        listen 127.0.0.1:$BACK backlog=4096;
        location /b { echo_sleep 0.05; echo ok; }
    }"

start_nginx front "
    async_queue_zone zone=free:1m active=1000000 length=10;
    async_queue_zone zone=park:2m active=1 length=20000 timeout=300s;
    async_queue_zone zone=wake:1m active=1 length=10 timeout=10s;
    async_queue_zone zone=over:1m active=100 length=1000 timeout=10s;
    limit_req_zone \$scheme zone=lr:1m rate=1r/m;
    upstream back { server 127.0.0.1:$BACK; keepalive 128; }
    server {
        listen 127.0.0.1:$FRONT backlog=16384 reuseport;
        location = /status { async_status; }
        location = /plain { echo ok; }
        location = /queued { async_queue free; echo ok; }
        location /park/hold { async_queue park; echo_sleep 5; echo held; }
        location /park/go { async_queue park; echo ok; }
        location /lr { limit_req zone=lr burst=20000; echo ok; }
        location /wake/hold { async_queue wake; echo_sleep 0.05; echo held; }
        location /wake/go { async_queue wake; echo ok; }
        location /over {
            async_queue over;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
            proxy_pass http://back/b;
        }
    }
    server {
        listen 127.0.0.1:$H2 $H2_LISTEN backlog=16384 reuseport;
        $H2_ON
        http2_max_concurrent_streams 128;
        location /over {
            async_queue over;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
            proxy_pass http://back/b;
        }
    }"

if [ "$ONLY" != wake ]; then
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 9000
    nbthread 2
    pidfile $WORK/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
frontend fe
    bind 127.0.0.1:$HAP
    # the queue-length limit: HAProxy's own queue has none
    http-request return status 503 if { queue(be) ge 1000 }
    default_backend be
backend be
    http-reuse always
    server b1 127.0.0.1:$BACK maxconn 100
EOF
haproxy -D -f "$WORK/haproxy.cfg"
sleep 0.5
fi

wrk_rps() { # path connections -> requests/s
    wrk -t2 -c"$2" -d"${SECS}s" "http://127.0.0.1:$FRONT$1" | awk '/Requests\/sec/ {print $2}'
}

# path -> "requests/s instructions-per-request" (the workers' user and
# kernel instructions counted by perf while wrk runs; 0 without perf)
wrk_measure() {
    local out=$WORK/perf.out ins=0
    if command -v perf >/dev/null; then
        perf stat -x, -e instructions -p "$(worker_pids front)" -o "$out" \
            -- sleep "$((SECS + 1))" &
        local perf_pid=$!
        sleep 0.5
    fi
    wrk -t2 -c50 -d"${SECS}s" "http://127.0.0.1:$FRONT$1" >"$WORK/wrk.out"
    if [ -n "${perf_pid:-}" ]; then
        wait "$perf_pid"
        ins=$(awk -F, '/instructions/ {print $1}' "$out")
    fi
    awk -v ins="${ins:-0}" '/requests in/ {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%s %d\n", r, (n > 0 && ins ~ /^[0-9]+$/) ? ins / n : 0}' "$WORK/wrk.out"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "## Admission queue"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $("$NGINX" -v 2>&1 | cut -d' ' -f3); module $(git -C "$ROOT" rev-parse --short HEAD)."
echo "Command: \`bench/queue.sh $SECS\`."
echo

if [ "$ONLY" != wake ]; then
# 1. overhead, alternating runs; requests/s is noisy on a shared machine,
# instructions per request are not
plain=() queued=() plain_ins=() queued_ins=()
for round in 1 2 3 4 5; do
    read -r rps ins <<<"$(wrk_measure /plain)"
    plain+=("$rps") plain_ins+=("$ins")
    read -r rps ins <<<"$(wrk_measure /queued)"
    queued+=("$rps") queued_ins+=("$ins")
done
p=$(printf '%s\n' "${plain[@]}" | median)
q=$(printf '%s\n' "${queued[@]}" | median)
pi=$(printf '%s\n' "${plain_ins[@]}" | median)
qi=$(printf '%s\n' "${queued_ins[@]}" | median)
echo "### 1. Overhead with free slots (wrk -t2 -c50, ${SECS}s, median of 5 alternating runs)"
echo
echo "Instructions per request are the workers' own (user + kernel, \`perf stat\`);"
echo "requests/s share two cores with wrk and move with whatever else runs."
echo
echo "| location | requests/s | instructions/request |"
echo "|---|---|---|"
echo "| \`echo ok\` | $p | $pi |"
echo "| \`async_queue\` + \`echo ok\` | $q | $qi |"
echo "| ratio | $(awk -v a="$q" -v b="$p" 'BEGIN {printf "%.3f", a / b}') | $(awk -v a="$pi" -v b="$qi" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "-"}') |"
echo

# 2. parking cost
# fresh workers for each measurement: memory a worker once used stays in
# its heap and would be reused by the next phase
fresh_workers() {
    local old
    old=$(worker_pids front)
    kill -HUP "$(cat "$WORK/front/logs/nginx.pid")"
    for _ in $(seq 100); do
        sleep 0.1
        [ "$(worker_pids front)" != "$old" ] && ! pgrep -f 'worker process is shutting down' >/dev/null && break
    done
    sleep 0.5
}
fresh_workers
park=$(python3 "$ROOT/bench/lib/queue_clients.py" park "$FRONT" 10000 "$(worker_pids front)")
fresh_workers
lr=$(python3 "$ROOT/bench/lib/queue_clients.py" park-limit-req "$FRONT" 10000 "$(worker_pids front)")
echo "### 2. Parking 10,000 requests (active=1, the slot held for 5 s)"
echo
echo "For scale, the same 10,000 requests held by nginx's own \`limit_req\`"
echo "delay: what nginx spends on any request it keeps waiting."
echo
python3 - "$park" "$lr" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
l = json.loads(sys.argv[2])
print("| held by | requests | worker RSS before | worker RSS held | per request | drain time | served |")
print("|---|---|---|---|---|---|---|")
print(f"| `async_queue` | {r['parked']} | {r['rss_before_kb']} KB | {r['rss_parked_kb']} KB | "
      f"{r['per_request_bytes'] / 1024:.2f} KB | {r['drain_seconds']:.2f} s | {r['served']} |")
print(f"| `limit_req` delay | {l['held']} | {l['rss_before_kb']} KB | {l['rss_held_kb']} KB | "
      f"{l['per_request_bytes'] / 1024:.2f} KB | - | - |")
EOF
echo

fi

# 3. wake latency
wake=$(python3 "$ROOT/bench/lib/queue_clients.py" wake "$FRONT" 300)
echo "### 3. Release to admission (300 rounds, two workers)"
echo
echo "Time from the slot holder's answer reaching the client to the parked"
echo "request's answer reaching the client: the wake-up plus one response."
echo
python3 - "$wake" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
print("| rounds | p50 | p99 | max |")
print("|---|---|---|---|")
print(f"| {r['rounds']} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['max_ms']:.3f} ms |")
EOF
echo

[ "$ONLY" = wake ] && exit 0

# 4. overload: HAProxy vs this module, same backend
overload() { # port path
    wrk -t2 -c2000 -d"${SECS}s" --latency "http://127.0.0.1:$1$2" >"$WORK/wrk.out" 2>&1 || true
    local total non2xx p99 rps
    total=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
    echo "$((total - ${non2xx:-0})) ${non2xx:-0} $p99 $rps"
}
read -r h_ok h_rej h_p99 h_rps <<<"$(overload "$HAP" /b)"
sleep 1
read -r m_ok m_rej m_p99 m_rps <<<"$(overload "$FRONT" /over)"
sleep 1
# the same 2,000 clients as streams: 100 connections x 20 streams each;
# h2load prints no percentiles: p99 from its per-request log
overload_h2() { # port path
    h2load -t2 -c100 -m20 -D"$SECS" --log-file="$WORK/h2.log" \
        "http://127.0.0.1:$1$2" >"$WORK/h2.out" 2>&1 || true
    local ok rej rps p99
    read -r ok rej <<<"$(awk '/^status codes:/ {print $3, $9}' "$WORK/h2.out")"
    rps=$(awk '/^finished in/ {print $4}' "$WORK/h2.out")
    p99=$(awk '{print $3}' "$WORK/h2.log" | sort -n \
        | awk '{a[NR] = $1} END {if (NR) printf "%.2fms", a[int(NR * 0.99 + 0.5)] / 1000}')
    echo "${ok:-0} ${rej:-0} ${p99:--} ${rps:--}"
}
read -r m2_ok m2_rej m2_p99 m2_rps <<<"$(overload_h2 "$H2" /over)"
echo "### 4. Overload: 2,000 clients, 100 slots, 1,000 queue places, 50 ms backend (wrk -t2 -c2000, ${SECS}s)"
echo
echo "| front | served (2xx) | rejected (503) | requests/s | p99 latency |"
echo "|---|---|---|---|---|"
echo "| HAProxy \`maxconn 100\`, 503 when \`queue(be) ge 1000\`, \`timeout queue 10s\` | $h_ok | $h_rej | $h_rps | $h_p99 |"
echo "| nginx \`async_queue_zone active=100 length=1000 timeout=10s\` | $m_ok | $m_rej | $m_rps | $m_p99 |"
echo "| the same over HTTP/2 (h2load -t2 -c100 -m20: 2,000 streams on 100 connections) | $m2_ok | $m2_rej | $m2_rps | $m2_p99 |"
echo
over=$(curl -s "http://127.0.0.1:$FRONT/status" | python3 -c 'import json,sys; z=json.load(sys.stdin)["queue_zones"]["over"]; print(z["active"], z["waiting"])')
echo "Zone after the run (active, waiting): $over."
