"""Fixtures shared by the test modules."""

import pytest


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
