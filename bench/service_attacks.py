"""The training service under the attacks and typos of issue 23, measured: what each costs
the server, and whether `/healthz` still answers while it happens.

    python bench/service_attacks.py [--connections 3000] [--body-mb 60]

1. A 60 MB body of nested lists to `POST /v1/jobs` without a token: its status, how long it
   took, `/healthz`'s latency meanwhile, the server's peak RSS.
2. Slow headers: N connections (under an open-file limit of 1,024 for the server, as on
   the machine the attack was first tried on) each sending one header line every 5 s for
   20 s; how many the server still holds at the end, whether `/healthz` answers meanwhile
   (its worst latency), and how large the server's log grew.
3. A zip bomb: an .npz of 200,000 × 2,000 float64 zeros (1.5 MB compressed) uploaded with
   the token: status, seconds, peak RSS.
4. Typos that used to reach the allocator or hold the slot: hidden [60000, 60000],
   batch_size 1e12, epochs 1e9: the status of each.

Every server is a real `numbamlp serve` on 127.0.0.1, stopped at the end; every loop here
is bounded in count and time.  Nothing here is a test: tests/test_service.py holds those.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from numbamlp.service.local import LocalServer


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def healthz_ms(port: int, timeout: float = 30) -> float:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    except (OSError, AssertionError, http.client.HTTPException):
        return float("inf")
    finally:
        connection.close()
    return 1000 * (time.perf_counter() - start)


class HealthWatch:
    """/healthz every 0.2 s in a thread, while ``with`` lasts: the worst latency seen."""

    def __init__(self, port: int):
        self.port, self.times, self.done = port, [], threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.done.wait(0.2):
            self.times.append(healthz_ms(self.port))

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def summary(self) -> str:
        answered = sorted(t for t in self.times if t != float("inf"))
        if not self.times:
            return "no /healthz probe (it was over at once)"
        unanswered = len(self.times) - len(answered)
        if not answered:
            return f"/healthz answered none of {len(self.times)} probes"
        return (f"/healthz median {statistics.median(answered):.1f} ms, worst {answered[-1]:.1f} ms, "
                f"{unanswered} of {len(self.times)} probes unanswered (or 503)")


def big_body_without_token(server: LocalServer, megabytes: int) -> str:
    row = "[" + ",".join(["0.123456"] * 100) + "]"  # rows of numbers, as an X would be sent
    rows = megabytes * (1 << 20) // (len(row) + 1)
    body = ('{"config": {"x": [' + ",".join([row] * rows) + "]}}").encode()
    with HealthWatch(server.port) as watch:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as err:  # (answered before the body was sent: closed)
            status = f"connection closed ({type(err).__name__})"
        seconds = time.perf_counter() - start
    return (f"{len(body) / (1 << 20):.0f} MB body, no token: {status} in {seconds:.2f} s; {watch.summary()}; "
            f"server peak RSS {peak_rss_mb(server.process.pid):.0f} MB")


def slow_headers(server: LocalServer, count: int, seconds: float = 20, every: float = 5) -> str:
    log_before = server.log_path.stat().st_size
    connections = []
    refused = 0
    for _ in range(count):
        try:
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            connection.setblocking(False)
            connections.append(connection)
        except OSError:
            refused += 1
    with HealthWatch(server.port) as watch:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(every)
            for connection in connections:
                try:
                    connection.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
    held = 0
    for connection in connections:
        try:
            while connection.recv(65536):  # (a 503 to read first, then the close)
                pass
        except BlockingIOError:
            held += 1  # (nothing more to read, and not closed: still held)
        except OSError:
            pass
        connection.close()
    grown = server.log_path.stat().st_size - log_before
    return (f"{count} slow-header connections ({refused} refused at connect), {seconds:.0f} s: {held} still held "
            f"at the end; {watch.summary()}; the log grew {grown} bytes")


def zip_bomb(server: LocalServer, work: Path) -> str:
    bomb = work / "bomb.npz"
    rows, columns = 200_000, 2_000
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:  # (written in chunks: never 3.2 GB here)
        for name, shape in (("X", (rows, columns)), ("y", (rows,))):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": shape})
                chunk = bytes(8 * columns * 1000)
                total = 8 * int(np.prod(shape))
                while total > 0:
                    member.write(chunk[:min(total, len(chunk))])
                    total -= len(chunk)
    with HealthWatch(server.port) as watch:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        connection.request("POST", "/v1/datasets", body=bomb.read_bytes(),
                           headers={"Authorization": f"Bearer {server.token}"})
        response = connection.getresponse()
        detail = json.loads(response.read()).get("detail", "")
        seconds = time.perf_counter() - start
    return (f"{bomb.stat().st_size / (1 << 20):.2f} MB .npz of {rows} × {columns} zeros: {response.status} in "
            f"{seconds:.2f} s ({detail[:200]}); {watch.summary()}; server peak RSS "
            f"{peak_rss_mb(server.process.pid):.0f} MB")


def typos(server: LocalServer) -> list[str]:
    from numbamlp.client import ServiceError

    lines = []
    for name, config in (("hidden [60000, 60000]", {"model": {"hidden": [60000, 60000]}}),
                         ("batch_size 1e12", {"batch_size": 10**12}), ("epochs 1e9", {"epochs": 10**9})):
        try:
            job = server.client.submit(config)
            lines.append(f"{name}: accepted ({job['id']})")
        except ServiceError as err:
            lines.append(f"{name}: {str(err)[:140]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--body-mb", type=int, default=60)
    args = parser.parse_args()
    # this process holds the slow connections: it needs the descriptors (the server gets 1,024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections + 256)), hard))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = LocalServer(work / "data", "--batch-window", "3600").start()
        # the open-file limit of the machine the attack was first tried on (the server's own
        # cap, set at its start from its limit then, is the --max-connections default, 512)
        resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (1024, 1024))
        try:
            print(big_body_without_token(server, args.body_mb))
            print(slow_headers(server, args.connections))
            print(zip_bomb(server, work))
            for line in typos(server):
                print(line)
        finally:
            server.stop(signal.SIGKILL)


if __name__ == "__main__":
    main()
