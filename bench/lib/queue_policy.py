#!/usr/bin/env python3
"""Client and backend of bench/queue-policy.sh (a measurement, not a test).

backend PORT C BASE_MS
    An HTTP/1.1 keep-alive server with C workers: a request holds one of C
    places for BASE_MS; beyond C in flight, requests wait for a place, so the
    service time seen by the front grows with its concurrency, as with a
    real application server. GET /set?c=N changes C at run time.

open PORT PATH RATE SECONDS [HEADER=VALUE,...]...
    Open-loop load: RATE requests/s in total for SECONDS, spread evenly over
    the header sets given (one per class), on a pool of keep-alive
    connections. Prints JSON: per class, count, status counts, latency
    percentiles of the 200s, goodput.

closed PORT PATH CLIENTS SECONDS [WARMUP [STATUS_URL#ZONE [AT@URL]...]]
    Closed-loop load: CLIENTS users each sending the next request when the
    last is answered; "settled" repeats the numbers without the first
    WARMUP seconds. With STATUS_URL, samples the zone's limit every 100 ms;
    each AT@URL is fetched AT seconds into the run. Prints JSON.

Loopback only; every phase is bounded in time.
"""
import asyncio
import json
import sys
import time
import urllib.request


# --- backend ----------------------------------------------------------------

class Capacity:
    """C places; a waiter woken by a release has its place taken for it."""

    def __init__(self, c):
        self.c = c
        self.busy = 0
        self.waiters = []

    async def acquire(self):
        if self.busy < self.c and not self.waiters:
            self.busy += 1
            return
        f = asyncio.get_running_loop().create_future()
        self.waiters.append(f)
        await f

    def release(self):
        self.busy -= 1
        self.wake()

    def wake(self):
        while self.waiters and self.busy < self.c:
            w = self.waiters.pop(0)
            if not w.cancelled():
                self.busy += 1
                w.set_result(None)

    def set(self, c):
        self.c = c
        self.wake()


async def backend(port, c, base_ms):
    cap = Capacity(c)

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                path = line.split(" ")[1]
                if path.startswith("/set?c="):
                    cap.set(int(path.split("=")[1]))
                    body = b"ok\n"
                else:
                    await cap.acquire()
                    try:
                        await asyncio.sleep(base_ms / 1000)
                    finally:
                        cap.release()
                    body = b"done\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                             b"Content-Type: text/plain\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port,
                                        backlog=4096)
    async with server:
        await server.serve_forever()


# --- client -------------------------------------------------------------------

class Pool:
    def __init__(self, port):
        self.port = port
        self.idle = []

    async def get(self, path, headers, timeout=30):
        conn = self.idle.pop() if self.idle else None
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = conn
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\n{extra}\r\n"
                         .encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                          timeout)
            status = int(head.split(b" ", 2)[1])
            length = 0
            close = False
            for h in head.split(b"\r\n")[1:]:
                k, _, v = h.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"connection" and b"close" in v.lower():
                    close = True
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if close:
                writer.close()
            else:
                self.idle.append(conn)
            return status, time.perf_counter() - t0
        except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                ConnectionError, OSError):
            if conn is not None:
                conn[1].close()
            return 0, time.perf_counter() - t0


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def summary(results, seconds, warmup=0.0):
    """rows: (status, latency, sent at). Goodput counts the 200s completed
    between warmup and the end of the arrivals (not the drain after it);
    latencies are those of requests sent after warmup."""
    out = {}
    for cls, rows in results.items():
        ok = [lat for status, lat, at in rows if status == 200 and at >= warmup]
        done = sum(1 for status, lat, at in rows
                   if status == 200 and warmup <= at + lat <= seconds)
        statuses = {}
        for status, _, _ in rows:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        out[cls] = {
            "count": len(rows), "status": statuses,
            "goodput": round(done / (seconds - warmup), 1),
            "p50_ms": round(pct(ok, 50) * 1000, 1) if ok else None,
            "p99_ms": round(pct(ok, 99) * 1000, 1) if ok else None,
            "max_ms": round(max(ok) * 1000, 1) if ok else None,
        }
    return out


async def open_loop(port, path, rate, seconds, header_sets):
    pool = Pool(port)
    results = {json.dumps(h): [] for h in header_sets}
    tasks = set()

    async def one(h):
        at = time.perf_counter() - start
        status, lat = await pool.get(path, h)
        results[json.dumps(h)].append((status, lat, at))

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(one(header_sets[i % len(header_sets)]))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    sent = time.perf_counter() - start
    if tasks:
        await asyncio.wait(tasks, timeout=40)
    res = summary(results, seconds)
    res["_sent_seconds"] = round(sent, 2)
    return res


def limit_of(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        z = json.load(r)["queue_zones"]
    name = url.split("#", 1)[1]
    return z[name]["max_active"]


async def closed_loop(port, path, clients, seconds, status_url=None,
                      events=(), warmup=0.0):
    pool = Pool(port)
    rows = []
    samples = []
    stop = time.perf_counter() + seconds
    start = time.perf_counter()

    async def user():
        while time.perf_counter() < stop:
            at = time.perf_counter() - start
            status, lat = await pool.get(path, {})
            rows.append((status, lat, at))

    async def sampler():
        loop = asyncio.get_running_loop()
        pending = list(events)
        while time.perf_counter() < stop:
            t = time.perf_counter() - start
            while pending and t >= pending[0][0]:
                await loop.run_in_executor(None, urllib.request.urlopen,
                                           pending.pop(0)[1])
            lim = await loop.run_in_executor(None, limit_of, status_url)
            samples.append((round(t, 2), lim))
            await asyncio.sleep(0.1)

    jobs = [user() for _ in range(clients)]
    if status_url:
        jobs.append(sampler())
    await asyncio.gather(*jobs)
    res = summary({"all": rows}, seconds)["all"]
    if warmup:
        res["settled"] = summary({"all": rows}, seconds, warmup)["all"]
    res["samples"] = samples
    return res


def main():
    mode = sys.argv[1]
    if mode == "backend":
        asyncio.run(backend(int(sys.argv[2]), int(sys.argv[3]),
                            float(sys.argv[4])))
    elif mode == "open":
        port, path = int(sys.argv[2]), sys.argv[3]
        rate, seconds = float(sys.argv[4]), float(sys.argv[5])
        header_sets = []
        for spec in sys.argv[6:] or [""]:
            h = {}
            for kv in filter(None, spec.split(",")):
                k, v = kv.split("=", 1)
                h[k] = v
            header_sets.append(h)
        print(json.dumps(asyncio.run(
            open_loop(port, path, rate, seconds, header_sets))))
    elif mode == "closed":
        port, path = int(sys.argv[2]), sys.argv[3]
        clients, seconds = int(sys.argv[4]), float(sys.argv[5])
        warmup = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
        status_url = sys.argv[7] if len(sys.argv) > 7 else None
        events = []
        for spec in sys.argv[8:]:
            at, url = spec.split("@", 1)
            events.append((float(at), url))
        print(json.dumps(asyncio.run(
            closed_loop(port, path, clients, seconds, status_url, events,
                        warmup))))


if __name__ == "__main__":
    main()
