"""The training service (`numbamlp serve`): jobs over HTTP, batched into stacks, kept in
SQLite, with a dashboard.  Needs the ``serve`` extra (FastAPI, uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path

SERVE_EXTRA = "the service needs the serve extra: pip install 'numbamlp[serve]'"
# Seconds a queued job waits for others that can share its stack (numbamlp.service.scheduler).
DEFAULT_BATCH_WINDOW_S = 0.5


def serve(data_dir, host: str = "127.0.0.1", port: int = 8000, batch_window: float = DEFAULT_BATCH_WINDOW_S,
          limits=None, workers: int | None = None, scheduler: str | None = None, announce=print) -> None:
    """Run the service until SIGINT or SIGTERM (which checkpoint running stacks first);
    ``limits``: a numbamlp.service.limits.Limits (its defaults when None).  RuntimeError
    with one line when it cannot start (the address, the data directory, its token file
    or database)."""
    try:
        import uvicorn

        from numbamlp.service.app import create_app
    except ImportError as err:
        if getattr(err, "name", "") and err.name.split(".")[0] in ("fastapi", "uvicorn", "starlette"):
            raise RuntimeError(SERVE_EXTRA) from None
        raise
    listener = _listen(host, port)  # first: a port that cannot be had leaves no data directory or token behind
    # what the service writes is its own: folders 0700, files 0600 (the token, the database,
    # uploads, models), whatever the umask it was started with
    os.umask(0o077)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # (one made by an earlier version was 0755: this closes everything inside)
    # one server per data directory: a second would requeue the first one's running jobs as a
    # crashed server's and train them again beside it
    from numbamlp.paths import directory_lock

    with directory_lock(data_dir, RuntimeError(f"{data_dir} is in use: another numbamlp serve is running on it "
                                               "(one server per data directory)")):
        _serve(listener, data_dir, host, port, batch_window, limits, workers, scheduler, announce)


def _serve(listener, data_dir: Path, host: str, port: int, batch_window: float, limits, workers, scheduler,
           announce) -> None:
    import uvicorn

    from numbamlp.service.app import create_app
    from numbamlp.service.auth import read_or_create_token
    from numbamlp.service.connections import connection_cap, guarded_h11, say_repeats_once
    from numbamlp.service.limits import Limits

    limits = limits or Limits()
    token, created = read_or_create_token(data_dir)
    app = create_app(data_dir, token, batch_window=batch_window, limits=limits, workers=workers,
                     scheduler_address=scheduler)
    say_repeats_once()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30,
                            http=guarded_h11(limits, connection_cap(limits)))

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
