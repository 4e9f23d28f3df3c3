"""The training service under load: batching's throughput, and listing latency.

    python bench/service.py [--jobs 200] [--threads 8] [--epochs 5]

1. Batching on: a `numbamlp serve` (default --batch-window 0.5) gets JOBS small jobs
   (digits, 32 hidden units, EPOCHS epochs, each its own seed) from THREADS client threads
   at once; every job must succeed, none lost or doubled; jobs/s = JOBS ÷ (first submit →
   last job done).
2. Batching off: a server with --batch-window 0 gets the same jobs one at a time (submit,
   wait, next), so each trains alone; jobs/s the same way.
3. Listing: a data directory with 10 000 stored jobs, `GET /v1/jobs` (one page of 50)
   timed 300 times from one client: p50 and p95 latency.

Each server is a real process on a free 127.0.0.1 port; the runs are printed with the
machine's load.  Nothing here is a test: see tests/test_service.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from numbamlp.service.local import LocalServer



def job_config(seed: int, epochs: int) -> dict:
    return {"epochs": epochs, "seed": seed, "model": {"hidden": [32]}}


def batched(server: LocalServer, jobs: int, threads: int, epochs: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(lambda s: server.client.submit(job_config(s, epochs))["id"], range(jobs)))
        finished = list(pool.map(lambda i: server.client.wait(i, timeout=3600, poll=0.1), ids))
    return time.perf_counter() - start, finished


def one_at_a_time(server: LocalServer, jobs: int, epochs: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    finished = []
    for seed in range(jobs):
        job = server.client.submit(job_config(seed, epochs))
        finished.append(server.client.wait(job["id"], timeout=3600, poll=0.02))
    return time.perf_counter() - start, finished


def check(finished: list[dict], server: LocalServer, stored: int) -> None:
    """Every job succeeded, and the server lists ``stored`` jobs, each once."""
    statuses = [job["status"] for job in finished]
    assert statuses == ["succeeded"] * len(finished), statuses
    listed = [job["id"] for job in server.client.all_jobs(page_size=1000)]
    assert len(listed) == len(set(listed)) == stored, (len(listed), len(set(listed)))


def listing_latency(work: Path, stored: int = 10_000, calls: int = 300) -> dict:
    from numbamlp.service.store import Store

    data_dir = work / "many"
    data_dir.mkdir()
    store = Store(data_dir / "numbamlp.sqlite")
    for lo in range(0, stored, 1000):
        store.add_jobs([job_config(s, 1) for s in range(lo, lo + 1000)])
    store.close()
    server = LocalServer(data_dir, "--batch-window", "3600").start()  # (they stay queued: nothing trains)
    try:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            page = server.client.jobs(limit=50)
            times.append(time.perf_counter() - start)
            assert len(page["jobs"]) == 50
    finally:
        server.stop()
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * len(times)) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        on = LocalServer(work / "on").start()
        try:
            on.client.wait(on.client.submit(job_config(10_000, 1))["id"])  # warm the server's process
            seconds_on, finished = batched(on, args.jobs, args.threads, args.epochs)
            stacks = sorted({job["stack"]["size"] for job in finished})
            check(finished, on, args.jobs + 1)  # (+ the warm-up job)
        finally:
            on.stop()
        off = LocalServer(work / "off", "--batch-window", "0").start()
        try:
            off.client.wait(off.client.submit(job_config(10_000, 1))["id"])
            seconds_off, finished_off = one_at_a_time(off, args.jobs, args.epochs)
            check(finished_off, off, args.jobs + 1)
        finally:
            off.stop()
        latency = listing_latency(work)
    results = {"jobs": args.jobs, "threads": args.threads, "epochs": args.epochs,
               "batched_s": seconds_on, "batched_jobs_per_s": args.jobs / seconds_on, "stack_sizes": stacks,
               "one_at_a_time_s": seconds_off, "one_at_a_time_jobs_per_s": args.jobs / seconds_off,
               "speedup": seconds_off / seconds_on, **latency, "load": os.getloadavg()[0]}
    print(f"{args.jobs} jobs (digits, 32 hidden, {args.epochs} epochs) from {args.threads} threads, batched: "
          f"{seconds_on:.2f} s, {results['batched_jobs_per_s']:.1f} jobs/s (stack sizes {stacks})")
    print(f"the same jobs one at a time, --batch-window 0: {seconds_off:.2f} s, "
          f"{results['one_at_a_time_jobs_per_s']:.1f} jobs/s")
    print(f"batching: {results['speedup']:.2f}x")
    print(f"GET /v1/jobs (50 of 10 000 stored): p50 {latency['p50_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms")
    print(f"load {results['load']:.2f}")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
