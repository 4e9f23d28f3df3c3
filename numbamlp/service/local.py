"""A `numbamlp serve` child process on a free 127.0.0.1 port, for scripts, benchmarks and
tests that want a real server:

    server = LocalServer(Path("service-data"), "--batch-window", "0.2").start()
    server.client.submit({...})
    server.stop()

``start`` returns once ``/healthz`` answers; the server's output goes to a log file beside
the data directory (``server-<port>.log``).  ``stop`` sends a signal (SIGTERM: a graceful
shutdown; SIGKILL: a crash) and returns the exit status; ``start`` again restarts it on
the same data directory and port.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from numbamlp.client import Client, ServiceError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalServer:
    def __init__(self, data_dir, *flags: str):
        self.data_dir, self.flags, self.port = Path(data_dir), flags, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60) -> "LocalServer":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:  # (the child keeps its own descriptor)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "numbamlp.cli.main", "serve", "--port", str(self.port), "--data-dir",
                 str(self.data_dir), *self.flags], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                Client(self.url).health()
                break
            except ServiceError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not come up: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.1)
        self.token = (self.data_dir / "token").read_text().strip()
        self.client = Client(self.url, self.token, timeout=120)
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)
