"""Searches through the training service (issue 28, "search that learns"), against a real
`numbamlp serve` process on 127.0.0.1: POST /v1/sweeps with search settings, each trial a
job (its status as a trial, its events, its model: the trial's run directory's, bit for
bit), the sweep's view and listing, bad settings as one-line 422s, cancelling a trial and
a whole search, and a server stopped mid-search (SIGTERM, kill -9) that goes on with it."""

import hashlib
import http.client
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from naive import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("optuna")

from numbamlp.client import Client, ServiceError  # noqa: E402
from numbamlp.config import TrainConfig  # noqa: E402
from numbamlp.io import load_model  # noqa: E402
from numbamlp.job_status import TRIAL_STATUSES  # noqa: E402
from numbamlp.run import read_run_config  # noqa: E402
from numbamlp.service.local import LocalServer  # noqa: E402

BASE = {"epochs": 6, "data": {"train": "builtin:iris"}, "model": {"hidden": [8]}}
SPACE = {"optimizer.lr": "loguniform:1e-3:0.5", "model.activation": ["relu", "tanh"]}  # a range and a choice
TPE_ASHA = {"search": "tpe", "trials": 8, "prune": "asha", "reduction_factor": 2, "stack_size": 3}
# iris in batches of 8, a few ms an epoch: long enough to cancel or stop mid-way
LONG = {"data": {"train": "builtin:iris"}, "model": {"hidden": [8]}, "batch_size": 8}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = LocalServer(tmp_path_factory.mktemp("search") / "data", "--batch-window", "0.1").start()
    yield running
    running.close()


def ended(client: Client, sweep_id: str, timeout: float = 180) -> dict:
    """The sweep once its state is no longer queued or running."""
    return wait_for(lambda: (lambda shown: shown if shown["state"] not in ("queued", "running") else None)(
        client.show_sweep(sweep_id)), timeout, f"sweep {sweep_id} to end")


def results_rows(server, sweep_id: str) -> dict[int, dict]:
    """The search directory's results.jsonl, by trial number."""
    lines = (server.data_dir / "sweeps" / sweep_id / "results.jsonl").read_text().splitlines()
    return {row["member"]: row for row in map(json.loads, lines)}


def member_directory(server, sweep_id: str, number: int):
    return server.data_dir / "sweeps" / sweep_id / "members" / str(number)


def post(server, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", path, body=json.dumps(body), headers={
        "Authorization": f"Bearer {token or server.token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def token(server, name: str, role: str) -> str:
    """A new token for ``name`` with ``role`` (`numbamlp serve token create`)."""
    made = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "serve", "token", "create", name, "--role", role,
                           "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def epochs_of(client: Client, job_id: str) -> list:
    return [epoch for epoch, _ in client.events(job_id)]


# ---------------------------------------------------------------- a search, its trials as jobs
def test_a_search_keeps_each_trial_as_a_job_with_its_status_scores_and_model(server, tmp_path):
    client = server.client
    grid_sweep = client.sweep({**BASE, "epochs": 1}, {"seed": [0, 1]})  # (listed beside the search)
    submitted = client.sweep(BASE, SPACE, **TPE_ASHA)
    assert submitted["jobs"] == []  # (its trials become jobs as they are asked)
    shown = ended(client, submitted["id"])
    assert shown["state"] == "done" and shown["size"] == 8 and shown["owner"] == "admin"
    assert {k: shown["search"][k] for k in (*TPE_ASHA, "min_epochs")} == {**TPE_ASHA, "min_epochs": 1}
    assert shown["search"]["error"] is None and shown["search"]["cancel_requested"] is False
    rows = results_rows(server, submitted["id"])
    members = shown["members"]
    assert [m["member"] for m in members] == sorted(rows) == list(range(8))
    trial_statuses = [m["trial"]["status"] for m in members]
    assert "pruned" in trial_statuses and "finished" in trial_statuses
    assert shown["search"]["trials_by_status"] == {s: trial_statuses.count(s) for s in TRIAL_STATUSES}
    assert shown["counts"] == {"queued": 0, "running": 0, "succeeded": 8, "failed": 0, "cancelled": 0}
    assert shown["finished_at"] >= max(m["finished_at"] for m in members)

    for m in members:
        row, folder = rows[m["member"]], member_directory(server, submitted["id"], m["member"])
        assert (m["sweep_id"], m["owner"], m["status"]) == (submitted["id"], "admin", "succeeded")
        assert m["trial"] == {"number": m["member"], "status": "pruned" if row["status"] == "pruned" else "finished",
                              "pruned_epoch": row["pruned_epoch"], "repeat_of": row["repeat_of"]}
        if row["status"] == "pruned":
            assert 1 <= m["trial"]["pruned_epoch"] < BASE["epochs"]
        assert m["grid"] == {key: row[key] for key in SPACE}
        assert TrainConfig.model_validate(m["config"]) == read_run_config(folder)  # (the job trains what it says)
        assert {k: m["scores"][k] for k in ("val_accuracy", "val_loss", "test_accuracy")} == \
               {k: row[k] for k in ("val_accuracy", "val_loss", "test_accuracy")}
        assert m["epochs"] == row["epochs"] and epochs_of(client, m["id"]) == [*range(1, row["epochs"] + 1), "end"]
        assert client.job(m["id"]) == {k: m[k] for k in client.job(m["id"])}  # (each member is its job's view)
        # the job's model is the trial's, bit for bit (a pruned one's: the weights of the epoch it stopped at)
        downloaded = client.download(m["id"], tmp_path / f"{m['member']}.safetensors")
        np.testing.assert_array_equal(load_model(downloaded).flat_params, load_model(folder).flat_params)
        assert m["model_sha256"] == hashlib.sha256(downloaded.read_bytes()).hexdigest()

    # the best: the best finished trial by the metric (ties to the lower val_loss, then number); never a pruned one
    finished = [m for m in members if m["trial"]["status"] == "finished"]
    best = min(finished, key=lambda m: (-m["metric_value"], m["scores"]["val_loss"], m["member"]))
    assert shown["metric"] == "val_accuracy"
    assert shown["best"] == {"job_id": best["id"], "member": best["member"], "metric": "val_accuracy",
                             "value": best["scores"]["val_accuracy"]}
    X = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    model = load_model(member_directory(server, submitted["id"], best["member"]))
    assert client.predict(best["id"], X, proba=True)["proba"] == model.predict_proba(np.array(X)).tolist()

    # listed beside the grid sweeps, newest first, as shown (without its members)
    listed = client._request("GET", "/v1/sweeps?limit=1000")["sweeps"]
    ids = [s["id"] for s in listed]
    assert ids.index(submitted["id"]) < ids.index(grid_sweep["id"])
    assert listed[ids.index(submitted["id"])] == {k: v for k, v in shown.items() if k != "members"}
    assert listed[ids.index(grid_sweep["id"])]["search"] is None
    assert all(job["trial"] is None for job in client.show_sweep(grid_sweep["id"])["members"])
    with pytest.raises(ServiceError) as done_already:
        client.cancel_sweep(submitted["id"])
    assert done_already.value.status == 409


@pytest.mark.parametrize("settings, grid, says", [
    ({"search": "bayes", "trials": 3}, SPACE, "search: Input should be"),
    ({"search": "tpe"}, SPACE, "needs --trials"),
    ({"search": "tpe", "trials": 0}, SPACE, "trials must be at least 1"),
    ({"search": "tpe", "trials": 3, "random": 2}, SPACE, "not --random"),
    ({"search": "tpe", "trials": 3, "prune": "sometimes"}, SPACE, "prune: Input should be"),
    ({"search": "tpe", "trials": 3, "min_epochs": 0}, SPACE, "min-epochs must be at least 1"),
    ({"search": "tpe", "trials": 3, "reduction_factor": 1}, SPACE, "reduction-factor must be at least 2"),
    ({"search": "tpe", "trials": 3, "stack_size": 0}, SPACE, "stack_size"),
    ({"prune": "asha"}, {"seed": [0, 1]}, "go with search"),
    ({"search": "grid"}, SPACE, "a grid search takes lists"),
    ({"search": "tpe", "trials": 3}, {"optimizer.lr": ["loguniform:1e-3:0.5", 0.1]}, "the key's only value"),
    ({"search": "tpe", "trials": 3}, {"data.train": ["builtin:iris", "builtin:wine"]}, "not the data"),
    ({"search": "tpe", "trials": 3}, {"task": ["classification", "regression"]}, "task cannot vary"),
    ({"search": "tpe", "trials": 3}, {"epochs": "int:1:100000"}, "epochs=100000: epochs: 100000 is more than"),
    ({"search": "tpe", "trials": 3}, {"model.activation": ["relu", "bogus"]}, "model.activation='bogus'"),
    # a million combinations, counted and refused, never made (made, they took 235 MB and the API thread)
    ({"search": "grid"}, {"seed": list(range(100)), "batch_size": list(range(1, 101)),
                          "epochs": list(range(1, 101))}, "1000000 combinations, more than the limit of 10000"),
    ({}, {"seed": list(range(100)), "batch_size": list(range(1, 101)), "epochs": list(range(1, 101))},
     "the grid has 1000000 members, more than 10000"),
])
def test_bad_search_settings_are_a_one_line_422_and_nothing_is_stored(server, settings, grid, says):
    before = server.client._request("GET", "/v1/sweeps?limit=1000")["sweeps"]
    status, answer = post(server, "/v1/sweeps", {"config": BASE, "grid": grid, **settings})
    assert status == 422 and says in answer["detail"] and "\n" not in answer["detail"], answer
    assert server.client._request("GET", "/v1/sweeps?limit=1000")["sweeps"] == before


# ---------------------------------------------------------------- cancelling
def trials(shown: dict) -> list[str]:
    return [m["trial"]["status"] for m in shown["members"]]


def test_a_trial_and_a_whole_search_are_cancelled_by_their_owner_or_an_admin(server):
    tokens = {name: token(server, name, role) for name, role in (("dora", "submit"), ("erin", "read"),
                                                                  ("finn", "submit"))}
    dora = Client(server.url, tokens["dora"], timeout=60)
    space = {"optimizer.lr": "loguniform:1e-3:0.05"}
    search = dora.sweep({**LONG, "epochs": 10_000}, space, search="random", trials=5, stack_size=2)
    waiting = dora.sweep({**LONG, "epochs": 5}, space, search="random", trials=2)
    # a queued search never starts
    assert dora.cancel_sweep(waiting["id"])["state"] == "cancelled"
    running = wait_for(lambda: (lambda shown: shown if [bool(m["epochs"]) for m in shown["members"]][:2] == [True] * 2
                                else None)(dora.show_sweep(search["id"])), what="two trials training")
    assert running["state"] == "running" and trials(running)[:2] == ["running", "running"]
    assert all(m["trial"]["status"] == m["status"] == "queued" and m["epochs"] is None  # (asked, waiting for a slot)
               for m in running["members"][2:])
    # only its owner or an admin cancels it
    for name in ("erin", "finn"):
        for path in (f"/v1/sweeps/{search['id']}/cancel", f"/v1/jobs/{running['members'][0]['id']}/cancel"):
            assert post(server, path, {}, tokens[name])[0] == 403
    # a trial's job cancelled: that trial stops, and the next trial takes its slot
    dora.cancel(running["members"][0]["id"])
    shown = wait_for(lambda: (lambda shown: shown if shown["size"] >= 3 and shown["members"][2]["epochs"] else None)(
        dora.show_sweep(search["id"])), timeout=10, what="the cancelled trial's slot taken")
    assert trials(shown) == ["cancelled", "running", "running"] + ["queued"] * (shown["size"] - 3)
    assert shown["members"][0]["status"] == "cancelled" and shown["members"][0]["model_sha256"] is None
    # the search cancelled (by an admin): it stops after its step, its trials not ended cancelled, no more asked
    assert server.client.cancel_sweep(search["id"])["search"]["cancel_requested"] is True
    cancelled = ended(dora, search["id"], timeout=10)  # (after its step: within 10 s, or it times out)
    assert cancelled["state"] == "cancelled" and cancelled["size"] == shown["size"]
    assert trials(cancelled) == ["cancelled"] * shown["size"] and cancelled["finished_at"] is not None
    assert cancelled["search"]["trials_by_status"]["cancelled"] == shown["size"]
    time.sleep(0.5)
    assert dora.show_sweep(search["id"])["size"] == shown["size"]
    assert dora.cancel_sweep(search["id"])["state"] == "cancelled"  # (again: as it is)
    never = dora.show_sweep(waiting["id"])
    assert never["size"] == 0 and never["state"] == "cancelled"
    assert not (server.data_dir / "sweeps" / waiting["id"]).exists()
    with pytest.raises(ServiceError) as unknown:
        dora.cancel_sweep("no-such-sweep")
    assert unknown.value.status == 404


def test_a_search_on_an_upload_keeps_its_id_in_the_trials_files_not_the_servers_path(server, tmp_path):
    """A trial's model (which any reader may download) and config.json name the upload as
    a job's do, dataset:<id>, never by the file the server keeps it in."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    table = tmp_path / "flowers.csv"
    table.write_text("a,b,c,d,kind\n" + "".join(",".join(map(str, [*row, label])) + "\n" for row, label in zip(X, y)))
    dataset = server.client.upload_dataset(table, label_column="kind")
    base = {"epochs": 2, "data": {"train": f"dataset:{dataset['id']}", "label_column": "kind"},
            "model": {"hidden": [4]}}
    search = server.client.sweep(base, {"optimizer.lr": [0.01, 0.1]}, search="grid")
    shown = ended(server.client, search["id"])
    assert shown["state"] == "done" and trials(shown) == ["finished", "finished"]
    downloaded = server.client.download(shown["members"][0]["id"], tmp_path / "trial.safetensors")
    config = json.loads((member_directory(server, search["id"], 0) / "config.json").read_text())
    assert config["data"]["train"] == f"dataset:{dataset['id']}"
    for kept in (downloaded.read_bytes(), json.dumps(config).encode()):
        assert str(server.data_dir).encode() not in kept and str(server.data_dir.resolve()).encode() not in kept
    assert f"dataset:{dataset['id']}".encode() in downloaded.read_bytes()


def test_a_job_submitted_while_a_search_runs_trains_meanwhile(server):
    """A search runs beside the jobs' slot: a job submitted while a long search trains is
    not held in the queue until the search ends."""
    search = server.client.sweep({**LONG, "epochs": 10_000}, {"optimizer.lr": [0.01, 0.1]}, search="grid")
    wait_for(lambda: server.client.show_sweep(search["id"])["state"] == "running", what="the search running")
    try:
        job = server.client.wait(server.client.submit({**BASE, "epochs": 3})["id"], timeout=120)
        assert job["status"] == "succeeded" and server.client.show_sweep(search["id"])["state"] == "running"
    finally:
        server.client.cancel_sweep(search["id"])


def test_a_trial_that_repeats_another_waits_queued_then_takes_its_outcome_events_and_model(server, tmp_path):
    """Trials asked with the settings of one in training are not trained again: each waits,
    queued, for that trial's outcome, and then takes it (repeat_of), its events and its model."""
    client = server.client
    search = client.sweep({**LONG, "epochs": 1500}, {"model.activation": ["tanh"]}, search="tpe", trials=3,
                          stack_size=2)
    shown = wait_for(lambda: (lambda shown: shown if shown["size"] == 2 and shown["members"][0]["epochs"] else None)(
        client.show_sweep(search["id"])), what="trial 0 training")
    assert trials(shown) == ["running", "queued"] and shown["members"][1]["started_at"] is None
    shown = ended(client, search["id"])
    assert shown["state"] == "done" and trials(shown) == ["finished"] * 3
    assert [m["trial"]["repeat_of"] for m in shown["members"]] == [None, 0, 0]
    first = shown["members"][0]
    assert epochs_of(client, first["id"])[-2:] == [1500, "end"]
    for m in shown["members"]:
        assert list(client.events(m["id"]))[:-1] == list(client.events(first["id"]))[:-1]
        assert (m["scores"], m["model_sha256"]) == (first["scores"], first["model_sha256"])
        downloaded = client.download(m["id"], tmp_path / f"{m['member']}.safetensors")
        np.testing.assert_array_equal(load_model(downloaded).flat_params,
                                      load_model(member_directory(server, search["id"], 0)).flat_params)


# ---------------------------------------------------------------- a server stopped mid-search
@pytest.mark.parametrize("stop", [signal.SIGTERM,
                                  # (slow: a kill -9 mid-write leaves Optuna's journal lock, which the
                                  # search's resume breaks after JOURNAL_LOCK_GRACE_S)
                                  pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_a_search_goes_on_after_the_server_stops_mid_way(start_server, tmp_path, stop):
    """SIGTERM stops the search after its step; kill -9 anywhere.  The next start goes on
    with it: a trial in flight trains again from its start, in the job it had (each trial
    listed once, its epochs once), and every trial's model is the one the same search
    gives uninterrupted, bit for bit."""
    from numbamlp.sweeps import sweep

    server = start_server("--batch-window", "0.1")
    base, space, epochs = {**LONG, "epochs": 600}, {"optimizer.lr": "loguniform:1e-3:0.05"}, 600
    search = server.client.sweep(base, space, search="random", trials=3, stack_size=2)

    def mid_way():  # (a trial finished, and trial 2 has trained, but less than half of its epochs)
        shown = server.client.show_sweep(search["id"])
        if shown["search"]["trials_by_status"]["finished"] and shown["size"] == 3:
            return shown if 0 < (shown["members"][2]["epochs"] or 0) < epochs // 2 else None
        return None

    before = wait_for(mid_way, what="trial 2 mid-way")
    assert server.stop(stop) in (0, -signal.SIGTERM, -signal.SIGKILL)
    assert 2 not in results_rows(server, search["id"])  # (trial 2 had not ended: it trains again)
    server.start()
    after = ended(server.client, search["id"])
    assert after["state"] == "done" and after["size"] == 3
    jobs = {m["member"]: m["id"] for m in after["members"]}
    assert jobs == {m["member"]: m["id"] for m in before["members"]}  # (the same jobs went on)
    assert sorted(j["id"] for j in server.client.all_jobs() if j["sweep_id"] == search["id"]) == sorted(jobs.values())
    uninterrupted = sweep(base, space, search="random", trials=3, stack_size=2)
    for m, row, model in zip(after["members"], uninterrupted.table, uninterrupted.models):
        assert m["trial"]["status"] == "finished" and m["epochs"] == epochs and m["grid"] == {k: row[k] for k in space}
        seen = epochs_of(server.client, m["id"])  # (past a burst of 100, stored 10 a second: some skipped)
        assert seen[:100] == list(range(1, 101)) and seen[-2:] == [epochs, "end"]
        assert seen[:-1] == sorted(set(seen[:-1]))
        downloaded = server.client.download(m["id"], tmp_path / f"{m['member']}.safetensors")
        np.testing.assert_array_equal(load_model(downloaded).flat_params, model.flat_params)
        assert m["scores"]["test_accuracy"] == row["test_accuracy"]


def test_a_trial_whose_row_was_written_before_a_kill_ends_as_its_row_says(tmp_path):
    """A kill -9 between a trial's row (results.jsonl) and its job's end: before the search
    goes on, the job ends as the row says; a trial without a row stays, to train again."""
    import threading

    from numbamlp.service.searches import TrialJobs
    from numbamlp.service.store import Store

    store = Store(tmp_path / "numbamlp.sqlite")
    try:
        store.add_search("s", "o", {**BASE, "data": {"train": "builtin:iris", "seed": 0}}, {"seed": [0, 1, 2]},
                         {"search": "grid", "trials": 3, "prune": "none", "min_epochs": 1, "reduction_factor": 3,
                          "stack_size": 8})
        watch = TrialJobs(store, store.sweep("s"), tmp_path, threading.Event())
        for number in range(3):
            watch.started(number, {"seed": number})
        watch.epoch(0, {"epoch": 1, "loss": 1.5})
        watch.epoch(1, {"epoch": 1, "loss": 1.2})
        jobs = {job["trial"]["number"]: job for job in store.sweep_jobs("s")}
        assert [jobs[n]["status"] for n in range(3)] == ["running", "running", "queued"]
        assert jobs[0]["config"]["seed"] == 0 and jobs[2]["grid"] == {"seed": 2} and jobs[1]["owner"] == "o"
        # (the server killed here) the next start's watch settles the rows written before
        rows = [{"member": 0, "status": "diverged", "error": "training diverged: ...", "pruned_epoch": None,
                 "repeat_of": None, "model_path": None},
                {"member": 2, "status": "cancelled", "error": None, "pruned_epoch": None, "repeat_of": None,
                 "model_path": None}]
        TrialJobs(store, store.sweep("s"), tmp_path, threading.Event()).settle(rows)
        jobs = {job["trial"]["number"]: job for job in store.sweep_jobs("s")}
        assert [jobs[n]["status"] for n in range(3)] == ["failed", "running", "cancelled"]
        assert jobs[0]["error"] == "training diverged: ..." and store.events(jobs[1]["id"]) == [(1, {"epoch": 1,
                                                                                                   "loss": 1.2})]
    finally:
        store.close()
