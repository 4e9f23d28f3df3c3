"""A `numbamlp serve` child process on a free 127.0.0.1 port (``--port 0``: the server
binds a free one and says which, so no other process can take it in between), for
scripts, benchmarks and tests that want a real server:

    server = LocalServer(Path("service-data"), "--batch-window", "0.2").start()
    server.client.submit({...})
    server.stop()

``start`` returns once ``/healthz`` answers; the server's output goes to a log file beside
the data directory (``server-<its name>.log``).  ``stop`` sends a signal (SIGTERM: a graceful
shutdown; SIGKILL: a crash) and returns the exit status; ``start`` again restarts it on
the same data directory and port; ``close`` stops it if it runs, by force if it must.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from numbamlp.client import Client, ServiceError


# the line `numbamlp serve` prints once it listens
SERVING = re.compile(r"numbamlp serving on http://127\.0\.0\.1:(\d+)")


class LocalServer:
    def __init__(self, data_dir, *flags: str):
        self.data_dir, self.flags = Path(data_dir), flags
        self.port = self.url = None  # (known once the first start has bound a port)
        self.process = None
        self.log_path = self.data_dir.parent / f"server-{self.data_dir.name}.log"

    def start(self, timeout: float = 60) -> "LocalServer":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:  # (the child keeps its own descriptor)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "numbamlp.cli.main", "serve", "--port", str(self.port or 0), "--data-dir",
                 str(self.data_dir), *self.flags], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.port is None:
                serving = SERVING.search(self.log_path.read_text()[logged:])
                if serving is not None:
                    self.port = int(serving.group(1))
                    self.url = f"http://127.0.0.1:{self.port}"
            try:
                if self.url is not None:
                    Client(self.url).health()
                    break
            except ServiceError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()  # (one that hangs is not left running)
                raise RuntimeError(f"the server did not come up: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        self.token = (self.data_dir / "token").read_text().strip()
        self.client = Client(self.url, self.token, timeout=120)
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def close(self, timeout: float = 30) -> None:
        """Stop the server if it still runs, whatever state it is in: SIGTERM, then SIGKILL
        after ``timeout`` seconds (for fixtures, which must never leave one behind)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.stop(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
