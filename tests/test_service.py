"""The training service against a real `numbamlp serve` process on a free 127.0.0.1 port:
auth, 401/413/422, idempotency, pagination, batching into stacks, SSE resume, cancel,
predict equals local, kill -9 and SIGTERM with a restart, the OpenAPI snapshot, the
`numbamlp jobs` client, and the dashboard in a real headless Chromium."""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from naive import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from numbamlp.client import Client, ServiceError  # noqa: E402
from numbamlp.paths import OutputPathError  # noqa: E402
from numbamlp.service.local import LocalServer as Server  # noqa: E402

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
SNAPSHOT = Path(__file__).with_name("service_openapi.json")
IRIS = {"data": {"train": "builtin:iris"}, "model": {"hidden": [8]}}
SLOW = {"epochs": 400, "model": {"hidden": [256, 256]}}  # digits: ~40 ms an epoch, to cancel or kill mid-way


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("service") / "data", "--batch-window", "0.3",
                     "--max-request-mb", "1").start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def iris_job(server):
    """A succeeded iris job, to predict with, download, and follow."""
    return server.client.wait(server.client.submit({**IRIS, "epochs": 1})["id"], timeout=120)


def raw(server, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request, without the client's conveniences."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def post_json(server, path: str, text: str) -> tuple[int, str]:
    """(status, detail) of a POST of JSON ``text`` as written (escapes, NaN and all), with the token."""
    status, _, body = raw(server, "POST", path, text.encode(),
                          {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"})
    return status, json.loads(body)["detail"]


# ---------------------------------------------------------------- auth and bad requests
def app_routes(tmp_path) -> list[tuple[str, str]]:
    """(method, path) of every route the app has, a path's {parameters} filled in: taken from
    the app itself, so a route added tomorrow is in every test that walks them."""
    from fastapi.routing import APIRoute

    from numbamlp.service.app import create_app

    app = create_app(tmp_path / "routes")
    try:  # FastAPI >= 0.137.2 keeps an included router as one node of app.routes: walk into it
        from fastapi.routing import iter_route_contexts

        routes = [(context.original_route, context.path) for context in iter_route_contexts(app.routes)]
    except ImportError:  # (older FastAPI copies the routers' routes into app.routes)
        routes = [(route, getattr(route, "path", None)) for route in app.routes]
    return sorted((method, re.sub(r"\{\w+\}", "x", path)) for route, path in routes
                  if isinstance(route, APIRoute) for method in route.methods)


def test_every_route_but_health_and_the_page_needs_the_token(server, tmp_path):
    from numbamlp.service.auth import PUBLIC_PATHS

    assert raw(server, "GET", "/healthz")[0] == 200
    status, _, page = raw(server, "GET", "/")
    assert status == 200 and b"<title>numbamlp</title>" in page
    routes = [(method, path) for method, path in app_routes(tmp_path) if path not in PUBLIC_PATHS]
    assert ("GET", "/v1/jobs/x/model") in routes and ("POST", "/v1/jobs/x/cancel") in routes
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"},
                        {"Authorization": "Bearer "}, {"Authorization": "Basic " + server.token}):
            status, answer, _ = raw(server, method, path, headers=headers)
            assert status == 401 and answer.get("www-authenticate") == "Bearer", (method, path, headers, status)
    assert (server.data_dir / "token").stat().st_mode & 0o777 == 0o600


def test_a_request_without_a_token_is_refused_before_its_body_is_read(server):
    """The body was parsed first: malformed JSON without a token got 422, and a 60 MB body
    of nested lists held the server for seconds before its 401."""
    assert raw(server, "POST", "/v1/jobs", b"{not json", {"Content-Type": "application/json"})[0] == 401
    # a body that never comes: the 401 is sent without waiting for it
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 900000\r\n\r\n[[[[")
        assert connection.recv(100).startswith(b"HTTP/1.1 401")


def test_invalid_configs_are_422_naming_the_field(server):
    with pytest.raises(ServiceError) as error:
        server.client.submit({"optimizer": {"lr": -1}})
    assert error.value.status == 422 and "optimizer.lr: Input should be greater than 0" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.submit({"data": {"train": "/etc/passwd"}})
    assert error.value.status == 422 and "data.train: '/etc/passwd' is not builtin:NAME" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": 1, "nonsense": 3})
    assert error.value.status == 422 and "nonsense" in str(error.value)


def test_text_utf8_cannot_encode_is_422_naming_the_field_and_never_stored(server, tmp_path):
    """A lone surrogate (JSON can spell one) was stored, and every listing then failed."""
    before = len(list(server.client.all_jobs()))
    for text, field in (
            ('{"config": {"epochs": 1, "data": {"train": "builtin:iris", "label_column": "\\ud800"}}}',
             "config.data.label_column"),
            ('{"config": {"epochs": 1, "data": {"train": "builtin:\\ud800"}}}', "config.data.train"),
            ('{"config": {"epochs": 1, "\\udfff": 1}}', "a key of config")):
        status, detail = post_json(server, "/v1/jobs", text)
        assert status == 422 and f"{field} is not UTF-8 text" in detail, detail
    status, detail = post_json(server, "/v1/sweeps", '{"config": {}, "grid": {"data.label_column": ["\\ud800"]}}')
    assert status == 422 and "grid.data.label_column[0] is not UTF-8 text" in detail, detail
    assert raw(server, "GET", "/v1/jobs", headers={"Authorization": f"Bearer {server.token}"})[0] == 200
    assert len(list(server.client.all_jobs())) == before
    # and the store itself refuses such text rather than keep it escaped
    from numbamlp.service.store import Store

    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(UnicodeEncodeError):
        store.add_jobs([{"data": {"label_column": "\ud800"}}])
    assert store.count() == 0
    store.close()


def test_unknown_request_fields_are_422_naming_them(server):
    """A config sent without its {"config": ...} wrapper trained the defaults."""
    before = len(list(server.client.all_jobs()))
    status, detail = post_json(server, "/v1/jobs", '{"epochs": 1, "data": {"train": "builtin:iris"}, "bogus": true}')
    assert status == 422 and "epochs: Extra inputs are not permitted" in detail and "bogus:" in detail, detail
    status, detail = post_json(server, "/v1/jobs", '{"config": {"epochs": 1}, "extra": 1}')
    assert status == 422 and "extra: Extra inputs are not permitted" in detail, detail
    status, detail = post_json(server, "/v1/sweeps", '{"config": {}, "grid": {"seed": [1]}, "randon": 2}')
    assert status == 422 and "randon: Extra inputs are not permitted" in detail, detail
    status, detail = post_json(server, "/v1/jobs/x/predict", '{"X": [[1]], "probas": true}')
    assert status == 422 and "probas: Extra inputs are not permitted" in detail, detail
    assert len(list(server.client.all_jobs())) == before


def test_a_sweeps_members_data_is_checked_as_a_jobs(server):
    """The grid could name a server-side file for the server to read."""
    before = len(list(server.client.all_jobs()))
    with pytest.raises(ServiceError) as error:
        server.client.sweep({"epochs": 1, "batch_size": 2}, {"data.train": ["builtin:iris", "/some/server/file.csv"]})
    assert error.value.status == 422
    assert ("the member data.train='/some/server/file.csv': data.train: '/some/server/file.csv' is not "
            "builtin:NAME or an uploaded dataset:<id>") in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.sweep({**IRIS, "epochs": 1}, {"data.test": ["/etc/hostname"]})
    assert error.value.status == 422 and "the member data.test='/etc/hostname': data.test:" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.sweep({**IRIS, "epochs": 1}, {"data.train": ["builtin:nope"]})
    assert error.value.status == 422 and "unknown built-in data set 'nope'" in str(error.value)
    assert len(list(server.client.all_jobs())) == before


def test_data_settings_are_checked_at_submit_and_errors_hide_the_servers_paths(server, tmp_path):
    """builtin:nope and a label column the upload lacks were accepted, and failed when run,
    naming the server's dataset file."""
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": 1, "data": {"train": "builtin:nope"}})
    assert error.value.status == 422 and "data.train: unknown built-in data set 'nope'" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": 1, "data": {"train": "builtin:diabetes"}})
    assert error.value.status == 422 and "data.train: builtin:diabetes is a regression data set" in str(error.value)
    rows = "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40))
    (tmp_path / "d.csv").write_text("a,b,label\n" + rows + "\n")
    dataset = server.client.upload_dataset(tmp_path / "d.csv")
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": 1, "data": {"train": f"dataset:{dataset['id']}", "label_column": "nope"}})
    message = str(error.value)
    assert error.value.status == 422 and "data.label_column: " in message and "no column named 'nope'" in message
    assert f"the uploaded dataset {dataset['id']}" in message and str(server.data_dir) not in message
    # the same content again, with a label column it lacks: checked too, and kept
    with pytest.raises(ServiceError) as error:
        server.client.upload_dataset(tmp_path / "d.csv", label_column="nope")
    assert error.value.status == 422 and "no column named 'nope'" in str(error.value)
    assert str(server.data_dir) not in str(error.value)
    assert server.client.upload_dataset(tmp_path / "d.csv", label_column="label")["id"] == dataset["id"]
    assert not [p.name for p in (server.data_dir / "datasets").iterdir() if p.is_dir()]  # no checking folder left
    # train and test of different widths: refused at submit too, naming no server path either
    (tmp_path / "narrow.csv").write_text("a,label\n" + "\n".join(f"{i},{i % 2}" for i in range(40)) + "\n")
    narrow = server.client.upload_dataset(tmp_path / "narrow.csv")
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": 1, "data": {"train": f"dataset:{dataset['id']}",
                                                    "test": f"dataset:{narrow['id']}"}})
    message = str(error.value)
    assert error.value.status == 422 and message.startswith("422: data.test: ") and "has 1 features" in message
    assert str(server.data_dir) not in message and f"the uploaded dataset {narrow['id']}" in message


def post_streaming(server, headers: dict, chunks, path: str = "/v1/datasets") -> tuple[int, bytes]:
    """POST ``path`` over a raw socket, sending ``chunks`` until the server answers or
    closes; (status, what came back).  A server that refuses early stops reading, so the
    client's sending may break off: that is the point."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", **headers}.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while not answer.endswith(b"}") and (part := sock.recv(65536)):
                answer += part
        except ConnectionResetError:
            pass
    return int(answer.split(b" ", 2)[1]), answer


def test_bodies_over_the_limit_are_413_before_they_are_read(server):
    auth = {"Authorization": f"Bearer {server.token}"}
    # a Content-Length over the limit: refused on the headers, the body never sent
    status, answer = post_streaming(server, {**auth, "Content-Length": str(2 << 20)}, [])
    assert status == 413 and b"larger than 1 MB" in answer
    # a streamed body without Content-Length is cut off as soon as it passes the limit
    chunk = b"10000\r\n" + b"y" * 65536 + b"\r\n"
    status, answer = post_streaming(server, {**auth, "Transfer-Encoding": "chunked"}, [chunk] * 64)
    assert status == 413 and b"larger than 1 MB" in answer
    # JSON bodies too (FastAPI reads those itself, and made any failure to a 400)
    json_chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    for path in ("/v1/jobs", "/v1/jobs/x/predict", "/v1/sweeps"):
        status, answer = post_streaming(server, {**auth, "Content-Type": "application/json",
                                                 "Transfer-Encoding": "chunked"}, [json_chunk] * 64, path)
        assert status == 413 and b"larger than 1 MB" in answer, (path, answer)


def test_the_413_names_a_fractional_limit_as_given(tmp_path, start_server):
    small = start_server("--max-request-mb", "0.05")
    try:
        status, answer = post_streaming(small, {"Authorization": f"Bearer {small.token}",
                                                "Content-Length": str(1 << 20)}, [])
        assert status == 413 and b"request body larger than 0.05 MB" in answer
    finally:
        small.stop()


def test_datasets_upload_by_content_hash_and_train(server, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    y = np.where(X[:, 0] > 0, "pos", "neg")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    first = server.client.upload_dataset(tmp_path / "d.npz")
    assert first["rows"] == 90 and first["features"] == 3 and first["format"] == "npz"
    assert server.client.upload_dataset(tmp_path / "d.npz")["id"] == first["id"]  # same bytes, same id
    job = server.client.submit({"epochs": 5, "data": {"train": f"dataset:{first['id']}"}})
    done = server.client.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert server.client.predict(job["id"], X[:3])["labels"][0] in ("pos", "neg")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": y}), tmp_path / "d.parquet")
    as_parquet = server.client.upload_dataset(tmp_path / "d.parquet")
    assert as_parquet["format"] == "parquet" and as_parquet["rows"] == 90 and as_parquet["features"] == 3
    # (a column of text is a table's categories, and is taken; numbers with a stray text are refused)
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n3,x,1\n4,5,0\n")
    with pytest.raises(ServiceError) as error:
        server.client.upload_dataset(tmp_path / "bad.csv")
    assert error.value.status == 422 and "column 'b' holds numbers, but 'x'" in str(error.value), error.value


# ---------------------------------------------------------------- jobs
def test_idempotency_key_returns_the_same_job(server):
    before = len(list(server.client.all_jobs()))
    first = server.client.submit({**IRIS, "epochs": 1}, idempotency_key="retry-me")
    second = server.client.submit({**IRIS, "epochs": 1}, idempotency_key="retry-me")
    assert first["id"] == second["id"] and len(list(server.client.all_jobs())) == before + 1
    with pytest.raises(ServiceError) as error:
        server.client.submit({**IRIS, "epochs": 2}, idempotency_key="retry-me")
    assert error.value.status == 422


def test_jobs_submitted_together_train_as_one_stack_and_list_page_by_page(server):
    # (a batch size of their own: no other test's job can join their stack)
    ids = [server.client.submit({**IRIS, "epochs": 3, "seed": s, "batch_size": 11})["id"] for s in range(5)]
    jobs = [server.client.wait(i, timeout=120) for i in ids]
    assert all(j["status"] == "succeeded" for j in jobs)
    stacks = {j["stack"]["id"] for j in jobs}
    assert len(stacks) == 1 and jobs[0]["stack"]["size"] == 5  # within the batch window: one stack
    status, mates = get_json(server, f"/v1/jobs?stack={jobs[0]['stack']['id']}&limit=3")  # (a stack's jobs)
    assert status == 200 and [j["id"] for j in mates["jobs"]] == ids[::-1][:3] and mates["next_page_token"]
    seen, token, pages = [], None, 0
    while True:
        page = server.client.jobs(limit=2, page_token=token)
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert len(seen) == len(set(seen)) == len(list(server.client.all_jobs(page_size=1000)))
    assert pages >= 3 and seen.index(ids[-1]) < seen.index(ids[0])  # newest first
    assert server.client.jobs(status="succeeded", limit=1000)["jobs"]
    with pytest.raises(ServiceError) as error:
        server.client.jobs(page_token="garbage!")
    assert error.value.status == 422


def test_crafted_page_tokens_and_last_event_ids_are_422(server, iris_job):
    """A token holding 1e999 or a number SQLite cannot hold was a 500, such a Last-Event-ID a
    cut stream."""
    for position in ("1e999", "1" * 25, "1.5", "-1", "true"):
        token = base64.urlsafe_b64encode(f'{{"before": {position}}}'.encode()).decode().rstrip("=")
        with pytest.raises(ServiceError) as error:
            server.client.jobs(page_token=token)
        assert error.value.status == 422 and "page_token is not one this server gave" in str(error.value)
    for last in ("99999999999999999999999", "abc", "-1", "\xb2"):
        status, _, body = raw(server, "GET", f"/v1/jobs/{iris_job['id']}/events",
                              headers={"Authorization": f"Bearer {server.token}", "Last-Event-ID": last})
        assert status == 422 and "is not an epoch number this server sent" in json.loads(body)["detail"], last
    # one past the last epoch: just the end
    assert [e for e, _ in server.client.events(iris_job["id"], last_event_id=1)] == ["end"]


def test_events_stream_each_epoch_and_resume_without_gaps_or_duplicates(server):
    job = server.client.submit({"epochs": 40, "model": {"hidden": [128]}})
    stream = server.client.events(job["id"])
    first = [next(stream) for _ in range(2)]
    stream.close()  # the connection drops after epoch 2
    assert [epoch for epoch, _ in first] == [1, 2]
    rest = list(server.client.events(job["id"], last_event_id=2))
    epochs = [epoch for epoch, _ in rest[:-1]]
    assert epochs == list(range(3, 41)) and rest[-1][0] == "end" and rest[-1][1]["status"] == "succeeded"
    # a finished job replays its history; every epoch's metrics as the run's metrics.jsonl has them
    replay = list(server.client.events(job["id"]))
    assert [e for e, _ in replay[:-1]] == list(range(1, 41))
    lines = (server.data_dir / "jobs" / job["id"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [m["loss"] for _, m in replay[:-1]]


def test_cancel_a_queued_job_and_a_running_one_whose_stack_mate_goes_on(server):
    long_jobs = [server.client.submit({**SLOW, "seed": s})["id"] for s in (0, 1)]
    wait_for(lambda: all(server.client.job(i)["status"] == "running" for i in long_jobs), what="running")
    assert server.client.job(long_jobs[0])["stack"] == server.client.job(long_jobs[1])["stack"]
    next(server.client.events(long_jobs[0]))  # an epoch has ended
    asked = time.monotonic()
    server.client.cancel(long_jobs[0])
    wait_for(lambda: server.client.job(long_jobs[0])["status"] == "cancelled", timeout=3, what="cancelled")
    assert time.monotonic() - asked < 3
    mate = server.client.job(long_jobs[1])
    assert mate["status"] == "running"
    queued = server.client.submit({**IRIS, "epochs": 1, "batch_size": 7})  # (another stack key: waits)
    assert server.client.cancel(queued["id"])["status"] == "cancelled"
    server.client.cancel(long_jobs[1])
    wait_for(lambda: server.client.job(long_jobs[1])["status"] == "cancelled", timeout=5, what="the mate")
    time.sleep(0.5)
    assert server.client.job(queued["id"])["started_at"] is None  # never started
    with pytest.raises(ServiceError) as error:
        server.client.cancel("no-such-job")
    assert error.value.status == 404


def test_predict_equals_numbamlp_predict_and_the_model_has_an_etag(server, tmp_path):
    job = server.client.wait(server.client.submit({**IRIS, "epochs": 6})["id"], timeout=120)
    model_file = server.client.download(job["id"], tmp_path / "m.safetensors")
    import hashlib

    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == job["model_sha256"]
    status, headers, _ = raw(server, "GET", f"/v1/jobs/{job['id']}/model",
                             headers={"Authorization": f"Bearer {server.token}",
                                      "If-None-Match": f'"{job["model_sha256"]}"'})
    assert status == 304
    from sklearn.datasets import load_iris

    X = load_iris().data
    served = server.client.predict(job["id"], X, proba=True)
    local = subprocess.run([*NUMBAMLP, "predict", str(model_file), "--data", "builtin:iris", "--proba"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    header = local[0].split(",")
    assert [int(line.split(",")[0]) for line in local[1:]] == served["labels"]
    np.testing.assert_allclose(np.array([[float(v) for v in line.split(",")[1:]] for line in local[1:]]),
                               np.array(served["proba"]), rtol=0, atol=1e-6)
    assert header[0] == "prediction"
    with pytest.raises(ServiceError) as error:
        server.client.predict(job["id"], [[1.0, 2.0]])
    assert error.value.status == 422 and "4 features" in str(error.value)


def test_predict_refuses_x_that_is_not_finite_or_not_rectangular(server, iris_job):
    path = f"/v1/jobs/{iris_job['id']}/predict"
    for text, words in (('{"X": [[NaN, 0, 0, 0]]}', "X.0.0: Input should be a finite number"),
                        ('{"X": [[1, 2, 3, 1e999]]}', "X.0.3: Input should be a finite number"),
                        ('{"X": [[1, 2, 3, 4], [1, 2, 3]]}', "X must have rows of 4 features, got rows of 3 and 4"),
                        ('{"X": []}', "X must have rows of 4 features, got no rows")):
        status, detail = post_json(server, path, text)
        assert status == 422 and words in detail, detail


def test_download_refuses_an_existing_file_unless_told_to_overwrite(server, iris_job, tmp_path):
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"mine")
    with pytest.raises(OutputPathError, match="exists"):
        server.client.download(iris_job["id"], target)
    assert target.read_bytes() == b"mine"
    server.client.download(iris_job["id"], target, overwrite=True)
    assert target.read_bytes()[:8] != b"mine"


def test_a_sweep_makes_member_jobs_that_train_as_one_stack(server):
    sweep = server.client.sweep({**IRIS, "epochs": 2}, {"optimizer.lr": [0.01, 0.1], "seed": [0, 1]})
    ids = [job["id"] for job in sweep["jobs"]]
    jobs = [server.client.wait(i, timeout=120) for i in ids]
    assert [j["config"]["optimizer"]["lr"] for j in jobs] == [0.01, 0.01, 0.1, 0.1]
    assert {j["sweep_id"] for j in jobs} == {sweep["id"]} and {j["stack"]["size"] for j in jobs} == {4}
    with pytest.raises(ServiceError) as error:
        server.client.sweep({}, {"optimizer.lrr": [1]})
    assert error.value.status == 422 and "did you mean optimizer.lr" in str(error.value)


def get_json(server, path: str, token: str | None = None) -> tuple[int, object]:
    """(status, parsed body) of a GET with ``token`` (the admin's unless given)."""
    status, _, body = raw(server, "GET", path, headers={"Authorization": f"Bearer {token or server.token}"})
    return status, json.loads(body)


def best_member(members: list[dict], metric: str, higher_is_better: bool) -> dict:
    """The best succeeded member, written out as numbamlp sweep ranks them: by the metric,
    ties to the lower val_loss, then the lower member."""
    sign = -1 if higher_is_better else 1
    finished = [m for m in members if m["status"] == "succeeded" and m["metric_value"] is not None]
    return min(finished, key=lambda m: (sign * m["metric_value"], m["scores"]["val_loss"], m["member"]))


def test_sweeps_are_listed_and_shown_with_counts_state_members_and_their_best(start_server):
    """Issue 28: GET /v1/sweeps was a 404.  A sweep's record is derived from its jobs: counts
    by status, state (queued → running → done), the best member by the sweep's metric; its
    members carry their grid values, metric and epochs; every token may read every sweep, as
    every job; an unknown id is a 404.  (A server of its own: its tokens and sweeps are the
    only ones, and no other test's listing sees them.)"""
    server = start_server("--batch-window", "0.3")
    tokens = {}
    for name, role in (("dora", "submit"), ("erin", "read")):
        made = token_command(server.data_dir, "create", name, "--role", role)
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    dora = Client(server.url, tokens["dora"])
    grid = {"optimizer.lr": [0.01, 0.3], "seed": [0, 1]}
    first = dora.sweep({**IRIS, "epochs": 3, "batch_size": 13}, grid)
    states, record = [], None
    deadline = time.monotonic() + 180
    while record is None or record["state"] != "done":
        assert time.monotonic() < deadline, f"the sweep is still {record and record['state']}"
        status, record = get_json(server, f"/v1/sweeps/{first['id']}")
        assert status == 200, record
        if not states or states[-1] != record["state"]:
            states.append(record["state"])
        assert sum(record["counts"].values()) == record["size"] == 4
        time.sleep(0.05)
    assert states in (["queued", "running", "done"], ["running", "done"], ["queued", "done"], ["done"]), states
    assert record["counts"] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 0, "cancelled": 0}
    assert record["owner"] == "dora" and record["metric"] == "val_accuracy"
    assert record["created_at"] == first["jobs"][0]["created_at"] <= record["finished_at"]
    members = record["members"]
    assert [m["id"] for m in members] == [j["id"] for j in first["jobs"]]
    assert [m["member"] for m in members] == [0, 1, 2, 3]
    assert [m["grid"] for m in members] == [{"optimizer.lr": lr, "seed": seed} for lr in (0.01, 0.3) for seed in (0, 1)]
    for m in members:
        job = server.client.job(m["id"])
        assert {k: m[k] for k in job} == job  # (each member is its job's view, and more)
        assert (m["config"]["optimizer"]["lr"], m["config"]["seed"]) == (m["grid"]["optimizer.lr"], m["grid"]["seed"])
        assert m["status"] == "succeeded" and m["epochs"] == 3 and m["metric_value"] == m["scores"]["val_accuracy"]
    best = best_member(members, "val_accuracy", higher_is_better=True)
    assert record["best"] == {"job_id": best["id"], "member": best["member"], "metric": "val_accuracy",
                              "value": best["scores"]["val_accuracy"]}

    # the ranking metric is the members' early_stopping.metric: here one lower is better
    second = dora.sweep({**IRIS, "epochs": 2, "batch_size": 13, "early_stopping": {"metric": "val_loss"}},
                        {"optimizer.lr": [0.01, 0.3]})
    for job in second["jobs"]:
        server.client.wait(job["id"], timeout=120)
    status, shown = get_json(server, f"/v1/sweeps/{second['id']}")
    assert status == 200 and shown["state"] == "done" and shown["metric"] == "val_loss"
    best = best_member(shown["members"], "val_loss", higher_is_better=False)
    assert shown["best"]["job_id"] == best["id"] and shown["best"]["value"] == min(
        m["scores"]["val_loss"] for m in shown["members"])

    # the listing: newest first, page by page, each sweep's record as shown without its members
    seen, token, pages = [], None, 0
    while True:
        status, page = get_json(server, "/v1/sweeps?limit=1" + (f"&page_token={token}" if token else ""))
        assert status == 200 and len(page["sweeps"]) <= 1
        seen += page["sweeps"]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    third = server.client.sweep({**IRIS, "epochs": 1}, {"seed": [0]})  # (the admin's)
    assert [s["id"] for s in seen] == [second["id"], first["id"]] and pages == 2
    assert seen[0] == {k: v for k, v in shown.items() if k != "members"}
    status, whole = get_json(server, "/v1/sweeps?limit=1000")
    assert [s["id"] for s in whole["sweeps"]] == [third["id"], second["id"], first["id"]]
    assert whole["next_page_token"] is None and whole["sweeps"][0]["owner"] == "admin"
    assert raw(server, "HEAD", "/v1/sweeps", headers={"Authorization": f"Bearer {server.token}"})[:3:2] == (200, b"")
    # every token may read every sweep (as every job); owner= lists one person's
    for token in (tokens["erin"], server.token):
        status, mine = get_json(server, "/v1/sweeps?owner=dora", token)
        assert status == 200 and [s["id"] for s in mine["sweeps"]] == [second["id"], first["id"]]
    assert get_json(server, f"/v1/sweeps/{first['id']}", tokens["erin"])[1]["best"] == record["best"]
    assert get_json(server, "/v1/sweeps?owner=erin", tokens["erin"])[1] == {"sweeps": [], "next_page_token": None}
    # unknown ids (a job's id is no sweep's) are the one-line 404; a page token not ours is 422
    for unknown in ("nope", first["jobs"][0]["id"], "x" * 5000):
        status, answer = get_json(server, f"/v1/sweeps/{unknown}")
        assert status == 404 and answer["detail"].startswith("no sweep ") and len(answer["detail"]) < 100, answer
    status, answer = get_json(server, "/v1/sweeps?page_token=garbage!")
    assert status == 422 and answer == {"detail": "page_token is not one this server gave"}


def test_a_sweeps_state_follows_its_members_statuses():
    """The state rules (routers.sweeps.sweep_view), over the statuses a sweep's members can
    be in at once: queued until a member starts, done when every member has ended."""
    from numbamlp.service.routers.sweeps import sweep_view

    def sweep(*members):  # (status, started): a member; a succeeded one's val_accuracy grows with its index
        ended, succeeded = ("succeeded", "failed", "cancelled"), "succeeded"
        record = {"id": "s", "owner": "o", "created_at": 1.0, "search": None}  # (a grid sweep's)
        return sweep_view(record, [{"id": f"j{i}", "sweep_id": "s", "owner": "o", "status": status, "created_at": 1.0,
                                    "started_at": 2.0 if started else None,
                                    "finished_at": 3.0 + i if status in ended else None, "trial": None,
                                    "scores": {"val_accuracy": 0.5 + i / 10, "val_loss": 1.0}
                                    if status == succeeded else None}
                                   for i, (status, started) in enumerate(members)], "val_accuracy")

    assert sweep(("queued", False), ("queued", False))["state"] == "queued"
    assert sweep(("cancelled", False), ("queued", False))["state"] == "queued"  # (nothing has trained)
    assert sweep(("running", True), ("queued", False))["state"] == "running"
    assert sweep(("queued", True), ("queued", True))["state"] == "running"  # (a stack paused between time slices)
    assert sweep(("succeeded", True), ("queued", False))["state"] == "running"
    done = sweep(("succeeded", True), ("failed", True), ("succeeded", True), ("cancelled", False))
    assert done["state"] == "done" and done["finished_at"] == 6.0
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 1}
    assert done["best"] == {"job_id": "j2", "member": 2, "metric": "val_accuracy", "value": 0.7}
    assert sweep(("failed", True), ("cancelled", True))["best"] is None


def test_a_database_of_an_earlier_version_gains_the_members_grid_values_and_sweep_records(tmp_path):
    """A database made before the store kept a sweep member's grid values, a search's trial,
    when a job joined a running stack and a record of each sweep: the columns and the table
    are added at start, its sweeps
    list in their order with no grid values, new ones with theirs."""
    import sqlite3

    from numbamlp.service.store import SCHEMA, Store

    old = SCHEMA.replace("owner TEXT,", "owner TEXT")
    old = re.sub(r"\n    grid TEXT,.*\n    trial TEXT,.*\n    joined_at_epoch INTEGER .*\n", "\n", old)
    old = re.sub(r"CREATE TABLE IF NOT EXISTS sweeps \(.*?\n\);\n", "", old, flags=re.S)
    assert "grid" not in old and "trial" not in old and "joined" not in old and "sweeps" not in old
    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        db.executescript(old)
        for job_id, sweep_id in (("a", "s0"), ("b", "s1"), ("c", "s0"), ("d", None)):
            db.execute("INSERT INTO jobs (id, status, config, sweep_id, created_at, owner) VALUES (?, 'queued', '{}', "
                       "?, 1.0, 'o')", (job_id, sweep_id))
    store = Store(tmp_path / "old.sqlite")
    try:
        store.add_jobs([{}, {}], sweep_id="s2", owner="o", grids=[{"seed": 0}, {"seed": 1}])
        assert [record["id"] for record in store.sweeps()] == ["s2", "s1", "s0"]
        assert [job["grid"] for job in store.sweep_jobs("s2")] == [{"seed": 0}, {"seed": 1}]
        assert store.sweep_jobs("s1")[0]["grid"] is None and store.sweep_jobs("nope") == []
        assert [record["id"] for record in store.sweeps(before_seq=store.sweeps()[1]["seq"])] == ["s0"]
        assert store.sweep("s0")["owner"] == "o" and store.sweep("s0")["search"] is None
        assert store.job("a")["trial"] is None and store.job("a")["joined_at_epoch"] is None
    finally:
        store.close()
    # a start cut off after it made the sweeps table, before it wrote the records: the next adds them
    sweeps_table = re.search(r"CREATE TABLE IF NOT EXISTS sweeps \(.*?\n\);\n", SCHEMA, flags=re.S).group(0)
    with sqlite3.connect(tmp_path / "cut.sqlite") as db:
        db.executescript(old + sweeps_table)
        db.execute("INSERT INTO jobs (id, status, config, sweep_id, created_at, owner) VALUES ('a', 'queued', '{}', "
                   "'s0', 1.0, 'o')")
    store = Store(tmp_path / "cut.sqlite")
    try:
        assert [record["id"] for record in store.sweeps()] == ["s0"]
    finally:
        store.close()


def test_a_job_early_stops_by_the_metric_its_config_names(server):
    """Issue 27: a job's early_stopping.metric (`jobs submit --metric`) picks its best epoch;
    its scores carry the classification metrics; a metric its data cannot have is a 422."""
    job = server.client.wait(server.client.submit(
        {"epochs": 6, "data": {"train": "builtin:breast_cancer"}, "model": {"hidden": [8]},
         "early_stopping": {"patience": 2, "metric": "val_roc_auc"}})["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert {"val_roc_auc", "test_roc_auc", "test_average_precision", "test_f1", "test_log_loss",
            "val_balanced_accuracy"} <= set(job["scores"])
    aucs = [metrics["val_roc_auc"] for epoch, metrics in server.client.events(job["id"]) if epoch != "end"]
    assert job["scores"]["val_roc_auc"] == max(aucs)
    with pytest.raises(ServiceError) as error:
        server.client.submit({**IRIS, "epochs": 1, "early_stopping": {"patience": 2, "metric": "val_f1"}})
    assert error.value.status == 422 and "early_stopping.metric val_f1 does not apply to 3 classes" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.submit({**IRIS, "early_stopping": {"metric": "val_r2"}})
    assert error.value.status == 422 and "metric val_r2 does not apply to classification" in str(error.value)


def test_a_regression_job_trains_scores_and_predicts_values(server):
    job = server.client.wait(server.client.submit(
        {"task": "regression", "epochs": 5, "data": {"train": "builtin:diabetes"}, "optimizer": {"name": "adam"},
         "model": {"hidden": [16]}})["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["test_accuracy"] is None and {"test_r2", "test_mse", "test_mae", "val_r2"} <= set(job["scores"])
    from sklearn.datasets import load_diabetes

    X = load_diabetes().data[:3]
    served = server.client.predict(job["id"], X)
    from numbamlp.io import load_model

    local = load_model(server.data_dir / "jobs" / job["id"] / "model.safetensors").predict(X)
    assert served["labels"] is None
    np.testing.assert_allclose(served["values"], local, rtol=1e-6)
    with pytest.raises(ServiceError) as error:
        server.client.predict(job["id"], X, proba=True)
    assert error.value.status == 422


def test_the_jobs_command_submits_lists_follows_and_downloads(server, tmp_path):
    env = {**os.environ, "NUMBAMLP_URL": server.url, "NUMBAMLP_TOKEN": server.token}

    def jobs(*args):
        return subprocess.run([*NUMBAMLP, "jobs", *args], capture_output=True, text=True, env=env, timeout=120)

    submitted = jobs("submit", "--data", "builtin:iris", "--epochs", "3", "--hidden", "8")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    logs = jobs("logs", job_id)
    assert logs.returncode == 0 and logs.stdout.splitlines()[0].startswith("epoch 1/3")
    assert logs.stdout.splitlines()[-1].startswith("succeeded  test accuracy")
    assert job_id in jobs("list").stdout
    assert json.loads(jobs("show", job_id).stdout)["status"] == "succeeded"
    assert jobs("download", job_id, "--out", str(tmp_path / "m.safetensors")).returncode == 0
    bad = jobs("submit", "--lr", "-1")
    assert bad.returncode == 2 and "--lr (optimizer.lr)" in bad.stderr
    # a local file is uploaded first (the service reads builtin and uploaded data only), with
    # its label column where --label-column says; a folder cannot be sent
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    pq.write_table(pa.table({"species": y, **{f"f{j}": X[:, j] for j in range(4)}}), tmp_path / "iris.parquet")
    local = jobs("submit", "--data", str(tmp_path / "iris.parquet"), "--label-column", "species", "--epochs", "3")
    assert local.returncode == 0, local.stderr
    shown = json.loads(jobs("show", local.stdout.strip()).stdout)
    assert shown["config"]["data"]["train"].startswith("dataset:")
    assert server.client.wait(local.stdout.strip())["status"] == "succeeded"
    folder = jobs("submit", "--data", str(tmp_path))
    assert folder.returncode == 2 and "a folder cannot be sent to the service" in folder.stderr
    wrong = subprocess.run([*NUMBAMLP, "jobs", "list"], capture_output=True, text=True, timeout=60,
                           env={**env, "NUMBAMLP_TOKEN": "wrong"})
    assert wrong.returncode == 2 and "401" in wrong.stderr and len(wrong.stderr.splitlines()) == 1


def test_the_openapi_document_matches_its_snapshot(tmp_path):
    """The API's shape cannot drift silently: regenerate the snapshot on purpose with
    NUMBAMLP_UPDATE_SNAPSHOT=1 and review the diff."""
    from numbamlp.service.app import create_app

    document = create_app(tmp_path, "t").openapi()
    document["info"]["version"] = "any"
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    if os.environ.get("NUMBAMLP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


# ---------------------------------------------------------------- durability
def test_kill_9_then_restart_loses_nothing_and_reruns_to_the_same_results(tmp_path, start_server):
    server = start_server("--batch-window", "0.2")
    ids = [server.client.submit({**SLOW, "epochs": 20, "seed": s})["id"] for s in range(2)]
    ids += [server.client.submit({**IRIS, "epochs": 3, "batch_size": 9, "seed": s})["id"] for s in range(3)]
    wait_for(lambda: any(server.client.job(i)["status"] == "running" for i in ids), what="a running job")
    server.stop(signal.SIGKILL)
    server.start()
    listed = [job["id"] for job in server.client.all_jobs()]
    assert sorted(listed) == sorted(ids)  # each exactly once
    jobs = [server.client.wait(i, timeout=240) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 5
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run

    alone = train_run(TrainConfig.model_validate(jobs[0]["config"]), out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(server.data_dir / "jobs" / ids[0] / "model.safetensors").flat_params,
                                  load_model(alone["model_path"]).flat_params)
    assert jobs[0]["test_accuracy"] == alone["test_accuracy"]
    server.stop()


def test_sigterm_checkpoints_the_running_stack_and_a_restart_continues_it_bit_for_bit(tmp_path, start_server):
    server = start_server("--batch-window", "0.2")
    ids = [server.client.submit({**SLOW, "epochs": 60, "seed": s})["id"] for s in range(2)]
    next(server.client.events(ids[0]))  # an epoch has ended
    # a graceful exit (uvicorn re-raises the signal once it has shut down: -15 from it)
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert any((server.data_dir / "stacks").iterdir())  # the checkpoint
    server.start()
    jobs = [server.client.wait(i, timeout=240) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert jobs[0]["stack"]["id"] == jobs[1]["stack"]["id"]  # the same stack went on
    epochs = [e for e, _ in server.client.events(ids[0])][:-1]
    assert epochs == list(range(1, 61))
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run

    alone = train_run(TrainConfig.model_validate(jobs[1]["config"]), out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(server.data_dir / "jobs" / ids[1] / "model.safetensors").flat_params,
                                  load_model(alone["model_path"]).flat_params)
    server.stop()


def test_a_job_queued_alone_takes_the_slot_a_stack_mate_left_and_trains_as_alone(tmp_path, start_server):
    """Issue 28: a job that fits a running stack takes a slot another job left (at the next
    epoch boundary) rather than wait for the stack's end; its record says when it joined;
    a SIGTERM checkpoints which job sits in which slot, and a restart goes on with them."""
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run

    server = start_server("--batch-window", "0.3")  # (one training slot: the joiner cannot start a stack of its own)
    short, long = [server.client.submit({**SLOW, "epochs": epochs, "seed": s})["id"] for s, epochs in ((0, 15), (1, 80))]
    wait_for(lambda: all(server.client.job(i)["status"] == "running" for i in (short, long)), what="the stack")
    joiner = server.client.submit({**SLOW, "epochs": 30, "seed": 2})["id"]
    wait_for(lambda: server.client.job(joiner)["status"] == "running", timeout=120, what="the joiner")
    stack = server.client.job(long)["stack"]
    assert server.client.job(short)["status"] == "succeeded"  # (it ended, and its job with it)
    assert server.client.job(joiner)["stack"] == {**stack, "joined_at_epoch": 15}
    assert stack["joined_at_epoch"] is None and stack["size"] == 2
    next(server.client.events(joiner))  # (it trains)
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    kept = json.loads((server.data_dir / "stacks" / stack["id"] / "service.json").read_text())
    assert kept["slots"] == [joiner, long] and kept["epochs"] >= 16
    server.start()
    jobs = {i: server.client.wait(i, timeout=240) for i in (long, joiner)}
    assert [job["status"] for job in jobs.values()] == ["succeeded", "succeeded"]
    assert [e for e, _ in server.client.events(joiner)][:-1] == list(range(1, 31))
    for job_id, job in jobs.items():
        assert job["stack"]["id"] == stack["id"]
        alone = train_run(TrainConfig.model_validate(job["config"]), out=tmp_path / job_id)
        np.testing.assert_array_equal(load_model(server.data_dir / "jobs" / job_id / "model.safetensors").flat_params,
                                      load_model(alone["model_path"]).flat_params)
    server.stop()


def test_a_server_on_a_dask_local_cluster_trains_stacks_there(tmp_path, start_server):
    pytest.importorskip("distributed")
    server = start_server("--workers", "2", "--batch-window", "0.3")
    try:
        ids = [server.client.submit({**IRIS, "epochs": 4, "seed": s})["id"] for s in range(3)]
        jobs = [server.client.wait(i, timeout=120) for i in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * 3
        assert {j["stack"]["size"] for j in jobs} == {3}
        assert [e for e, _ in server.client.events(ids[0])] == [1, 2, 3, 4, "end"]
        from numbamlp.config import TrainConfig
        from numbamlp.run import train_run

        alone = train_run(TrainConfig.model_validate(jobs[2]["config"]), out=tmp_path / "alone")
        assert jobs[2]["test_accuracy"] == alone["test_accuracy"]
        # live: epochs stream while the stack runs on a worker, and a cancel stops one member
        long_jobs = [server.client.submit({**SLOW, "seed": s})["id"] for s in (0, 1)]
        epoch, _ = next(server.client.events(long_jobs[0]))
        assert epoch == 1 and server.client.job(long_jobs[0])["status"] == "running"
        asked = time.monotonic()
        server.client.cancel(long_jobs[0])
        wait_for(lambda: server.client.job(long_jobs[0])["status"] == "cancelled", timeout=3, what="cancelled")
        assert time.monotonic() - asked < 3 and server.client.job(long_jobs[1])["status"] == "running"
        server.client.cancel(long_jobs[1])
        wait_for(lambda: server.client.job(long_jobs[1])["status"] == "cancelled", timeout=5, what="the mate")
    finally:
        server.stop()


# ---------------------------------------------------------------- the dashboard, in a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
def test_the_dashboard_submits_a_job_draws_its_curve_and_cancels_one(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(server.url + "/")
        page.fill("#token", server.token)
        page.click("#save-token")
        page.reload()  # the token was kept in the browser's storage
        assert page.input_value("#token") == server.token
        page.click("a[data-nav=submit]")  # (the Submit page's config as JSON, then back to the list)
        page.check("#json-mode")
        page.fill("#config", json.dumps({**SLOW, "seed": 11}))
        page.click("#submit")
        page.locator("#submitted a").wait_for(timeout=30_000)
        page.click("a[data-nav=jobs]")
        row = page.locator("#jobs tr[data-status=running]").first
        row.wait_for(timeout=30_000)
        job_id = row.locator(".id").inner_text()
        assert row.locator(".owner").inner_text() == "admin"  # (the token file's token)
        page.wait_for_function("() => document.getElementById('who').textContent === 'signed in as admin (admin)'")
        assert server.client.job(job_id)["config"]["seed"] == 11

        def points():
            text = page.locator(f"#job-{job_id} polyline").get_attribute("points") or ""
            return len(text.split())

        wait_for(lambda: points() >= 2, timeout=30, what="the curve")
        grown = points()
        wait_for(lambda: points() > grown, timeout=30, what="the curve to grow")
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        page.locator(f"#job-{job_id} button.cancel").click()
        wait_for(lambda: server.client.job(job_id)["status"] == "cancelled", timeout=5, what="the cancel")
        page.locator(f"#job-{job_id}[data-status=cancelled]").wait_for(timeout=30_000)
        page.click("a[data-nav=submit]")  # (the JSON is still the chosen way)
        page.fill("#config", "{not json")
        page.click("#submit")
        assert "not JSON" in page.inner_text("#error")
        page.fill("#config", json.dumps({"optimizer": {"lr": -1}}))
        page.click("#submit")
        page.wait_for_function("() => document.getElementById('error').textContent.includes('optimizer.lr')")
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
def test_the_dashboard_stays_live_with_many_running_jobs_and_says_why_one_failed(server, tmp_path):
    """A stream per running job took all 6 of the browser's connections to the host: with 6
    or more running, the list froze and Cancel never reached the server.  A failed job's
    reason was not shown at all."""
    playwright = pytest.importorskip("playwright.sync_api")
    failed = server.client.wait(server.client.submit({**IRIS, "epochs": 1, "optimizer": {"lr": 1e30}})["id"],
                                timeout=120)
    ids = [server.client.submit({**SLOW, "seed": 100 + k})["id"] for k in range(8)]  # one stack of 8
    wait_for(lambda: all(server.client.job(i)["status"] == "running" for i in ids), timeout=60, what="8 running")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(server.url + "/")
            page.fill("#token", server.token)
            page.press("#token", "Enter")  # (Enter in the token field uses it)
            page.locator(f"#job-{ids[-1]} button.cancel").wait_for(timeout=30_000)
            reason = page.locator(f"#job-{failed['id']} .reason").inner_text(timeout=30_000)
            assert "training diverged" in reason
            page.wait_for_timeout(3000)  # (the streams of the running jobs open)
            page.locator(f"#job-{ids[-1]} button.cancel").click()
            wait_for(lambda: server.client.job(ids[-1])["status"] == "cancelled", timeout=10, what="the cancel")
            page.locator(f"#job-{ids[-1]}[data-status=cancelled]").wait_for(timeout=30_000)  # the list refreshed
            browser.close()
    finally:
        for job_id in ids:
            server.client.cancel(job_id)


def test_sigterm_stops_the_server_promptly_while_a_client_follows_a_job(tmp_path, start_server):
    """An open event stream held uvicorn's graceful shutdown for its 30 s, and the stacks
    trained on meanwhile: the streams end when the server is asked to stop."""
    own = start_server()
    job = own.client.submit({**SLOW, "epochs": 4000})
    wait_for(lambda: own.client.job(job["id"])["status"] == "running", timeout=60, what="the job running")
    connection = http.client.HTTPConnection("127.0.0.1", own.port, timeout=60)
    connection.request("GET", f"/v1/jobs/{job['id']}/events", headers={"Authorization": f"Bearer {own.token}"})
    response = connection.getresponse()
    assert response.status == 200 and response.read(1)  # (the stream is open)
    start = time.monotonic()
    own.stop()
    assert time.monotonic() - start < 15  # (31-32 s before)
    connection.close()


def test_a_label_column_for_builtin_data_is_422_at_submit(server):
    with pytest.raises(ServiceError) as error:
        server.client.submit({**IRIS, "epochs": 1, "data": {"train": "builtin:iris", "label_column": "species"}})
    assert error.value.status == 422 and "data.label_column: label_column names a column of a CSV" in str(error.value)
    with pytest.raises(ServiceError) as error:
        server.client.submit({"epochs": "ten"})
    assert "invalid configuration: epochs must be a number" in str(error.value)  # (no empty field name)


def test_serve_on_a_port_in_use_says_so_and_leaves_no_data_behind(tmp_path):
    """uvicorn's ERROR line and rc 3 came after the data directory and the token were made."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([*NUMBAMLP, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == f"Error: cannot serve on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "d").exists()


def test_a_client_with_an_address_that_is_no_url_says_so():
    with pytest.raises(ValueError, match="'notaurl' is not an http:// or https:// address"):
        Client("notaurl")


def test_serve_without_the_extra_names_the_install(tmp_path):
    """A Python where FastAPI cannot be imported (blocked by a meta-path finder)."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('fastapi', 'uvicorn', 'starlette'):\n"
            "            raise ImportError('blocked', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from numbamlp.cli.main import command_line\n"
            f"sys.argv = ['numbamlp', 'serve', '--data-dir', {str(tmp_path / 'd')!r}]\n"
            "command_line()\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == "Error: the service needs the serve extra: pip install 'numbamlp[serve]'"


# ---------------------------------------------------------------- what a team found (the third look, 2026-11-30)
def test_a_body_that_is_not_json_is_422_not_500(server, iris_job):
    """curl -d sends form encoding: FastAPI handed the raw bytes to the body check, which
    failed with a TypeError (500)."""
    authorised = {"Authorization": f"Bearer {server.token}"}
    for path, content_type in (("/v1/jobs", "application/x-www-form-urlencoded"), ("/v1/sweeps", "text/plain"),
                               (f"/v1/jobs/{iris_job['id']}/predict", None)):
        headers = {**authorised, **({"Content-Type": content_type} if content_type else {})}
        status, _, body = raw(server, "POST", path, b'{"config": {"epochs": 1}}', headers)
        assert status == 422, (path, body)
        assert "the body must be a JSON object, sent with Content-Type: application/json" in json.loads(body)["detail"]


def test_predict_of_values_the_models_dtype_cannot_hold_is_422(server, iris_job):
    with pytest.raises(ServiceError) as error:
        server.client.predict(iris_job["id"], [[1.0, 2.0, 3.0, 4e38]])
    assert error.value.status == 422 and "float32" in str(error.value)


def test_head_is_answered_wherever_get_is(server, iris_job):
    authorised = {"Authorization": f"Bearer {server.token}"}
    for path, headers in (("/healthz", {}), ("/", {}), (f"/v1/jobs/{iris_job['id']}/model", authorised),
                          (f"/v1/jobs/{iris_job['id']}/events", authorised)):
        status, got, body = raw(server, "HEAD", path, headers=headers)
        assert status == 200 and body == b"", path
        if "model" in path:
            assert int(got["content-length"]) == len(raw(server, "GET", path, headers=headers)[2])
    assert raw(server, "HEAD", "/v1/jobs")[0] == 401


def test_held_out_data_unlike_the_training_data_is_422_at_submit(server):
    """train refuses test rows with other features; the service took them (201) and the job failed."""
    with pytest.raises(ServiceError) as error:
        server.client.submit({**IRIS, "epochs": 1, "data": {"train": "builtin:iris", "test": "builtin:wine"}})
    assert error.value.status == 422 and "data.test: builtin:wine has 13 features" in str(error.value)


def test_the_client_quotes_job_ids_and_refuses_an_empty_one(server, iris_job):
    """An empty id (an unset shell variable) showed the list of jobs as if it were the job."""
    with pytest.raises(ValueError, match="a job id is a non-empty string"):
        server.client.job("")
    with pytest.raises(ServiceError) as error:
        server.client.job(iris_job["id"] + "?x")
    assert error.value.status == 404
    run = subprocess.run([*NUMBAMLP, "jobs", "--url", server.url, "show", ""], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "NUMBAMLP_TOKEN": server.token})
    assert run.returncode == 2 and "a job id is a non-empty string" in run.stderr


def test_a_second_server_on_one_data_directory_is_refused(tmp_path, start_server):
    """It requeued the first server's running jobs as a crashed server's and trained them again."""
    own = start_server()
    try:
        run = subprocess.run([*NUMBAMLP, "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "is in use: another numbamlp serve is running on it" in run.stderr, run.stderr
        assert own.client.health()
    finally:
        own.stop()


def test_following_a_job_says_so_when_the_server_stops(tmp_path, start_server):
    """Client.events (and `jobs logs`) ended silently, exit 0, when the server closed the stream."""
    import threading

    own = start_server()
    job = own.client.submit({**SLOW, "epochs": 4000})
    wait_for(lambda: own.client.job(job["id"])["status"] == "running", timeout=60, what="the job running")
    outcome = {}

    def follow():
        try:
            outcome["events"] = list(own.client.events(job["id"]))
        except ServiceError as err:
            outcome["error"] = str(err)

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(1.0)
    own.stop()
    follower.join(timeout=60)
    assert "closed before the job ended" in outcome.get("error", ""), outcome


def test_a_stack_with_a_cancelled_member_continues_after_sigterm(tmp_path, start_server):
    """A restart counted only the running jobs against the checkpoint's members: the stack's
    survivor trained again from epoch 0 and the checkpoint stayed behind."""
    server = start_server("--batch-window", "0.2")
    ids = [server.client.submit({**SLOW, "epochs": 40, "seed": s})["id"] for s in range(2)]
    next(server.client.events(ids[0]))  # an epoch has ended
    server.client.cancel(ids[1])
    wait_for(lambda: server.client.job(ids[1])["status"] == "cancelled", timeout=60, what="the cancel")
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    server.start()
    job = server.client.wait(ids[0], timeout=240)
    assert job["status"] == "succeeded" and server.client.job(ids[1])["status"] == "cancelled"
    from numbamlp.service.store import Store

    history = [h["status"] for h in Store(server.data_dir / "numbamlp.sqlite").status_history(ids[0])]
    assert history == ["queued", "running", "succeeded"], history  # (not queued again: continued)
    assert [e for e, _ in server.client.events(ids[0])][:-1] == list(range(1, 41))
    assert not list((server.data_dir / "stacks").iterdir())
    server.stop()


def test_the_documented_errors_are_the_ones_sent(server):
    """OpenAPI said a 422 is a list of validation errors; every error is {"detail": "one line"},
    and 401/404/413 were not documented at all."""
    document = json.loads(raw(server, "GET", "/openapi.json")[2])
    submit = document["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"401", "413", "422"} <= set(submit)
    assert submit["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "404" in document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    status, detail = post_json(server, "/v1/jobs", '{"config": {"epochs": "ten"}}')
    assert status == 422 and isinstance(detail, str)
    status, _, body = raw(server, "GET", "/v1/jobs/nope", headers={"Authorization": f"Bearer {server.token}"})
    assert status == 404 and isinstance(json.loads(body)["detail"], str)


def test_head_on_a_quiet_event_stream_answers_at_once(server):
    """HEAD on a queued job's events stayed open until its first epoch (and held the
    connection): the answer ends with the headers."""
    job = server.client.submit({**IRIS, "epochs": 1, "data": {"train": "builtin:iris", "val_fraction": 0.5}})
    start = time.monotonic()
    status, _, body = raw(server, "HEAD", f"/v1/jobs/{job['id']}/events",
                          headers={"Authorization": f"Bearer {server.token}"})
    assert status == 200 and body == b"" and time.monotonic() - start < 2


def test_following_a_job_on_a_server_that_is_not_there_says_cannot_reach():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ServiceError, match="cannot reach"):
        list(Client(f"http://127.0.0.1:{port}", "t").events("abc"))


# ---------------------------------------------------------------- tokens, people and files
def serve_once(data_dir, *flags, preexec_fn=None) -> subprocess.CompletedProcess:
    """`numbamlp serve` on data_dir that is expected to refuse to start (it is killed after 60 s)."""
    return subprocess.run([*NUMBAMLP, "serve", "--port", "0", "--data-dir", str(data_dir), *flags],
                          capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)


@pytest.mark.parametrize("content, mode, says", [
    ("", 0o600, "is empty: delete it and start again"),
    ("  \n\n", 0o600, "is empty: delete it and start again"),
    ("short", 0o600, "is not a token"),
    ("x" * 43 + "\n", 0o644, "is readable by others (mode 0644): run chmod 600"),
])
def test_serve_refuses_a_token_file_it_cannot_trust(tmp_path, content, mode, says):
    """An empty token file (a first start that ran out of disk between creating and writing
    it) let `Authorization: Bearer` with nothing after it in."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "token").write_text(content)
    (data / "token").chmod(mode)
    run = serve_once(data)
    assert run.returncode == 2 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert str(data / "token") in run.stderr


def test_a_token_that_cannot_be_written_leaves_no_file_and_the_next_start_makes_one(tmp_path, start_server):
    """The token file was created, then written: a full disk in between left it empty."""
    import resource

    def tiny_files():  # (every write past 10 bytes fails, as on a full disk)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))

    run = serve_once(tmp_path / "data", preexec_fn=tiny_files)
    assert run.returncode == 2 and "cannot write" in run.stderr and "token" in run.stderr, run.stderr
    assert not (tmp_path / "data" / "token").exists()
    server = start_server()
    assert len(server.token) == 43
    assert raw(server, "GET", "/v1/jobs", headers={"Authorization": "Bearer"})[0] == 401
    assert raw(server, "GET", "/v1/jobs", headers={"Authorization": f"Bearer {server.token}"})[0] == 200


def token_command(data_dir, *words) -> subprocess.CompletedProcess:
    return subprocess.run([*NUMBAMLP, "serve", "token", *words, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def test_each_person_has_a_token_and_a_role_and_jobs_record_their_owner(server):
    tokens = {}
    for name, role in (("alice", "submit"), ("bob", "read"), ("carol", "submit")):
        made = token_command(server.data_dir, "create", name, "--role", role)
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    assert token_command(server.data_dir, "create", "alice").returncode == 2  # (one token a name)
    alice, bob, carol = (Client(server.url, tokens[n]) for n in ("alice", "bob", "carol"))
    assert alice.me() == {"name": "alice", "role": "submit"}
    job = alice.submit({**IRIS, "epochs": 4000})
    assert job["owner"] == "alice"
    with pytest.raises(ServiceError) as refused:
        bob.submit({**IRIS, "epochs": 1})
    assert refused.value.status == 403 and "role read" in str(refused.value)
    assert bob.job(job["id"])["owner"] == "alice"  # (read may read)
    for other in (bob, carol):
        with pytest.raises(ServiceError) as refused:
            other.cancel(job["id"])
        assert refused.value.status == 403
    assert [j["id"] for j in bob.jobs(owner="alice")["jobs"]] == [job["id"]]
    assert bob.jobs(owner="carol")["jobs"] == []
    # idempotency keys are each person's own
    first = alice.submit({**IRIS, "epochs": 4000}, idempotency_key="k1")
    assert carol.submit({**IRIS, "epochs": 4000}, idempotency_key="k1")["id"] != first["id"]
    assert alice.submit({**IRIS, "epochs": 4000}, idempotency_key="k1")["id"] == first["id"]
    assert server.client.cancel(first["id"])["status"] in ("cancelled", "running")  # (admin: anyone's)
    assert alice.cancel(job["id"])["owner"] == "alice"
    listed = token_command(server.data_dir, "list")
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["admin", "admin"], ["alice", "submit"], ["bob", "read"], ["carol", "submit"]]
    database = b"".join(path.read_bytes() for path in server.data_dir.glob("numbamlp.sqlite*"))
    assert not any(token.encode() in database for token in (*tokens.values(), server.token))  # (hashes only)
    assert token_command(server.data_dir, "revoke", "carol").returncode == 0
    with pytest.raises(ServiceError) as refused:
        carol.jobs()
    assert refused.value.status == 401
    assert token_command(server.data_dir, "revoke", "admin").returncode == 2  # (the token file's)
    assert token_command(server.data_dir, "create", "no spaces").returncode == 2
    server.client.cancel(first["id"])


def test_the_data_directory_and_its_files_are_the_servers_alone(tmp_path, start_server):
    """The data directory and jobs/ were 0755, the database, models and uploads 0644."""
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data").chmod(0o755)
    server = start_server("--batch-window", "0")
    dataset = tmp_path / "tiny.csv"
    dataset.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    uploaded = server.client.upload_dataset(dataset)
    job = server.client.wait(server.client.submit({"data": {"train": f"dataset:{uploaded['id']}"},
                                                  "epochs": 1, "model": {"hidden": [4]}})["id"], timeout=120)
    assert job["status"] == "succeeded"
    paths = [server.data_dir, *server.data_dir.rglob("*")]
    assert any(p.name == "model.safetensors" for p in paths) and any(p.suffix == ".csv" for p in paths)
    modes = {str(p.relative_to(server.data_dir.parent)): p.stat().st_mode & 0o777 for p in paths}
    assert {name: mode for name, mode in modes.items()
            if mode != (0o700 if (server.data_dir.parent / name).is_dir() else 0o600)} == {}


# ---------------------------------------------------------------- limits
def test_jobs_past_the_servers_limits_are_422_naming_the_limit(server):
    """hidden [60000, 60000] and batch_size 1e12 reached the allocator; epochs 1e9 held the
    only training slot."""
    for config, says in (({"epochs": 10**9}, "epochs: 1000000000 is more than this server's limit of 10000 "
                                            "(--max-epochs)"),
                         ({"batch_size": 10**12}, "batch_size: 1000000000000 is more than this server's limit of "
                                                  "65536 (--max-batch-size)"),
                         ({"model": {"hidden": [60000, 60000]}}, "parameters is more than this server's limit of "
                                                                 "50,000,000 (--max-params)")):
        with pytest.raises(ServiceError) as refused:
            server.client.submit({**IRIS, **config})
        assert refused.value.status == 422 and says in str(refused.value), str(refused.value)
        with pytest.raises(ServiceError) as refused:  # (and each member of a sweep)
            server.client.sweep({**IRIS, **config}, {"seed": [0, 1]})
        assert refused.value.status == 422 and says in str(refused.value)


def test_an_upload_too_large_once_decompressed_is_refused_before_it_is_inflated(tmp_path, start_server):
    """A 1.56 MB .npz of 200,000 × 2,000 zeros took 15-19 s and ~4 GB before it was accepted."""
    import tracemalloc  # noqa: F401 (the server's memory is measured from outside: /proc)

    server = start_server("--max-dataset-mb", "100")
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, X=np.zeros((20_000, 1_000), np.float32), y=np.zeros(20_000, np.int64))
    assert bomb.stat().st_size < 1 << 20
    start = time.monotonic()
    with pytest.raises(ServiceError) as refused:
        server.client.upload_dataset(bomb)
    assert refused.value.status == 422 and "more than this server's limit of 100 MB (--max-dataset-mb)" in str(
        refused.value), str(refused.value)
    assert time.monotonic() - start < 10
    peak_kb = int(next(line for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM")).split()[1])
    assert peak_kb < 600_000, peak_kb  # (inflated as float64 it would be 160 MB, and ~4× that while loading)
    assert not list((server.data_dir / "datasets").iterdir())
    # a member the loader does not read turned the measurement off; so did a Parquet text
    # column whose dictionary-encoded pages are tiny and whose decoded values are not
    import zipfile

    with zipfile.ZipFile(bomb, "a") as archive:
        archive.writestr("README.txt", "not an array")
    with pytest.raises(ServiceError) as refused:
        server.client.upload_dataset(bomb)
    assert refused.value.status == 422 and "(--max-dataset-mb)" in str(refused.value), str(refused.value)
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"x": np.zeros(2_500), "label": ["y" * 50_000] * 2_500}), text)
    assert text.stat().st_size < 1 << 20
    with pytest.raises(ServiceError) as refused:
        server.client.upload_dataset(text)
    assert refused.value.status == 422 and "more than 1" in str(refused.value) and "(--max-dataset-mb)" in str(
        refused.value), str(refused.value)
    # a compressed CSV is read (and so measured) decompressed: a gzip bomb is stopped at the limit
    import gzip

    rows = "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(300))
    small = tmp_path / "small.csv.gz"
    with gzip.open(small, "wt") as file:
        file.write("a,b,label\n" + rows)
    uploaded = server.client.upload_dataset(small)
    assert uploaded["format"] == "csv" and uploaded["rows"] == 300 and uploaded["features"] == 2
    bomb_csv = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb_csv, "wt", compresslevel=9) as file:
        file.write("a,b,label\n")
        for _ in range(110):
            file.write("0,0,0\n" * ((1 << 20) // 6))
    assert bomb_csv.stat().st_size < 1 << 20
    with pytest.raises(ServiceError) as refused:
        server.client.upload_dataset(bomb_csv)
    assert refused.value.status == 422 and "the uploaded .csv.gz holds more than" in str(refused.value), str(
        refused.value)


def test_a_job_past_the_wall_time_fails_saying_so_and_frees_its_slot(tmp_path, start_server):
    server = start_server("--batch-window", "0", "--max-job-minutes", "0.05")  # 3 s
    long = server.client.submit({**SLOW, "epochs": 10_000})
    job = server.client.wait(long["id"], timeout=120)
    assert job["status"] == "failed" and "limit of 0.05 minutes a job (--max-job-minutes)" in job["error"]
    after = server.client.wait(server.client.submit({**IRIS, "epochs": 2})["id"], timeout=120)
    assert after["status"] == "succeeded"


def test_a_job_that_joined_a_running_stack_has_a_wall_time_of_its_own(tmp_path, start_server):
    server = start_server("--batch-window", "0.3", "--max-job-minutes", "0.05")  # 3 s
    long, short = [server.client.submit({**SLOW, "epochs": epochs, "seed": s})["id"]
                   for s, epochs in ((0, 10_000), (1, 5))]
    wait_for(lambda: server.client.job(long)["status"] == "running", what="the stack")
    joiner = server.client.submit({**SLOW, "epochs": 10_000, "seed": 2})["id"]
    jobs = {i: server.client.wait(i, timeout=120) for i in (long, short, joiner)}
    assert [jobs[i]["status"] for i in (long, short, joiner)] == ["failed", "succeeded", "failed"]
    assert jobs[joiner]["stack"]["joined_at_epoch"] == 5
    assert jobs[joiner]["finished_at"] - jobs[joiner]["started_at"] >= 3  # (not the stack's 3 s, its own)
    assert jobs[joiner]["finished_at"] > jobs[long]["finished_at"]
    assert "limit of 0.05 minutes a job (--max-job-minutes)" in jobs[joiner]["error"]


def test_a_fast_jobs_events_are_coalesced_and_its_last_epoch_is_always_stored(tmp_path, start_server):
    """epochs 1e9 wrote 15,000-70,000 event rows in ~30 s: storage grew with the epoch rate."""
    from numbamlp.service.store import Store

    server = start_server("--batch-window", "0")
    fast = {"data": {"train": "builtin:iris"}, "model": {"hidden": [2]}, "batch_size": 150, "epochs": 3000}
    job = server.client.wait(server.client.submit(fast)["id"], timeout=240)
    assert job["status"] == "succeeded"
    epochs = [epoch for epoch, _ in Store(server.data_dir / "numbamlp.sqlite").events(job["id"])]
    seconds = job["finished_at"] - job["started_at"]
    assert epochs[:100] == list(range(1, 101)) and epochs[-1] == 3000
    assert len(epochs) <= 100 + 10 * seconds + 2, (len(epochs), seconds)
    assert epochs == sorted(set(epochs))


# ---------------------------------------------------------------- slow and many connections
def test_slow_headers_are_cut_off_and_connections_are_capped(tmp_path, start_server):
    """3,000 connections sending a header line every 5 s were all held, and past the
    open-file limit /healthz stopped answering and the log filled with "Too many open files"."""
    server = start_server("--header-timeout-s", "1", "--body-timeout-s", "2", "--max-connections", "20")
    slow = []
    for _ in range(40):  # twice the cap, each sending half a request
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.append(connection)
    refused = 0
    for connection in slow[20:]:  # (past the cap: a 503 at once, then closed)
        answer = connection.recv(200)
        refused += answer.startswith(b"HTTP/1.1 503")
    assert refused == 20
    time.sleep(1.5)
    for connection in slow[:20]:  # the headers never came: closed after 1 s
        assert connection.recv(100) == b""
    assert raw(server, "GET", "/healthz")[0] == 200
    # a body that stops half-way is cut off too; a whole one is served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
                           "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        start = time.monotonic()
        assert connection.recv(100) == b"" and time.monotonic() - start < 5
    for connection in slow:
        connection.close()
    log = server.log_path.read_text()
    assert "Too many open files" not in log and len(log) < 20_000, log[-2000:]


# ---------------------------------------------------------------- faults
def test_a_last_event_id_of_any_length_is_422(server, iris_job):
    for digits in (4300, 4301, 100_000):
        status, _, body = raw(server, "GET", f"/v1/jobs/{iris_job['id']}/events",
                              headers={"Authorization": f"Bearer {server.token}", "Last-Event-ID": "9" * digits})
        assert status == 422 and len(body) < 300, (digits, status)


def test_the_event_stream_of_a_queued_job_sends_bytes_at_once(tmp_path, start_server):
    """A queued job's stream sent nothing at all: proxies and clients timed out."""
    server = start_server("--batch-window", "3600")  # (nothing leaves the queue)
    job = server.client.submit({**IRIS, "epochs": 1})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(f"GET /v1/jobs/{job['id']}/events HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {server.token}\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or not received.split(b"\r\n\r\n", 1)[1]:
            received += connection.recv(1000)  # (a 5 s timeout fails the test)
    assert received.startswith(b"HTTP/1.1 200") and b": open" in received


def test_errors_quoting_a_huge_input_are_cut_short(server):
    """422 messages repeated the whole offending value (10,000-100,000 characters)."""
    for body in ({"config": {"x" * 100_000: 1}}, {"config": {"data": {"train": "y" * 100_000}}},
                 {"config": {}, "grid": {"z" * 50_000: [1, 2]}}):
        path = "/v1/sweeps" if "grid" in body else "/v1/jobs"
        status, detail = post_json(server, path, json.dumps(body))
        assert status == 422 and len(detail) <= 1000, (status, len(detail))


def test_a_deleted_run_directory_is_a_clear_404_for_model_and_predict_and_said_at_restart(tmp_path, start_server):
    server = start_server("--batch-window", "0")
    job = server.client.wait(server.client.submit({**IRIS, "epochs": 1})["id"], timeout=120)
    shutil.rmtree(server.data_dir / "jobs" / job["id"])
    for call in (lambda: server.client.download(job["id"], tmp_path / "m.safetensors"),
                 lambda: server.client.predict(job["id"], [[1.0, 2.0, 3.0, 4.0]])):
        with pytest.raises(ServiceError) as gone:
            call()
        assert gone.value.status == 404 and "model file is gone" in str(gone.value)
    server.stop()
    server.start()
    assert f"1 succeeded jobs have no model file under {server.data_dir / 'jobs'} (deleted?): {job['id']}" in \
        server.log_path.read_text()


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_a_damaged_database_is_refused_at_start_naming_the_file(tmp_path, start_server, damage):
    """A damaged header exited with "unexpected DatabaseError: file is not a database" (which
    file?); four overwritten pages started, then cut an event stream mid-response."""
    server = start_server("--batch-window", "0")
    ids = [server.client.submit({**IRIS, "epochs": 1, "seed": s})["id"] for s in range(30)]
    [server.client.wait(i, timeout=120) for i in ids]
    server.stop()
    database = server.data_dir / "numbamlp.sqlite"
    with open(database, "r+b") as file:
        if damage == "header":
            file.write(b"garbage" * 10)
        else:
            for page in (2, 3, 4, 5):
                file.seek(4096 * page)
                file.write(os.urandom(4096))
    run = serve_once(server.data_dir)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert f"{database} cannot be used" in run.stderr and "restore it from a backup" in run.stderr


def test_uploads_cut_off_by_a_kill_9_leave_nothing_after_a_restart(tmp_path, start_server):
    server = start_server()
    leftover = server.data_dir / "datasets" / "incoming-abc123"
    leftover.mkdir()
    (leftover / ("0" * 64 + ".csv")).write_text("a,b\n1,2\n")
    server.stop(signal.SIGKILL)
    server.start()
    assert not leftover.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs, which needs root")
def test_a_full_disk_fails_the_jobs_it_cuts_off_answers_507_and_says_so_once(tmp_path, start_server):
    """On a full disk 20 of 40 jobs stayed running until a restart, submits got a bare 500,
    and the log held ~1,000 pairs of "database or disk is full" / "cannot rollback"."""
    import hashlib

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    server = None
    try:
        server = start_server("--batch-window", "0.2", data_dir=disk)
        ids = [server.client.submit({**SLOW, "epochs": 150, "seed": s})["id"] for s in range(4)]
        wait_for(lambda: server.client.job(ids[0])["status"] == "running", what="the stack running")
        filler = disk / "filler"
        with open(filler, "wb") as file:  # every byte the disk has left
            try:
                while True:
                    file.write(bytes(1 << 20))
                    file.flush()
            except OSError:
                pass
        jobs = [server.client.wait(i, timeout=240) for i in ids]
        # each job fails saying why, or (written in room the reserve gave back) succeeded with its model whole
        failed = [j for j in jobs if j["status"] == "failed"]
        assert failed and all("No space left on device" in j["error"] for j in failed), jobs
        for job in jobs:
            if job["status"] != "failed":
                model = (disk / "jobs" / job["id"] / "model.safetensors").read_bytes()
                assert job["status"] == "succeeded" and hashlib.sha256(model).hexdigest() == job["model_sha256"]
        for wait in (0, 3):  # (still full after the scheduler's look for room, every 2 s)
            time.sleep(wait)
            with pytest.raises(ServiceError) as full:
                server.client.submit({**IRIS, "epochs": 1})
            assert full.value.status == 507 and "disk is full" in str(full.value)
        log = server.log_path.read_text()
        assert log.count("the disk is full") <= 3 and "cannot rollback" not in log, log[-3000:]
        filler.unlink()  # room again: work is taken again
        job = wait_for(lambda: _submitted(server, {**IRIS, "epochs": 1}), timeout=30, what="a 201")
        assert server.client.wait(job["id"], timeout=120)["status"] == "succeeded"
    finally:
        if server is not None:
            server.close()  # (before the disk goes)
        subprocess.run(["umount", "-l", str(disk)])


def _submitted(server, config):
    try:
        return server.client.submit(config)
    except ServiceError as err:
        if err.status != 507:
            raise
        return None


def test_no_job_is_ever_succeeded_before_its_model_is_on_disk(tmp_path):
    """Marking a job succeeded before writing its model was caught only by accident: the
    store here checks, at the moment of each transition, that the model is there whole."""
    import hashlib

    from numbamlp.config import TrainConfig
    from numbamlp.service.scheduler import Scheduler
    from numbamlp.service.store import FINAL, Store

    transitions = []

    class Watching(Store):
        def set_status(self, job_ids, status, expected=(), **fields):
            if status == "succeeded":
                for job_id in job_ids:
                    path = tmp_path / "jobs" / job_id / "model.safetensors"
                    whole = path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == fields["model_sha256"]
                    transitions.append((job_id, whole))
            return super().set_status(job_ids, status, expected, **fields)

    store = Watching(tmp_path / "numbamlp.sqlite")
    configs = [TrainConfig.model_validate({**IRIS, "epochs": 2, "seed": s, "data": {"train": "builtin:iris", "seed": 0}})
               .model_dump(mode="json", by_alias=True) for s in range(3)]
    ids = [job["id"] for job in store.add_jobs(configs)]
    scheduler = Scheduler(store, tmp_path, batch_window=0)
    scheduler.start()
    try:
        wait_for(lambda: all(store.job(i)["status"] in FINAL for i in ids), timeout=120, what="the jobs")
    finally:
        scheduler.stop()
    assert sorted(transitions) == sorted((i, True) for i in ids)


def test_jobs_on_a_table_that_hold_rows_out_differently_train_each_on_its_own_split(tmp_path):
    """Jobs of one stack key shared the first job's splits: on a table, one with early
    stopping (whose validation rows are held out before the encoding is learned) trained on
    another split than its `numbamlp train` alone.  Each now trains as alone."""
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run
    from numbamlp.service.scheduler import Scheduler
    from numbamlp.service.store import Store

    data = {"train": str(table_csv(tmp_path / "t.csv")), "label_column": "y", "seed": 0}
    configs = [TrainConfig.model_validate({"epochs": 6, "model": {"hidden": [8]}, "data": data, **extra})
               for extra in ({}, {"early_stopping": {"patience": 2}}, {"seed": 1})]
    store = Store(tmp_path / "numbamlp.sqlite")
    ids = [job["id"] for job in store.add_jobs([c.model_dump(mode="json", by_alias=True) for c in configs])]
    scheduler = Scheduler(store, tmp_path, batch_window=0)
    scheduler.start()
    try:
        wait_for(lambda: all(store.job(i)["status"] == "succeeded" for i in ids), timeout=120, what="the jobs")
    finally:
        scheduler.stop()
    jobs = [store.job(i) for i in ids]
    assert jobs[0]["stack_id"] == jobs[2]["stack_id"] != jobs[1]["stack_id"]  # (seeds alone share a split)
    for job, config in zip(jobs, configs):
        alone = train_run(config, out=tmp_path / "alone" / job["id"])
        np.testing.assert_array_equal(load_model(tmp_path / "jobs" / job["id"] / "model.safetensors").flat_params,
                                      load_model(alone["model_path"]).flat_params)


def test_a_job_that_ended_after_its_stacks_checkpoint_is_not_trained_or_written_again(tmp_path):
    """A kill -9 after a job ended (and another took its slot) leaves the stack's last
    checkpoint with that job in its slot: going on from it must neither record the job
    again nor write its files over the model it is served with."""
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run
    from numbamlp.service.scheduler import Scheduler
    from numbamlp.service.store import Store

    configs = [TrainConfig.model_validate({**SLOW, "epochs": epochs, "seed": seed, "data": {"train": "builtin:digits",
                                                                                             "seed": 0}})
               for seed, epochs in ((0, 40), (1, 60))]
    store = Store(tmp_path / "numbamlp.sqlite")
    ended, going = [job["id"] for job in store.add_jobs([c.model_dump(mode="json", by_alias=True) for c in configs])]
    scheduler = Scheduler(store, tmp_path, batch_window=0)
    scheduler.start()
    wait_for(lambda: store.events(going), timeout=60, what="an epoch")
    scheduler.stop()  # (SIGTERM's: the stack checkpointed with both jobs running)
    assert store.job(ended)["status"] == store.job(going)["status"] == "running"
    # what the checkpoint cannot know: the first job ended since, and its model is served
    model = tmp_path / "jobs" / ended / "model.safetensors"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"the served model")
    store.set_status([ended], "succeeded", expected=("running",), model_sha256="served")
    scheduler = Scheduler(store, tmp_path, batch_window=0)
    scheduler.start()
    try:
        wait_for(lambda: store.job(going)["status"] == "succeeded", timeout=120, what="the other job")
    finally:
        scheduler.stop()
    assert model.read_bytes() == b"the served model" and store.job(ended)["model_sha256"] == "served"
    assert [h["status"] for h in store.status_history(ended)].count("succeeded") == 1
    alone = train_run(configs[1], out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(tmp_path / "jobs" / going / "model.safetensors").flat_params,
                                  load_model(alone["model_path"]).flat_params)


def test_a_joiner_the_running_stack_cannot_seat_trains_in_a_stack_of_its_own(tmp_path, monkeypatch):
    """A seat can be refused where the job alone is fine (a cuda stack of regressors that
    standardise their targets otherwise, no memory for one more member): the job goes back
    to the queue, is not asked again by that stack, and trains later as it would alone."""
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run
    from numbamlp.service.scheduler import Scheduler
    from numbamlp.service.store import Store
    from numbamlp.stack import StackFit

    refused = []

    def seat(self, slot, config):
        refused.append(config["seed"])
        raise MemoryError("no room for one more member")

    monkeypatch.setattr(StackFit, "seat", seat)
    configs = [TrainConfig.model_validate({**SLOW, "epochs": epochs, "seed": seed,
                                           "data": {"train": "builtin:digits", "seed": 0}})
               for seed, epochs in ((0, 2), (1, 30), (2, 3))]
    store = Store(tmp_path / "numbamlp.sqlite")
    short, long = [job["id"] for job in store.add_jobs([c.model_dump(mode="json", by_alias=True)
                                                         for c in configs[:2]])]
    scheduler = Scheduler(store, tmp_path, batch_window=0)
    scheduler.start()
    try:
        wait_for(lambda: store.job(short)["status"] == "succeeded", timeout=60, what="the short job")
        joiner = store.add_jobs([configs[2].model_dump(mode="json", by_alias=True)])[0]["id"]
        wait_for(lambda: store.job(joiner)["status"] == "succeeded", timeout=120, what="the joiner")
    finally:
        scheduler.stop()
    assert refused[:1] == [2] and len(refused) == 1  # (asked once, by the stack of the long job)
    job = store.job(joiner)
    assert job["stack_id"] != store.job(long)["stack_id"] and job["joined_at_epoch"] is None
    assert [h["status"] for h in store.status_history(joiner)] == ["queued", "running", "queued", "running",
                                                                    "succeeded"]
    alone = train_run(configs[2], out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(tmp_path / "jobs" / joiner / "model.safetensors").flat_params,
                                  load_model(alone["model_path"]).flat_params)


def test_a_long_stack_is_paused_for_other_jobs_and_goes_on_bit_for_bit(tmp_path, start_server):
    """A job of epochs 1e9 held the only training slot: a job of another shape stayed queued
    until the long one was cancelled."""
    from numbamlp.config import TrainConfig
    from numbamlp.io import load_model
    from numbamlp.run import train_run
    from numbamlp.service.store import Store

    server = start_server("--batch-window", "0", "--time-slice-s", "1")
    long = server.client.submit({**SLOW, "epochs": 120, "seed": 3})
    next(server.client.events(long["id"]))  # (it trains)
    started = server.client.job(long["id"])["started_at"]
    short = server.client.wait(server.client.submit({**IRIS, "epochs": 2})["id"], timeout=120)
    assert short["status"] == "succeeded"
    assert server.client.job(long["id"])["status"] in ("queued", "running")  # (paused, not finished)
    done = server.client.wait(long["id"], timeout=240)
    assert done["status"] == "succeeded" and done["started_at"] == started
    history = [h["status"] for h in Store(server.data_dir / "numbamlp.sqlite").status_history(long["id"])]
    assert history[:4] == ["queued", "running", "queued", "running"] and history[-1] == "succeeded", history
    assert [e for e, _ in server.client.events(long["id"])][:-1] == list(range(1, 121))
    alone = train_run(TrainConfig.model_validate(done["config"]), out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(server.data_dir / "jobs" / long["id"] / "model.safetensors").flat_params,
                                  load_model(alone["model_path"]).flat_params)


def test_a_paused_stack_whose_jobs_are_all_cancelled_leaves_no_checkpoint(tmp_path, start_server):
    server = start_server("--batch-window", "0", "--time-slice-s", "1")
    long = server.client.submit({**SLOW, "epochs": 4000})
    next(server.client.events(long["id"]))
    other = server.client.submit({**SLOW, "epochs": 300, "model": {"hidden": [128]}})  # (another shape)
    wait_for(lambda: server.client.job(long["id"])["status"] == "queued", timeout=60, what="the pause")
    assert list((server.data_dir / "stacks").iterdir())  # (its checkpoint)
    assert server.client.cancel(long["id"])["status"] == "cancelled"
    assert server.client.wait(other["id"], timeout=120)["status"] == "succeeded"
    wait_for(lambda: not list((server.data_dir / "stacks").iterdir()), timeout=10, what="no checkpoint left")


def test_a_repeated_log_line_is_said_once_a_minute_and_different_ones_each_once():
    import logging

    from numbamlp.service.connections import SaidOnce

    logger = logging.getLogger("numbamlp.test.said-once")
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger.addHandler(handler)
    logger.addFilter(SaidOnce())
    logger.propagate = False
    for _ in range(1000):
        logger.error("the disk is full")
    for reason in ("a", "b", "a"):
        logger.error("a stack failed: %s", reason)
    assert said == ["the disk is full", "a stack failed: a", "a stack failed: b"]


def in_process(cli, env: dict):
    """The command line run in this process (conftest's ``cli``) with ``env``, answering as
    subprocess.run does (returncode, stdout and stderr bytes): without a Python start-up per
    command, ~1 s each, which made the test below the suite's slowest (19 commands)."""
    import types

    def run(*args):
        result = cli.invoke(*args, env=env)
        return types.SimpleNamespace(returncode=result.exit_code, stdout=result.stdout_bytes,
                                     stderr=result.stderr_bytes)

    return run


def test_jobs_predict_writes_what_numbamlp_predict_writes_with_the_downloaded_model(server, iris_job, tmp_path, cli):
    run = in_process(cli, {"NUMBAMLP_URL": server.url, "NUMBAMLP_TOKEN": server.token})

    model_file = server.client.download(iris_job["id"], tmp_path / "m.safetensors")
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    csv_file = tmp_path / "iris.csv"  # (features and a label column, named to both)
    csv_file.write_text("a,b,c,d,species\n" + "".join(",".join(map(str, [*row, label])) + "\n"
                                                      for row, label in zip(X, y)))
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", X.astype(np.float32))
    for data in (csv_file, tmp_path / "npy", "builtin:iris"):
        for extra in ([], ["--proba"]):
            if data == csv_file:  # (the model, of builtin:iris, knows no names: the label column is said)
                extra = [*extra, "--label-column", "species"]
            local = run("predict", model_file, "--data", data, *extra)
            assert local.returncode == 0, local.stderr
            served = run("jobs", "predict", iris_job["id"], "--data", data, *extra)
            assert served.returncode == 0, served.stderr
            assert served.stdout == local.stdout and len(served.stdout.splitlines()) == 151
    # --out: the same file; an existing one only with --overwrite; '-' is stdout
    assert run("predict", model_file, "--data", csv_file, "--label-column", "species", "--proba", "--out", tmp_path / "local.csv").returncode == 0
    out = run("jobs", "predict", iris_job["id"], "--data", csv_file, "--label-column", "species", "--proba", "--out", tmp_path / "served.csv")
    assert out.returncode == 0 and b"wrote 150 predictions" in out.stderr
    assert (tmp_path / "served.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    again = run("jobs", "predict", iris_job["id"], "--data", csv_file, "--label-column", "species", "--out", tmp_path / "served.csv")
    assert again.returncode == 2 and len(again.stderr.splitlines()) == 1 and b"--overwrite" in again.stderr
    assert (tmp_path / "served.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert run("jobs", "predict", iris_job["id"], "--data", csv_file, "--label-column", "species", "--out", tmp_path / "served.csv",
               "--overwrite").returncode == 0
    assert run("jobs", "predict", iris_job["id"], "--data", csv_file, "--label-column", "species", "--out", "-").stdout.startswith(b"prediction\n")
    # in chunks: 8,192 rows a request (8 requests); and 59,392 rows a request (5 MB), which
    # this server (--max-request-mb 1) refuses, closing the connection or with a 413: sent
    # again in halves until it takes them
    big_file = tmp_path / "big.npz"
    np.savez(big_file, X=np.random.default_rng(0).uniform(0, 8, size=(60_000, 4)))
    local = run("predict", model_file, "--data", big_file, "--proba")
    assert local.returncode == 0, local.stderr
    for extra in ([], ["--rows-per-request", "60000"]):
        served = run("jobs", "predict", iris_job["id"], "--data", big_file, "--proba", *extra)
        assert served.returncode == 0, served.stderr
        assert served.stdout == local.stdout and len(served.stdout.splitlines()) == 60_001
    # errors: one line, exit 2
    for args, message in ((["nope", "--data", csv_file], b"404"),
                          ([iris_job["id"], "--data", tmp_path / "missing.csv"], b"not found"),
                          ([iris_job["id"], "--data", "builtin:wine"], b"features")):
        failed = run("jobs", "predict", *args)
        assert failed.returncode == 2, failed.stderr
        assert len(failed.stderr.splitlines()) == 1 and message in failed.stderr, failed.stderr


def test_jobs_predict_of_a_regression_job_writes_values_and_refuses_proba(server, tmp_path, cli):
    run = in_process(cli, {"NUMBAMLP_URL": server.url, "NUMBAMLP_TOKEN": server.token})
    job = server.client.wait(server.client.submit(
        {"task": "regression", "epochs": 1, "data": {"train": "builtin:diabetes"}, "model": {"hidden": [8]}})["id"],
        timeout=120)
    model_file = server.client.download(job["id"], tmp_path / "m.safetensors")

    local = run("predict", model_file, "--data", "builtin:diabetes")
    served = run("jobs", "predict", job["id"], "--data", "builtin:diabetes")
    assert served.returncode == 0 and served.stdout == local.stdout and served.stdout.startswith(b"prediction\n")
    # 2,500 rows in requests of 1,024: the very bits of numbamlp predict (--out: the same file)
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", np.random.default_rng(0).normal(size=(2500, 10)).astype(np.float32))
    local = run("predict", model_file, "--data", tmp_path / "npy", "--out", tmp_path / "local.csv")
    served = run("jobs", "predict", job["id"], "--data", tmp_path / "npy", "--rows-per-request", "1024",
                 "--out", tmp_path / "served.csv")
    assert local.returncode == 0 and served.returncode == 0, served.stderr
    assert (tmp_path / "served.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    proba = run("jobs", "predict", job["id"], "--data", "builtin:diabetes", "--proba")
    assert proba.returncode == 2 and b"--proba is for classifiers" in proba.stderr


def test_predict_takes_named_columns_by_name_when_the_model_knows_its_features(server, tmp_path):
    """The service's predict took X by position only: a table with an id column or its
    columns in another order gave other answers, and no error."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    path = tmp_path / "named.csv"
    path.write_text("a,b,c,label\n" + "".join(f"{a},{b},{c},{int(a + b > 0)}\n" for a, b, c in X))
    uploaded = server.client.upload_dataset(path)
    job = server.client.wait(server.client.submit({"data": {"train": f"dataset:{uploaded['id']}"}, "epochs": 3,
                                                  "model": {"hidden": [8]}})["id"], timeout=120)
    assert job["status"] == "succeeded"
    expected = server.client.predict(job["id"], X, proba=True)
    shuffled = np.column_stack([np.arange(len(X)), X[:, 2], X[:, 0], X[:, 1]])
    got = server.client.predict(job["id"], shuffled, proba=True, columns=["id", "c", "a", "b"])
    assert got == expected
    with pytest.raises(ServiceError) as refused:
        server.client.predict(job["id"], X[:, :2], columns=["a", "c"])
    assert refused.value.status == 422 and "has no column 'b'" in str(refused.value)
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame({"b": X[:, 1], "id": range(len(X)), "a": X[:, 0], "c": X[:, 2]})
    assert server.client.predict(job["id"], table, proba=True) == expected
    # rows by column name: the same answers (a model of numbers takes finite numbers alone)
    records = [{"c": c, "id": i, "a": a, "b": b} for i, (a, b, c) in enumerate(X)]
    assert server.client.predict(job["id"], records, proba=True) == expected
    for row, words in (({"a": 1.0, "b": "x", "c": 0.0}, "column 'b' holds 'x' in rows[0]"),
                       ({"a": 1.0, "b": None, "c": 0.0}, "column 'b' holds null in rows[0]"),
                       ({"a": 1.0, "c": 0.0}, "rows[0] has no column 'b'")):
        with pytest.raises(ServiceError) as refused:
            server.client.predict(job["id"], [row])
        assert refused.value.status == 422 and words in str(refused.value), refused.value


# ---------------------------------------------------------------- tables: text, missing cells, column roles
def table_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    """A raw table: an id column (left out, with a note), a text column, a number column with
    empty cells, another number column, and the label."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    label = np.where((x > 0) ^ (color == "red"), "yes", "no")
    x[rng.random(n) < 0.1] = np.nan
    pd.DataFrame({"id": np.arange(1000, 1000 + n), "color": color, "x": x, "z": rng.normal(size=n),
                  "y": label}).to_csv(path, index=False)
    return path


def test_a_table_is_uploaded_trained_and_predicted_by_rows_as_the_model_predicts(server, tmp_path):
    """An upload with text and missing cells was refused ("numbamlp reads numeric features
    only"); now it trains as `numbamlp train` trains it, the job's column roles apply, and
    predict takes rows of numbers, strings and nulls by column name, as the model does."""
    from numbamlp import load_model

    uploaded = server.client.upload_dataset(table_csv(tmp_path / "t.csv"), "y")
    assert uploaded["rows"] == 240 and uploaded["features"] == 3 and uploaded["format"] == "csv"  # (id left out)
    data = {"train": f"dataset:{uploaded['id']}", "label_column": "y"}
    for extra, words in (({"features": ["color", "nope"]}, "data.features: the uploaded dataset"),
                         ({"missing": "error"}, "data.missing: the uploaded dataset"),
                         ({"label_column": "nah"}, "data.label_column: the uploaded dataset"),
                         ({"test": "builtin:iris"}, "data.test: builtin:iris is not a table")):
        with pytest.raises(ServiceError) as refused:
            server.client.submit({"epochs": 1, "data": {**data, **extra}})
        assert refused.value.status == 422 and words in str(refused.value), refused.value
        assert str(tmp_path) not in str(refused.value) and "/datasets/" not in str(refused.value)
    job = server.client.wait(server.client.submit(
        {"epochs": 4, "data": {**data, "drop": ["id"], "categorical": ["z"], "min_category_rows": 1},
         "model": {"hidden": [8]}})["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["config"]["data"]["drop"] == ["id"] and job["config"]["data"]["categorical"] == ["z"]
    model = load_model(server.client.download(job["id"], tmp_path / "roles.safetensors"))
    assert model.table.categorical == ["color", "z"]  # (the job's roles: z read as categories)

    job = server.client.wait(server.client.submit({"epochs": 4, "data": data, "model": {"hidden": [8]},
                                                   "threshold": 0.3})["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    model = load_model(server.client.download(job["id"], tmp_path / "m.safetensors"))
    assert model.feature_names == ["color", "x", "z"] and model.table.categorical == ["color"]
    assert model.threshold == 0.3  # (a decision threshold: the served labels follow it, below)
    rows = [{"color": "red", "x": None, "z": 0.5}, {"color": "purple", "x": 1.5, "z": -1},  # (unseen category)
            {"color": None, "x": 0.25, "z": 2, "id": 7}, {"z": 0, "x": "3.5", "color": "blue"}]  # (id: ignored)
    served = server.client.predict(job["id"], rows, proba=True)
    local = model.predict_proba({name: [row[name] for row in rows] for name in ("color", "x", "z")})
    assert np.array_equal(np.array(served["proba"]), local)
    assert served["labels"] == np.where(local[:, 1] >= 0.3, "yes", "no").tolist()
    assert served["labels"] == model.predict({name: [row[name] for row in rows] for name in ("color", "x", "z")}).tolist()
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(tmp_path / "t.csv")  # (a DataFrame with text and NaN: sent as rows, nulls for NaN)
    served = server.client.predict(job["id"], frame, proba=True)
    assert np.array_equal(np.array(served["proba"]), model.predict_proba(frame))
    # X of numbers: by name, or in the model's column order
    numbers = [[1.0, 0.5, 0.25]]
    assert server.client.predict(job["id"], numbers, proba=True, columns=["z", "x", "color"])["proba"] == \
        model.predict_proba({"z": [1.0], "x": [0.5], "color": [0.25]}).tolist()
    assert server.client.predict(job["id"], numbers, proba=True)["proba"] == \
        model.predict_proba({"color": [1.0], "x": [0.5], "z": [0.25]}).tolist()
    # bad rows: one line naming the column
    for bad, words in (([{"color": "red", "x": "abc", "z": 1}], "column 'x' holds 'abc'"),
                       ([{"color": "red", "z": 1}], "rows[0] has no column 'x'"),
                       ([{"color": "red", "x": 1, "z": 1}, {"x": 1, "z": 1}], "rows[1] has no column 'color'"),
                       ([{"color": "red", "x": float("inf"), "z": 1}], "column 'x' holds inf")):
        with pytest.raises(ServiceError) as refused:
            server.client.predict(job["id"], bad)
        assert refused.value.status == 422 and words in str(refused.value), refused.value
        assert len(str(refused.value).splitlines()) == 1
    for text, words in (('{"rows": [{"color": [1], "x": 1, "z": 1}]}', "rows.0.color: a cell is a number"),
                        ('{"rows": [], "proba": true}', "rows holds no rows"),
                        ('{"proba": true}', "give X (rows of numbers) or rows"),
                        ('{"rows": [{"x": 1}], "columns": ["x"]}', "columns names X's columns")):
        status, detail = post_json(server, f"/v1/jobs/{job['id']}/predict", text)
        assert status == 422 and words in detail, detail


def test_jobs_predict_of_a_table_model_writes_what_numbamlp_predict_writes(server, tmp_path, cli):
    run = in_process(cli, {"NUMBAMLP_URL": server.url, "NUMBAMLP_TOKEN": server.token})
    train = table_csv(tmp_path / "train.csv")
    submitted = run("jobs", "submit", "--data", train, "--label-column", "y", "--epochs", "3", "--hidden", "8")
    assert submitted.returncode == 0, submitted.stderr
    job = server.client.wait(submitted.stdout.decode().strip(), timeout=120)
    assert job["status"] == "succeeded", job["error"]
    model_file = server.client.download(job["id"], tmp_path / "m.safetensors")
    pd = pytest.importorskip("pandas")
    new = table_csv(tmp_path / "new.csv", n=50, seed=1)  # (other rows; a category training never saw, a column moved)
    frame = pd.read_csv(new).drop(columns=["y"])
    frame.loc[3, "color"] = "purple"
    frame = frame[["z", "id", "x", "color"]]
    frame.to_csv(new, index=False)
    frame.to_parquet(tmp_path / "new.parquet")
    for data in (train, new, tmp_path / "new.parquet"):
        for extra in ([], ["--proba"], ["--proba", "--rows-per-request", "7"]):
            local = run("predict", model_file, "--data", data, *extra[:1])
            assert local.returncode == 0, local.stderr
            served = run("jobs", "predict", job["id"], "--data", data, *extra)
            assert served.returncode == 0, served.stderr
            assert served.stdout == local.stdout and served.stdout.count(b"\n") in (241, 51)
    (tmp_path / "bad.csv").write_text("z,x\n1,2\n")
    failed = run("jobs", "predict", job["id"], "--data", tmp_path / "bad.csv")
    assert failed.returncode == 2 and len(failed.stderr.splitlines()) == 1 and b"'color'" in failed.stderr, failed.stderr
