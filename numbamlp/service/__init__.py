"""The training service (`numbamlp serve`): jobs over HTTP, batched into stacks, kept in
SQLite, with a dashboard.  Needs the ``serve`` extra (FastAPI, uvicorn)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SERVE_EXTRA = "the service needs the serve extra: pip install 'numbamlp[serve]'"


def read_or_create_token(data_dir) -> tuple[str, bool]:
    """The service's bearer token from ``data_dir/token`` (mode 0600), created on first
    start; returns (token, created)."""
    path = Path(data_dir) / "token"
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token, True


def serve(data_dir, host: str = "127.0.0.1", port: int = 8000, batch_window: float = 0.5,
          max_request_mb: float = 64, workers: int | None = None, scheduler: str | None = None,
          announce=print) -> None:
    """Run the service until SIGINT or SIGTERM (which checkpoint running stacks first)."""
    try:
        import uvicorn

        from numbamlp.service.app import create_app
    except ImportError as err:
        if getattr(err, "name", "") and err.name.split(".")[0] in ("fastapi", "uvicorn", "starlette"):
            raise RuntimeError(SERVE_EXTRA) from None
        raise
    listener = _listen(host, port)  # first: a port that cannot be had leaves no data directory or token behind
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # one server per data directory: a second would requeue the first one's running jobs as a
    # crashed server's and train them again beside it
    from numbamlp.paths import directory_lock

    with directory_lock(data_dir, RuntimeError(f"{data_dir} is in use: another numbamlp serve is running on it "
                                               "(one server per data directory)")):
        _serve(listener, data_dir, host, port, batch_window, max_request_mb, workers, scheduler, announce)


def _serve(listener, data_dir: Path, host: str, port: int, batch_window: float, max_request_mb: float,
           workers, scheduler, announce) -> None:
    import uvicorn

    from numbamlp.service.app import create_app

    token, created = read_or_create_token(data_dir)
    app = create_app(data_dir, token, batch_window=batch_window, max_request_mb=max_request_mb,
                     workers=workers, scheduler_address=scheduler)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM, Ctrl-C: the event streams end first
            app.state.stopping.set()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            bound = listener.getsockname()[1]
            announce(f"numbamlp serving on http://{host}:{bound} (data in {data_dir})")
            announce(f"token (shown once; kept in {data_dir / 'token'}, mode 0600): {token}" if created
                     else f"token: in {data_dir / 'token'}")

    Server(config).run(sockets=[listener])


def _listen(host: str, port: int):
    """A socket bound to host:port, as uvicorn would bind it; RuntimeError with one line
    saying why not (a port out of range, in use, an address not of this machine)."""
    import socket

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except (OSError, OverflowError) as err:  # (OverflowError: a port out of range)
        listener.close()
        reason = getattr(err, "strerror", None) or str(err).removeprefix("bind(): ").rstrip(".")
        raise RuntimeError(f"cannot serve on {host}:{port}: {reason}") from None
    listener.set_inheritable(True)
    return listener
