"""Property-based fuzzing of the training service's HTTP API with schemathesis, against a
real `numbamlp serve` process and the OpenAPI document it serves (/openapi.json).

Two properties, over every documented operation, for valid and for malformed requests
(schemathesis' examples, coverage and fuzzing phases, positive and negative data):

* with the bearer token: never a 5xx, and every answer is documented — its status code,
  its content type and its body's schema (errors included: the server documents them as
  {"detail": "one line"});
* without a token: every /v1/ operation answers 401, whatever the request holds — a
  malformed body, a bad parameter, a method the path does not have — so nothing in a
  request is looked at before its sender is known to hold a token.

Deterministic (a fixed seed, derandomized Hypothesis, no example database) and small
(a few fuzzed examples per operation), so it runs the same in CI and in `make test`'s time.
Valid jobs that the fuzzer submits queue or train in the server, and go with it.
"""

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from numbamlp.service.local import LocalServer  # noqa: E402

CONFIG = {
    "seed": 20240601,
    "request-timeout": 10,  # seconds; an event stream is read until then, or until:
    "max-stream-events": 3,
    "generation": {
        "mode": "all",  # valid requests and malformed ones
        "max-examples": 10,  # fuzzed, per operation and test, after the coverage phase's edge cases
        "deterministic": True,  # Hypothesis' derandomize: the same cases every run
        "database": "none",  # nothing replayed from, or saved to, .hypothesis/
        "with-security-parameters": False,  # no made-up Authorization headers: each test sends its own, or none
    },
    "phases": {"stateful": {"enabled": False}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A `numbamlp serve` process for this module, always stopped (by force if it hangs)."""
    running = LocalServer(tmp_path_factory.mktemp("fuzz") / "data", "--batch-window", "0.3", "--max-request-mb", "1")
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture(scope="module")
def served_schema(server):
    """The OpenAPI document the server serves, its requests sent to that server."""
    config = schemathesis.Config.from_dict({**CONFIG, "base-url": server.url})
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config, timeout=10)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis (4.32) reads, and renames per operation, the test's ``node._nodeid``,
    which pytest 9.2 no longer has: give it one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# (the schema is the live server's, so it is loaded when a test runs, not when it is collected)
schema = schemathesis.pytest.from_fixture("served_schema")


# ---------------------------------------------------------------- with the token
@schema.parametrize()
def test_with_the_token_no_server_errors_and_every_answer_is_documented(case, server):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {server.token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])


# ---------------------------------------------------------------- without a token
def answers_401(ctx, response, case):
    """Custom check: a request without a token is refused as such, whatever else it holds."""
    assert response.status_code == 401, f"without a token: {response.status_code}, not 401"


@schema.include(path_regex="^/v1/").parametrize()
def test_without_a_token_every_v1_operation_is_401(case):
    assert "authorization" not in {name.lower() for name in case.headers or {}}
    case.call_and_validate(checks=[answers_401])
