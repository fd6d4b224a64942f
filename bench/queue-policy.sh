#!/usr/bin/env bash
# Priority classes, the adaptive limit and CoDel of async_queue, measured
# against the fixed-limit FIFO queue and HAProxy in the same runs (a
# measurement, not a test). Loopback only; every phase is bounded in time.
# Prints a Markdown report on stdout and writes the limit-over-time plot.
#
#   bench/queue-policy.sh [SECONDS] [PNG]   (default 15, docs/img/queue-adaptive-limit.png)
#
# The backend (bench/lib/queue_policy.py backend) has C = 20 workers of
# 100 ms each: 200 requests/s; beyond 20 in flight requests wait inside
# it, so its service time grows with its concurrency.
# 1. priority at 2x overload (400/s open loop, half class 7, half class 0):
#    fixed FIFO, priority=, HAProxy set-priority-class
# 2. active=auto from a cold start vs hand-picked active=, closed loop of
#    100 users; then C changes 20 -> 5 -> 20 and the limit is plotted
# 3. CoDel at 2x overload: fifo, codel, HAProxy
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-15}
PNG=${2:-$ROOT/docs/img/queue-adaptive-limit.png}
BASE=${BENCH_PORT:-8720}
FRONT=$BASE BACK=$((BASE + 1)) HAP=$((BASE + 2))
WORK=$(mktemp -d /tmp/async-bench-policy.XXXXXX)
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
PY="python3 $ROOT/bench/lib/queue_policy.py"
C=20 SERVICE_MS=100 RATE=400 WARM=${BENCH_WARMUP:-5}

for tool in haproxy python3 gnuplot; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install haproxy gnuplot-nox)" >&2; exit 1; }
done
SO=$("$ROOT/build.sh" build 2>/dev/null | tail -1)
ulimit -n "$(ulimit -Hn)"

cleanup() {
    [ -f "$WORK/front/logs/nginx.pid" ] && kill -QUIT "$(cat "$WORK/front/logs/nginx.pid")" 2>/dev/null || true
    [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true
    [ -n "${BACKEND_PID:-}" ] && kill "$BACKEND_PID" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

start_backend() {
    [ -n "${BACKEND_PID:-}" ] && kill "$BACKEND_PID" 2>/dev/null && sleep 0.3
    $PY backend "$BACK" "$C" "$SERVICE_MS" &
    BACKEND_PID=$!
    sleep 0.5
}

proxy='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://back;'
mkdir -p "$WORK/front/conf" "$WORK/front/logs" "$WORK/front/tmp"
cat >"$WORK/front/conf/nginx.conf" <<EOF
load_module $SO;
worker_processes 2;
worker_rlimit_nofile 19000;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 15000; }
http {
    access_log off;
    client_body_temp_path tmp;
    keepalive_requests 1000000;
    upstream back { server 127.0.0.1:$BACK; keepalive 512; }
    async_queue_zone zone=fifo:4m active=$C length=400 timeout=10s;
    async_queue_zone zone=prio:4m active=$C length=400 timeout=10s;
    async_queue_zone zone=fifoc:4m active=$C length=1000 timeout=10s;
    async_queue_zone zone=codel:4m active=$C length=1000 timeout=10s discipline=codel;
    async_queue_zone zone=auto:4m active=auto length=1000 timeout=30s;
    async_queue_zone zone=auto2:4m active=auto length=1000 timeout=30s;
    async_queue_zone zone=fixed10:4m active=10 length=1000 timeout=30s;
    async_queue_zone zone=fixed20:4m active=20 length=1000 timeout=30s;
    async_queue_zone zone=fixed30:4m active=30 length=1000 timeout=30s;
    async_queue_zone zone=fixed40:4m active=40 length=1000 timeout=30s;
    async_queue_zone zone=fixed100:4m active=100 length=1000 timeout=30s;
    server {
        listen 127.0.0.1:$FRONT backlog=4096 reuseport;
        location = /status { async_status; }
        location /fifo/ { async_queue fifo; $proxy }
        location /prio/ { async_queue prio priority=\$http_x_prio; $proxy }
        location /fifoc/ { async_queue fifoc; $proxy }
        location /codel/ { async_queue codel; $proxy }
        location /auto/ { async_queue auto; $proxy }
        location /auto2/ { async_queue auto2; $proxy }
        location /fixed10/ { async_queue fixed10; $proxy }
        location /fixed20/ { async_queue fixed20; $proxy }
        location /fixed30/ { async_queue fixed30; $proxy }
        location /fixed40/ { async_queue fixed40; $proxy }
        location /fixed100/ { async_queue fixed100; $proxy }
    }
}
EOF

cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 9000
    nbthread 2
    pidfile $WORK/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
frontend fe
    bind 127.0.0.1:$HAP
    use_backend be_prio if { path_beg /prio/ }
    default_backend be_fifoc
backend be_prio
    # lower is more important in HAProxy
    http-request set-priority-class int(-7) if { req.hdr(x-prio) -m str 7 }
    # the queue-length limit: HAProxy's own queue has none
    http-request return status 503 if { queue(be_prio) ge 400 }
    http-reuse always
    server b1 127.0.0.1:$BACK maxconn $C
backend be_fifoc
    http-request return status 503 if { queue(be_fifoc) ge 1000 }
    http-reuse always
    server b1 127.0.0.1:$BACK maxconn $C
EOF

start_backend
"$NGINX" -p "$WORK/front" -c conf/nginx.conf
haproxy -D -f "$WORK/haproxy.cfg"
sleep 0.5

status_json() { curl -s "http://127.0.0.1:$FRONT/status"; }

echo "## Admission policies: priority, adaptive limit, CoDel"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $("$NGINX" -v 2>&1 | cut -d' ' -f3); $(haproxy -v | head -1 | cut -d' ' -f1-3); module $(git -C "$ROOT" rev-parse --short HEAD)."
echo "Command: \`bench/queue-policy.sh $SECS\`. Backend: C = $C workers of $SERVICE_MS ms"
echo "(bench/lib/queue_policy.py), $((C * 1000 / SERVICE_MS)) requests/s at best; the clients are"
echo "the same Python script for every front, keep-alive connections."
echo

# 1. priority
prio=()
for front in "$FRONT /fifo/" "$FRONT /prio/" "$HAP /prio/"; do
    set -- $front
    start_backend
    prio+=("$($PY open "$1" "$2" "$RATE" "$SECS" "X-Prio=7" "X-Prio=0")")
done
st1=$(status_json)

# 2. adaptive limit
adaptive=()
for loc in fixed10 fixed20 fixed30 fixed40 fixed100; do
    start_backend
    adaptive+=("$loc $($PY closed "$FRONT" "/$loc/" 100 "$SECS" "$WARM")")
done
start_backend
auto=$($PY closed "$FRONT" /auto/ 100 "$SECS" "$WARM" "http://127.0.0.1:$FRONT/status#auto")
start_backend
third=$((SECS * 2 / 3 > 10 ? SECS * 2 / 3 : 10))
change=$($PY closed "$FRONT" /auto2/ 100 "$((third * 3))" 0 "http://127.0.0.1:$FRONT/status#auto2" \
    "$third@http://127.0.0.1:$BACK/set?c=5" "$((third * 2))@http://127.0.0.1:$BACK/set?c=$C")
st2=$(status_json)

# 3. CoDel
codel=()
for front in "$FRONT /fifoc/" "$FRONT /codel/" "$HAP /fifoc/"; do
    set -- $front
    start_backend
    codel+=("$($PY open "$1" "$2" "$RATE" "$SECS")")
done
st3=$(status_json)

mkdir -p "$(dirname "$PNG")"
WARM=$WARM python3 - "$WORK" "$PNG" "$C" "$third" "$st1" "$st2" "$st3" "$auto" "$change" \
    "${prio[@]}" "${codel[@]}" "${adaptive[@]}" <<'EOF'
import json, os, subprocess, sys
work, png, C, third = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
st1, st2, st3 = (json.loads(x)["queue_zones"] for x in sys.argv[5:8])
auto, change = json.loads(sys.argv[8]), json.loads(sys.argv[9])
prio = [json.loads(x) for x in sys.argv[10:13]]
codel = [json.loads(x) for x in sys.argv[13:16]]
adaptive = [(x.split(" ", 1)[0], json.loads(x.split(" ", 1)[1])) for x in sys.argv[16:]]

def r(a, b):
    return "-" if not a or not b else f"{a / b:.3f}"

hi, lo = '{"X-Prio": "7"}', '{"X-Prio": "0"}'
print("### Priority at 2x overload (400 requests/s, half class 7, half class 0; queue 400, timeout 10 s)")
print()
print("Latency is the client's (wait + 100 ms of service); p99 of the requests served.")
print()
print("| front | class 7 served/s | class 7 p99 ms | class 7 rejected | class 0 served/s | class 0 p99 ms | class 0 rejected | goodput/s | vs FIFO | class 7 p99 / class 0 p99 |")
print("|---|---|---|---|---|---|---|---|---|---|")
fifo_good = prio[0][hi]["goodput"] + prio[0][lo]["goodput"]
for name, res in zip(["nginx fixed FIFO", "nginx `priority=`", "HAProxy `set-priority-class`"], prio):
    h, l = res[hi], res[lo]
    good = h["goodput"] + l["goodput"]
    rej = lambda c: c["count"] - c["status"].get("200", 0)
    print(f"| {name} | {h['goodput']} | {h['p99_ms']} | {rej(h)} | {l['goodput']} | {l['p99_ms']} | {rej(l)} | {good:.1f} | {r(good, fifo_good)} | {r(h['p99_ms'], l['p99_ms'])} |")
p = st1["prio"]["priorities"]
print()
print(f"nginx `priority=` zone counters: class 7 passed {p.get('7', {}).get('passed', 0)}, queued {p.get('7', {}).get('queued', 0)}, "
      f"rejected {p.get('7', {}).get('rejected', 0)}, timed out {p.get('7', {}).get('timed_out', 0)}; "
      f"class 0 evicted {p.get('0', {}).get('evicted', 0)}, rejected {p.get('0', {}).get('rejected', 0)}, "
      f"timed out {p.get('0', {}).get('timed_out', 0)}.")
print()

warm = float(os.environ.get("WARM", "5"))
print(f"### Adaptive limit (closed loop, 100 users, C = {C})")
print()
print(f"Whole run (from a cold start for `auto`), and without its first {warm:g} s.")
print()
print("| front | requests/s | p50 ms | p99 ms | settled: requests/s | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|")
best = max(adaptive, key=lambda a: a[1]["settled"]["goodput"])
for name, res in adaptive + [("fixedauto", auto)]:
    s = res["settled"]
    label = "`active=auto` (cold start)" if name == "fixedauto" else f"`active={name[5:]}`"
    print(f"| {label} | {res['goodput']} | {res['p50_ms']} | {res['p99_ms']} | {s['goodput']} | {s['p50_ms']} | {s['p99_ms']} |")
print()
samples = auto["samples"]
settle = next((t for i, (t, l) in enumerate(samples)
               if all(C <= x <= 2 * C for _, x in samples[i:])), None)
lims = [l for _, l in samples]
bs, a_s = best[1]["settled"], auto["settled"]
print(f"- Best hand-picked (settled requests/s): `active={best[0][5:]}`. `active=auto` settled: throughput "
      f"{r(a_s['goodput'], bs['goodput'])} of it, p99 {r(a_s['p99_ms'], bs['p99_ms'])}x; "
      f"whole run with the cold start: {r(auto['goodput'], best[1]['goodput'])}, p99 {r(auto['p99_ms'], best[1]['p99_ms'])}x.")
print(f"- Cold start: the limit went {lims[0] if lims else '-'} -> {lims[-1] if lims else '-'}"
      f" (range {min(lims) if lims else '-'}..{max(lims) if lims else '-'} over the run); "
      f"inside [C, 2C] = [{C}, {2 * C}] for good from {settle} s." if settle is not None else
      f"- Cold start: the limit went {lims[0] if lims else '-'} -> {lims[-1] if lims else '-'}; it did not stay inside [{C}, {2 * C}].")
z = st2["auto2"]["adaptive_limit"]
print(f"- C changed {C} -> 5 at {third} s and back to {C} at {2 * third} s: ", end="")
follow = []
for at, c in ((third, 5), (2 * third, C)):
    t_in = next((t for t, l in change["samples"] if t >= at and c <= l <= 2 * c), None)
    follow.append(f"{c}: {'%.1f s' % (t_in - at) if t_in is not None else 'not within the phase'}")
print("time until the limit was inside [C, 2C] for the new C: " + ", ".join(follow) + ".")
print(f"  Zone after the run: limit {z['limit']}, sampled {z['sampled_ms']} ms, minimum {z['min_ms']} ms, "
      f"{z['adjustments']} adjustments.")
print()
print(f"![limit over time](img/{png.rsplit('/', 1)[1]})")
print()
with open(f"{work}/limit.dat", "w") as f:
    for t, l in change["samples"]:
        c = C if t < third or t >= 2 * third else 5
        f.write(f"{t} {l} {c} {2 * c}\n")
subprocess.run(["gnuplot", "-e", f"""
set terminal pngcairo size 800,400 noenhanced;
set output '{png}';
set title 'active=auto: limit while the backend capacity C changes {C} -> 5 -> {C}';
set xlabel 'seconds'; set ylabel 'concurrency';
set key outside right top; set grid; set yrange [0:{int(2.5 * C)}];
plot '{work}/limit.dat' using 1:3 with lines lw 1 lc rgb '#999999' title 'C',
     '' using 1:4 with lines lw 1 dt 2 lc rgb '#999999' title '2C',
     '' using 1:2 with steps lw 2 lc rgb '#1f77b4' title 'limit'
"""], check=True)

print("### CoDel at 2x overload (400 requests/s; queue 1000, timeout 10 s)")
print()
print("| front | served/s | p50 ms | p99 ms | answered 503 | no answer | goodput vs fifo | p99 vs fifo |")
print("|---|---|---|---|---|---|---|---|")
base = codel[0]["{}"]
for name, res in zip(["nginx `fifo`", "nginx `discipline=codel`", "HAProxy (maxconn + timeout queue)"], codel):
    c = res["{}"]
    print(f"| {name} | {c['goodput']} | {c['p50_ms']} | {c['p99_ms']} | {c['status'].get('503', 0)} | {c['status'].get('0', 0)} | {r(c['goodput'], base['goodput'])} | {r(c['p99_ms'], base['p99_ms'])} |")
k = st3["codel"]
print()
print(f"nginx `codel` zone: dropped {k['dropped']}, rejected (queue full) {k['rejected']}, timed out {k['timed_out']}; "
      f"`fifo` zone: rejected {st3['fifoc']['rejected']}, timed out {st3['fifoc']['timed_out']}.")
EOF
