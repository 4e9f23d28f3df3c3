"""Fixtures shared by the test modules: the command line in this process (``cli``), a
real server process (``start_server``) and a real Dask cluster (``cluster``).  Plain
helpers live in tests/naive.py."""

import pytest


class CommandLine:
    """``numbamlp`` run in this process by click's CliRunner (no Python start-up per command;
    a test that needs a real process, signals or a pipe runs ``naive.numbamlp``).  Every
    argument is passed as ``str(argument)``, so paths and numbers may be given as they are.

    ``cli(*args)`` → (exit code, output): an exception the command does not turn into an
    exit code is raised through to the test.
    ``cli.invoke(*args, env=None, catch_exceptions=True)`` → click's Result (exit_code,
    output, stdout_bytes, stderr_bytes, exception), for a test that looks at more than the
    code and the output."""

    def __call__(self, *args) -> tuple[int, str]:
        result = self.invoke(*args, catch_exceptions=False)
        return result.exit_code, result.output

    def invoke(self, *args, env: dict | None = None, catch_exceptions: bool = True):
        from click.testing import CliRunner

        from numbamlp.cli.main import main  # (imported per call: a test's monkeypatch applies)

        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=catch_exceptions)


@pytest.fixture(scope="session")
def cli() -> CommandLine:
    """The command line in this process: see CommandLine."""
    return CommandLine()


@pytest.fixture
def start_server(tmp_path):
    """start_server(*flags, data_dir=...) → a started numbamlp.service.local.LocalServer (a
    real `numbamlp serve` on a free 127.0.0.1 port; data in tmp_path/data unless given),
    always stopped after the test, passed or failed, by force if it hangs."""
    from numbamlp.service.local import LocalServer

    started = []

    def start(*flags: str, data_dir=None) -> LocalServer:
        server = LocalServer(data_dir or tmp_path / "data", *flags)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def cluster():
    """A client of a real LocalCluster of two single-threaded worker processes (as
    --workers 2 makes), one per test module; skipped without the dask extra."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"NUMBA_NUM_THREADS": "1"}) as local, Client(local) as client:
        yield client
