#!/usr/bin/env python3
"""Client side of bench/queue.sh: many parked requests, and wake latency.

Loopback only; every phase is bounded in time.
"""
import asyncio
import json
import statistics
import sys
import time
import urllib.request


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.load(r)


async def get(port, path, timeout):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    return int(data.split(b" ", 2)[1]) if data else 0, time.perf_counter()


async def park(port, n, workers):
    """Parks n requests behind one long request; returns RSS growth and drain time."""
    hold = asyncio.create_task(get(port, "/park/hold", 120))
    await asyncio.sleep(0.3)
    before = rss_kb(workers)
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(get(port, f"/park/go?i={i}", 180)))
        if i % 500 == 499:
            await asyncio.sleep(0.01)
    deadline = time.time() + 60
    waiting = 0
    while time.time() < deadline:
        waiting = status(port)["queue_zones"]["park"]["waiting"]
        if waiting >= n:
            break
        await asyncio.sleep(0.2)
    parked_rss = rss_kb(workers)
    start = time.perf_counter()
    await hold
    results = await asyncio.gather(*tasks)
    drain = time.perf_counter() - start
    ok = sum(1 for s, _ in results if s == 200)
    return {"parked": waiting, "rss_before_kb": before, "rss_parked_kb": parked_rss,
            "per_request_bytes": (parked_rss - before) * 1024 / max(waiting, 1),
            "drain_seconds": drain, "served": ok}


async def park_limit_req(port, n, workers):
    """The same number of requests held by nginx's own limit_req delay."""
    before = rss_kb(workers)
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(get(port, f"/lr?i={i}", 60)))
        if i % 500 == 499:
            await asyncio.sleep(0.01)
    await asyncio.sleep(3)
    held = rss_kb(workers)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"held": n, "rss_before_kb": before, "rss_held_kb": held,
            "per_request_bytes": (held - before) * 1024 / n}


async def wake(port, rounds):
    """Time from the slot holder's response to the parked request's response."""
    gaps = []
    for _ in range(rounds):
        a = asyncio.create_task(get(port, "/wake/hold", 5))
        await asyncio.sleep(0.01)
        b = asyncio.create_task(get(port, "/wake/go", 5))
        (sa, ta), (sb, tb) = await asyncio.gather(a, b)
        if sa == 200 and sb == 200:
            gaps.append((tb - ta) * 1000)
    gaps.sort()
    return {"rounds": len(gaps), "p50_ms": statistics.median(gaps),
            "p99_ms": gaps[int(len(gaps) * 0.99) - 1], "max_ms": gaps[-1]}


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "park":
        n = int(sys.argv[3])
        workers = [int(p) for p in sys.argv[4].split(",")]
        print(json.dumps(asyncio.run(park(port, n, workers))))
    elif mode == "park-limit-req":
        n = int(sys.argv[3])
        workers = [int(p) for p in sys.argv[4].split(",")]
        print(json.dumps(asyncio.run(park_limit_req(port, n, workers))))
    elif mode == "wake":
        print(json.dumps(asyncio.run(wake(port, int(sys.argv[3])))))


if __name__ == "__main__":
    main()
