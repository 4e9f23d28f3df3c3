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

    python bench/service.py --under-load [--rate 100] [--seconds 10] [--rounds 3]

4. Under load (only this, with --under-load): a data directory with 10 000 stored jobs
   (most succeeded, some failed or cancelled, as a service's history looks), a real
   server, then open-loop submits paced at RATE jobs/s for SECONDS seconds (each send is
   due at start + i / RATE, whatever the answers before it; sent from a pool of client
   threads), each a small real job (digits, 32 hidden, EPOCHS epochs, its own seed), while
   another thread calls `GET /v1/jobs` (a page of 50) every 50 ms.  Per-request latency of
   submits and listings (p50/p95/p99; a submit's also from when it was due, which counts a
   send the client pool started late), the submit rate achieved, the listing's latency
   idle before the load, the machine's load; then every submitted job must succeed and
   be listed exactly once.  ROUNDS rounds, each on a fresh copy of the data directory and
   a fresh server; the medians over rounds last.  With --no-training the server holds
   every job queued (--batch-window 3600): the requests' latency without training beside
   them, for comparison.  --server-flag passes a flag on to `numbamlp serve`.

Each server is a real process on a free 127.0.0.1 port; the runs are printed with the
machine's load.  Nothing here is a test: see tests/test_service.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import tempfile
import threading
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


# ---------------------------------------------------------------- under load (--under-load)
def stored_config(seed: int, epochs: int) -> dict:
    """A job's config as the service stores it: resolved in full, the split's seed fixed."""
    from numbamlp.config import TrainConfig

    config = TrainConfig.model_validate(job_config(seed, epochs))
    config = config.model_copy(update={"data": config.data.model_copy(update={"seed": 0})})
    return config.model_dump(mode="json", by_alias=True)


def prefilled(data_dir: Path, stored: int, epochs: int) -> Path:
    """A data directory holding ``stored`` finished jobs: 95 % succeeded (with scores), 3 %
    failed, 2 % cancelled, in submission order as a service's history would have them."""
    import random

    from numbamlp.io import json_text
    from numbamlp.service.store import Store

    data_dir.mkdir(parents=True)
    store = Store(data_dir / "numbamlp.sqlite")
    draw = random.Random(0)
    for lo in range(0, stored, 1000):
        jobs = store.add_jobs([stored_config(s, epochs) for s in range(lo, min(lo + 1000, stored))])
        ids = [job["id"] for job in jobs]
        for first in range(0, len(ids), 29):  # (in stacks, as the scheduler runs them)
            stack = ids[first:first + 29]
            store.set_status(stack, "running", stack_id=f"s{lo}-{first}", stack_size=len(stack))
        kinds = [draw.random() for _ in ids]
        failed = [i for i, k in zip(ids, kinds) if 0.95 <= k < 0.98]
        cancelled = [i for i, k in zip(ids, kinds) if k >= 0.98]
        for job_id, k in zip(ids, kinds):
            if k < 0.95:
                accuracy, loss = 0.9 + 0.08 * draw.random(), 0.1 + 0.3 * draw.random()
                scores = {"test_accuracy": accuracy, "test_loss": loss}
                store.set_status([job_id], "succeeded", test_accuracy=accuracy, test_loss=loss,
                                 scores=json_text(scores), model_sha256=f"{draw.getrandbits(256):064x}")
        store.set_status(failed, "failed", error="FloatingPointError: the loss diverged")
        store.set_status(cancelled, "cancelled")
    store.close()
    return data_dir


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0}
    ordered = sorted(seconds)
    at = lambda q: 1000 * ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": 1000 * statistics.median(ordered), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": 1000 * ordered[-1]}


def under_load(template: Path, data_dir: Path, rate: float, seconds: float, epochs: int, list_every: float = 0.05,
               client_threads: int = 32, flags: tuple = (), on_server=None, training: bool = True) -> dict:
    """One round: a fresh copy of ``template``, a server on it, paced submits and listings.
    ``training`` False: the server holds every job queued (--batch-window 3600), so that the
    requests' latency is measured without training beside them."""
    shutil.copytree(template, data_dir)
    server = LocalServer(data_dir, *flags, *(() if training else ("--batch-window", "3600"))).start()
    try:
        client = server.client
        warm = client.submit(job_config(10_000_000, 1))["id"]
        if training:
            client.wait(warm, timeout=600)  # warm the server's process (its kernels loaded)
        stored = len(list(client.all_jobs(page_size=1000)))
        idle = []
        for _ in range(40):  # the listing with nothing going on, for comparison
            start = time.perf_counter()
            client.jobs(limit=50)
            idle.append(time.perf_counter() - start)
        if on_server is not None:
            on_server(server)
        count = int(rate * seconds)
        submits: list = [None] * count  # (seconds from send to answer, from due to answer, id)
        lists: list[float] = []
        done = threading.Event()
        errors: list[str] = []

        def lister():
            due = time.perf_counter()
            while not done.is_set():
                start = time.perf_counter()
                try:
                    page = client.jobs(limit=50)
                    lists.append(time.perf_counter() - start)
                    assert len(page["jobs"]) == 50
                except Exception as err:  # noqa: BLE001
                    errors.append(f"list: {err}")
                due += list_every
                time.sleep(max(0.0, due - time.perf_counter()))

        def submit(i: int, due: float):
            start = time.perf_counter()
            try:
                job_id = client.submit(job_config(i, epochs))["id"]
            except Exception as err:  # noqa: BLE001
                errors.append(f"submit {i}: {err}")
                return
            end = time.perf_counter()
            submits[i] = (end - start, end - due, job_id)

        load_before = os.getloadavg()
        listing = threading.Thread(target=lister, name="lister")
        with concurrent.futures.ThreadPoolExecutor(client_threads) as pool:
            begin = time.perf_counter()
            listing.start()
            for i in range(count):  # open loop: each send is due at begin + i / rate
                due = begin + i / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                pool.submit(submit, i, due)
            pool.shutdown(wait=True)
            sent_s = time.perf_counter() - begin
        done.set()
        listing.join()
        load_after = os.getloadavg()
        assert not errors, errors[:5]
        ids = [s[2] for s in submits]
        wait_start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            finished = list(pool.map(lambda i: client.wait(i, timeout=3600, poll=0.2) if training else client.job(i),
                                     ids))
        drained_s = time.perf_counter() - wait_start
        statuses = {}
        for job in finished:
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        assert statuses == {"succeeded" if training else "queued": count}, statuses
        listed = [job["id"] for job in client.all_jobs(page_size=1000)]
        assert len(listed) == len(set(listed)) == stored + count, (len(listed), len(set(listed)), stored + count)
        assert set(ids) <= set(listed)
        stacks = sorted(job["stack"]["size"] for job in finished if job["stack"]) or [0]
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"jobs": count, "stored_before": stored, "submit_rate": count / sent_s,
            "submit": percentiles([s[0] for s in submits]), "submit_from_due": percentiles([s[1] for s in submits]),
            "list": percentiles(lists), "list_idle": percentiles(idle), "drain_s": drained_s,
            "stacks": len(set(job["stack"]["id"] for job in finished if job["stack"])), "stack_sizes": [stacks[0], stacks[-1]],
            "load_1min": [load_before[0], load_after[0]]}


def under_load_main(args) -> None:
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = prefilled(work / "template", args.stored, args.epochs)
        for r in range(args.rounds):
            result = under_load(template, work / f"round-{r}", args.rate, args.seconds, args.epochs,
                                flags=tuple(args.server_flag), training=not args.no_training)
            rounds.append(result)
            s, d, li, idle = result["submit"], result["submit_from_due"], result["list"], result["list_idle"]
            trained = (f"{result['stacks']} stacks of {result['stack_sizes'][0]}-{result['stack_sizes'][1]}, all "
                       f"succeeded, the last {result['drain_s']:.1f} s after the last submit" if not args.no_training
                       else "all still queued (--no-training)")
            print(f"round {r + 1}/{args.rounds} ({time.strftime('%H:%M:%S', time.gmtime())} UTC): "
                  f"{result['jobs']} jobs at {result['submit_rate']:.1f}/s onto {result['stored_before']} stored; "
                  f"submit p50/p95/p99 {s['p50_ms']:.1f}/{s['p95_ms']:.1f}/{s['p99_ms']:.1f} ms "
                  f"(from due {d['p95_ms']:.1f} p95); list p50/p95/p99 {li['p50_ms']:.1f}/{li['p95_ms']:.1f}/"
                  f"{li['p99_ms']:.1f} ms ({li['n']} calls; idle p95 {idle['p95_ms']:.1f}); {trained}; load "
                  f"{result['load_1min'][0]:.2f} → {result['load_1min'][1]:.2f}", flush=True)
    median = lambda key, sub: statistics.median(r[key][sub] for r in rounds)  # noqa: E731
    summary = {"rate": args.rate, "seconds": args.seconds, "stored": args.stored, "epochs": args.epochs,
               "rounds": rounds, "submit_p95_ms": median("submit", "p95_ms"), "list_p95_ms": median("list", "p95_ms"),
               "submit_p50_ms": median("submit", "p50_ms"), "list_p50_ms": median("list", "p50_ms"),
               "submit_rate": statistics.median(r["submit_rate"] for r in rounds), "load": os.getloadavg()[0]}
    print(f"median of {len(rounds)}: submit p50 {summary['submit_p50_ms']:.1f} ms, p95 {summary['submit_p95_ms']:.1f} "
          f"ms; list p50 {summary['list_p50_ms']:.1f} ms, p95 {summary['list_p95_ms']:.1f} ms (goals: p95 < 50 ms "
          f"each); {summary['submit_rate']:.1f} submits/s; load {summary['load']:.2f}")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--under-load", action="store_true",
                        help="only scenario 4: paced submits and listings onto 10 000 stored jobs")
    parser.add_argument("--rate", type=float, default=100, help="--under-load: submits per second")
    parser.add_argument("--seconds", type=float, default=10, help="--under-load: how long submits go on")
    parser.add_argument("--stored", type=int, default=10_000, help="--under-load: jobs stored before")
    parser.add_argument("--rounds", type=int, default=3, help="--under-load: rounds (medians over them)")
    parser.add_argument("--no-training", action="store_true",
                        help="--under-load: the server trains nothing (every job stays queued): the requests alone")
    parser.add_argument("--server-flag", action="append", default=[],
                        help="--under-load: a flag for numbamlp serve (repeat; e.g. --server-flag=--batch-window=0.2)")
    args = parser.parse_args()
    if args.under_load:
        return under_load_main(args)
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
