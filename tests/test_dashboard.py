"""The dashboard (numbamlp/service/static) in a real headless Chromium, driven by Playwright,
and in a real headless Firefox (its pages, through Marionette), against a real `numbamlp serve`: upload a CSV from the page and see its columns, submit a job
and a sweep from the forms, watch a curve grow, read a job page's axes and legend, sort a
sweep's trials, cancel, download, predict, a refused token, the first load's weight, and a
store of 10,000 jobs.  Each page's screenshot is kept in the test's tmp_path.

Also, without a browser: the upload's answer names the columns the server read, and the
page is served as one document."""

import hashlib
import json
import re
import shutil
import time

import pytest
from naive import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from numbamlp.service.local import LocalServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
IRIS = {"data": {"train": "builtin:iris", "val_fraction": 0.2}, "model": {"hidden": [8]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = LocalServer(tmp_path_factory.mktemp("dashboard") / "data", "--batch-window", "0.3").start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("needs Chromium (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser):
    """open_page(server, token=server's, width=1280) → a page of a fresh browser profile with
    ``token`` kept (None: none), at the dashboard; the test fails if a script on it raised."""
    contexts, errors = [], []

    def open_(server, token: str | None = "", width: int = 1280, path: str = "/"):
        context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        contexts.append(context)
        token = server.token if token == "" else token
        if token is not None:  # (as a user who entered it before: the page keeps it in localStorage)
            context.add_init_script(f"localStorage.setItem('numbamlp-token', {json.dumps(token)})")
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server.url + path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors


def texts(page, selector: str) -> list[str]:
    """The text of each element ``selector`` finds (SVG's text too, which has no innerText)."""
    return page.locator(selector).all_text_contents()


def cells(page, rows: str) -> list[list[str]]:
    """The cells' texts of each table row ``rows`` finds."""
    return [row.locator("td").all_text_contents() for row in page.locator(rows).all()]


def table_csv(rows: int = 60) -> str:
    """A table of text, missing cells and an identifier column, labelled by `churned`."""
    lines = ["customer_id,plan,age,monthly_spend,churned"]
    for i in range(rows):
        age = "" if i % 10 == 0 else str(30 + i % 25)
        lines.append(f"{1000 + i},{('basic', 'pro', 'team')[i % 3]},{age},{10 + i * 1.5},{('yes', 'no')[i % 2]}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- without a browser
def test_an_upload_answers_with_the_columns_the_server_read(server, tmp_path):
    """The answer names each column a job trains on, with its type; an identifier-like column
    is named as left out; a file without names numbers its features; the same content
    uploaded again answers the same."""
    import numpy as np

    client = server.client
    table = tmp_path / "customers.csv"
    table.write_text(table_csv())
    answer = client.upload_dataset(table, label_column="churned")
    assert answer["columns"] == [{"name": "customer_id", "type": None, "role": "identifier"},
                                 {"name": "plan", "type": "text", "role": "feature"},
                                 {"name": "age", "type": "int64", "role": "feature"},
                                 {"name": "monthly_spend", "type": "float64", "role": "feature"}]
    assert answer["features"] == 3  # (the count the columns' roles give)
    assert client.upload_dataset(table, label_column="churned")["columns"] == answer["columns"]  # (kept content)
    numbers = tmp_path / "numbers.npz"
    np.savez(numbers, X=np.arange(12.0).reshape(4, 3), y=np.array([0, 1, 0, 1]))
    assert [(c["name"], c["type"]) for c in client.upload_dataset(numbers)["columns"]] == \
        [("0", "float64"), ("1", "float64"), ("2", "float64")]
    named = tmp_path / "named.csv"
    named.write_text("width,height,kind\n1.5,2,0\n2.5,3,1\n")
    assert [(c["name"], c["type"]) for c in client.upload_dataset(named)["columns"]] == \
        [("width", "float64"), ("height", "int64")]


def test_the_page_is_one_document_with_its_styles_and_scripts_in_place(server, tmp_path, monkeypatch):
    """GET / needs no token and holds every file index.html names (a browser sends no token
    for a <script src>, and only / is public); a file that would end its element early is
    refused rather than served broken."""
    from numbamlp.service.routers import public

    status, headers, body = raw_get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    assert "<script src" not in page and 'rel="stylesheet"' not in page
    for name in ("core.js", "plot.js", "jobs.js", "job.js", "sweep.js", "submit.js", "app.js", "dashboard.css"):
        assert (public.STATIC / name).read_text() in page, name
    # nothing loaded from elsewhere: no address in it but SVG's namespace, which names no file
    assert set(re.findall(r"https?://[^\s\"'`]*", page)) == {"http://www.w3.org/2000/svg"}
    # its policy allows exactly its own scripts and styles, by hash, and no framing
    import base64
    import hashlib

    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    for kind in ("script", "style"):
        texts_in_page = re.findall(rf"<{kind}>(.*?)</{kind}>", page, flags=re.S)
        allowed = {f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
                   for text in texts_in_page}
        assert texts_in_page and set(policy[f"{kind}-src"].split()) == allowed, kind
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    (tmp_path / "index.html").write_text('<p>\n<script src="bad.js"></script>\n')
    (tmp_path / "bad.js").write_text('const s = "</script>";\n')
    monkeypatch.setattr(public, "STATIC", tmp_path)
    with pytest.raises(ValueError, match="bad.js holds '</script'"):
        public.dashboard_page()


def raw_get(server, path):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


# ---------------------------------------------------------------- the pages
@needs_chromium
def test_the_forms_offer_numbamlps_own_choices(server, open_page):
    """The Submit page's lists are written in its script: they must be numbamlp's own."""
    from typing import get_args

    from numbamlp.config import OptimizerConfig
    from numbamlp.data import BUILTIN_SETS, REGRESSION_SETS
    from numbamlp.kernels import ACTIVATION_NAMES
    from numbamlp.metrics import METRICS

    page = open_page(server, path="/#/submit")
    choices = page.evaluate("SubmitPage.CHOICES")
    assert choices["activations"] == list(ACTIVATION_NAMES)
    assert choices["optimizers"] == list(get_args(OptimizerConfig.model_fields["name"].annotation))
    assert choices["builtin"] == list(BUILTIN_SETS) and choices["regression"] == list(REGRESSION_SETS)
    assert choices["metrics"] == list(METRICS)
    try:
        from numbamlp.sweeps import PRUNERS, SEARCHES
    except ImportError:  # (a numbamlp without searches)
        return
    assert sorted(choices["searches"]) == sorted(SEARCHES)
    assert sorted(choices["pruners"]) == sorted(p for p in PRUNERS if p != "none")


@needs_chromium
def test_upload_a_csv_from_the_page_see_its_columns_and_train_on_it(server, open_page, tmp_path):
    table = tmp_path / "customers.csv"
    table.write_text(table_csv())
    page = open_page(server, path="/#/submit")
    page.fill("#upload-label", "churned")
    page.set_input_files("#upload-file", str(table))
    page.locator("#upload-columns tbody tr").first.wait_for(timeout=30_000)
    rows = cells(page, "#upload-columns tbody tr")
    assert rows == [["customer_id", "not read", "identifier"], ["plan", "text", "feature"], ["age", "int64", "feature"],
                    ["monthly_spend", "float64", "feature"]]
    dataset_id = page.inner_text("#uploaded-id").removeprefix("dataset:")
    assert dataset_id == hashlib.sha256(table.read_bytes()).hexdigest()
    assert page.input_value("#data") == "dataset:" + dataset_id  # (chosen as the job's data)
    assert page.input_value("#label-column") == "churned"
    page.screenshot(path=str(tmp_path / "submit-uploaded.png"), full_page=True)

    # dropped on the page rather than chosen: a file of numbers, its last column the label
    page.fill("#upload-label", "")
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["width,height,kind\\n1.5,2,0\\n2.5,3,1\\n0.5,1,0\\n"], "shapes.csv", {type: "text/csv"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_function("() => document.getElementById('uploaded-id') && document.getElementById('uploaded-id')"
                           ".textContent !== 'dataset:" + dataset_id + "'")
    assert cells(page, "#upload-columns tbody tr") == [
        ["width", "float64", "feature"], ["height", "int64", "feature"]]
    assert "3 rows, 2 features" in page.inner_text("#upload-result")

    # the table, chosen again from this browser's uploads, trains from the form
    page.select_option("#data", "dataset:" + dataset_id)
    assert page.input_value("#label-column") == "churned"
    page.fill("#epochs", "2")
    page.fill("#hidden", "4")
    page.click("#submit")
    job_id = page.locator("#submitted a").inner_text(timeout=30_000)
    job = server.client.wait(job_id, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["config"]["data"]["train"] == "dataset:" + dataset_id and job["config"]["data"]["label_column"] == "churned"


@needs_chromium
def test_a_job_from_the_form_its_curve_grows_its_axes_and_legend_and_cancel(server, open_page, tmp_path):
    page = open_page(server, path="/#/submit")
    page.select_option("#data", "builtin:digits")
    page.fill("#hidden", "256, 256")  # (digits: ~40 ms an epoch, long enough to watch and cancel)
    page.select_option("#activation", "tanh")
    page.select_option("#optimizer", "adam")
    page.fill("#lr", "0.001")
    page.fill("#epochs", "400")
    page.fill("#batch-size", "64")
    page.fill("#val-fraction", "0.2")
    page.screenshot(path=str(tmp_path / "submit.png"), full_page=True)
    page.click("#submit")
    link = page.locator("#submitted a")
    job_id = link.inner_text(timeout=30_000)
    config = server.client.job(job_id)["config"]
    assert (config["model"]["hidden"], config["model"]["activation"], config["optimizer"]["name"], config["optimizer"]["lr"],
            config["epochs"], config["batch_size"], config["data"]["val_fraction"]) == \
        ([256, 256], "tanh", "adam", 0.001, 400, 64, 0.2)

    try:
        watch_and_cancel(server, page, link, job_id, tmp_path)
    finally:  # (a test that failed half-way leaves no long job to slow the others)
        if server.client.job(job_id)["status"] in ("queued", "running"):
            server.client.cancel(job_id)


def watch_and_cancel(server, page, link, job_id: str, tmp_path) -> None:
    link.click()
    page.wait_for_url(f"**/#/jobs/{job_id}")
    training = page.locator("#loss-chart g.series[data-name='training loss'] path")

    def points() -> int:
        return int(training.get_attribute("data-n") or 0) if training.count() else 0

    wait_for(lambda: points() >= 2, timeout=60, what="the curve")
    grown = points()
    wait_for(lambda: points() > grown, timeout=30, what="the curve to grow")
    # its axes: tick labels that are numbers, a title each, and a legend naming the curves
    for chart, y_title, names in (("#loss-chart", "loss", ["training loss", "validation loss"]),
                                  ("#score-chart", "validation score", ["validation accuracy"])):
        ticks = texts(page, f"{chart} .x-axis .tick text")
        assert len(ticks) >= 2 and all(float(t) >= 0 for t in ticks), ticks
        assert len(texts(page, f"{chart} .y-axis .tick text")) >= 2
        assert texts(page, f"{chart} .axis-title") == ["epoch", y_title]
        assert set(names) <= set(texts(page, f"{chart} .legend-item text")), chart
    page.screenshot(path=str(tmp_path / "job-running.png"), full_page=True)

    page.click("button.cancel")
    wait_for(lambda: server.client.job(job_id)["status"] == "cancelled", timeout=10, what="the cancel")
    page.locator("h1 .status-cancelled").wait_for(timeout=30_000)  # (the page reads the job every 2 s)


@needs_chromium
def test_a_job_page_downloads_its_model_predicts_and_shows_its_metrics(server, open_page, tmp_path):
    job = server.client.wait(server.client.submit({**IRIS, "epochs": 3})["id"], timeout=120)
    page = open_page(server, path=f"/#/jobs/{job['id']}")
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "model.safetensors"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"{job['id']}.safetensors"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == job["model_sha256"]
    # the final metrics, imbalanced-class ones among them
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        cells = texts(page, f"#metrics tr[data-metric={metric}] td")
        assert cells[2] != "–" and abs(float(cells[2]) - job["scores"]["test_" + metric]) < 1e-3, (metric, cells)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]]
    page.fill("#predict-csv", "\n".join(",".join(map(str, row)) for row in rows))
    page.click("#predict")
    page.locator("#predict-results tbody tr").first.wait_for(timeout=30_000)
    expected = server.client.predict(job["id"], rows, proba=True)
    assert texts(page, "#predict-results td.prediction") == [str(label) for label in expected["labels"]]
    assert len(page.locator("#predict-results thead th").all()) == 1 + 4 + 1 + 3  # row, x0..x3, label, p per class
    page.fill("#predict-csv", "a,b\n1,x")  # (a header, then the server's own words for what is wrong)
    page.click("#predict")
    assert "no names" in page.locator("#predict-results .reason").inner_text(timeout=30_000)
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    phone = open_page(server, path=f"/#/jobs/{job['id']}", width=390)
    phone.locator("#loss-chart svg").wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # (nothing wider than a phone)
    phone.screenshot(path=str(tmp_path / "job-phone.png"), full_page=True)


@needs_chromium
def test_a_grid_sweep_from_the_form_its_page_plots_and_sorts_its_trials(server, open_page, tmp_path):
    page = open_page(server, path="/#/submit")
    sent = []
    page.on("request", lambda request: sent.append(request.post_data_json)
            if request.url.endswith("/v1/sweeps") and request.method == "POST" else None)
    page.select_option("#data", "builtin:iris")
    page.fill("#hidden", "8")
    page.fill("#epochs", "4")
    page.fill("#val-fraction", "0.2")
    page.locator("#grid .grid-values").first.fill("0.01, 0.1, 0.3")  # (optimizer.lr, the row it starts with)
    page.click("#add-grid")
    page.locator("#grid .grid-key").nth(1).fill("model.hidden")
    page.locator("#grid .grid-values").nth(1).fill("[4], [8, 4]")
    page.click("#submit-sweep")
    page.wait_for_url("**/#/sweeps/*")
    sweep_id = page.url.rsplit("/", 1)[1]
    assert set(sent[0]) == {"config", "grid"}  # (search settings only when filled in)
    assert sent[0]["grid"] == {"optimizer.lr": ["0.01", "0.1", "0.3"], "model.hidden": ["[4]", "[8, 4]"]}
    wait_for(lambda: server.client.show_sweep(sweep_id)["state"] == "done", timeout=120, what="the sweep")
    page.locator(".meta .status-done").wait_for(timeout=30_000)
    sweep = server.client.show_sweep(sweep_id)
    assert sweep["size"] == 6 and sweep["counts"]["succeeded"] == 6

    def column(key: str) -> list[str]:
        index = [th.get_attribute("data-key") for th in page.locator("#trials thead th").all()].index(key)
        return [row.locator("td").nth(index).inner_text() for row in page.locator("#trials tbody tr").all()]

    page.click("#trials th[data-key='grid:optimizer.lr'] button")
    assert column("grid:optimizer.lr") == ["0.01", "0.01", "0.1", "0.1", "0.3", "0.3"]
    assert page.get_attribute("#trials th[data-key='grid:optimizer.lr']", "aria-sort") == "ascending"
    page.click("#trials th[data-key='grid:optimizer.lr'] button")
    assert column("grid:optimizer.lr") == ["0.3", "0.3", "0.1", "0.1", "0.01", "0.01"]
    page.click("#trials th[data-key=metric] button")  # (val_accuracy: the best first)
    value = {m["member"]: m["metric_value"] for m in sweep["members"]}
    shown = [value[int(member)] for member in column("member")]
    assert shown == sorted(value.values(), reverse=True)
    assert [float(v) for v in column("metric")] == pytest.approx(shown, abs=1e-4)
    best = sweep["best"]["member"]
    assert page.locator(f"#trials tbody tr[data-member='{best}']").get_attribute("class") == "best"
    # the plots: a line per trial (the best one marked), a scatter per hyperparameter, the top curves
    assert page.locator("#parallel svg path.line").count() == 6
    assert page.locator("#parallel svg path.line.best").count() == 1
    assert texts(page, "#parallel .axis-title") == ["lr", "hidden", "val_accuracy"]
    assert page.locator("#scatters svg").count() == 2
    page.locator("#top-curves .legend-item").nth(4).wait_for(timeout=30_000)
    assert page.locator("#top-curves .legend-item").count() == 5
    assert texts(page, "#top-curves .axis-title") == ["epoch", "val_accuracy"]
    page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)
    page.click("a[data-nav=sweeps]")
    page.locator(f"#sweeps tr a[href='#/sweeps/{sweep_id}']").wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "sweeps.png"), full_page=True)


@needs_chromium
def test_a_searchs_page_marks_its_pruned_trials_and_cancels_a_search(server, open_page, tmp_path):
    """A TPE + ASHA search's page: a pruned trial's row and line drawn as pruned, with the
    epoch it stopped at; then a long search cancelled from its page's button."""
    searched = server.client.sweep({**IRIS, "epochs": 6}, {"optimizer.lr": "loguniform:0.001:0.5"}, search="tpe",
                                   trials=8, prune="asha", reduction_factor=2, stack_size=4)
    wait_for(lambda: server.client.show_sweep(searched["id"])["state"] == "done", timeout=120, what="the search")
    sweep = server.client.show_sweep(searched["id"])
    pruned = [m for m in sweep["members"] if m["trial"]["pruned_epoch"] is not None]
    assert pruned and len(sweep["members"]) == 8
    page = open_page(server, path=f"/#/sweeps/{searched['id']}")
    page.locator(".meta .status-done").wait_for(timeout=30_000)
    assert page.locator("#trials tbody tr.pruned").count() == len(pruned)
    assert page.locator("#parallel svg path.line.pruned").count() == len(pruned)
    header = [th.get_attribute("data-key") for th in page.locator("#trials thead th").all()]
    epochs_at = [row.locator("td").nth(header.index("pruned_epoch")).inner_text()
                 for row in page.locator("#trials tbody tr.pruned").all()]
    assert sorted(epochs_at) == sorted(str(m["trial"]["pruned_epoch"]) for m in pruned)
    assert page.locator("#cancel-sweep").count() == 0  # (a search that ended has nothing to cancel)
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    page.goto(server.url + f"/#/jobs/{pruned[0]['id']}")  # (a trial's page says it is one, and where it stopped)
    trial = page.locator("#trial").inner_text(timeout=30_000)
    assert f"Trial {pruned[0]['trial']['number']} of search {searched['id']}" in trial
    assert f"pruned at epoch {pruned[0]['trial']['pruned_epoch']}" in trial
    long = server.client.sweep({"data": {"train": "builtin:digits"}, "model": {"hidden": [256, 256]}, "epochs": 10000},
                               {"optimizer.lr": [0.01, 0.1]}, search="grid")  # (~40 ms an epoch: minutes)
    page = open_page(server, path=f"/#/sweeps/{long['id']}")
    page.locator("#cancel-sweep").click()
    wait_for(lambda: server.client.show_sweep(long["id"])["state"] == "cancelled", timeout=60, what="the cancel")
    page.locator(".meta .status-cancelled").wait_for(timeout=30_000)
    assert page.locator("#cancel-sweep").count() == 0


@needs_chromium
def test_a_refused_token_brings_back_the_prompt(server, open_page, cli, tmp_path):
    """A wrong token kept in the browser, and a token revoked while the page is open, each
    bring the token prompt back; the right one then shows the jobs."""
    page = open_page(server, token="not-a-token-the-server-gave-anyone-at-all")
    page.locator("#login").wait_for(state="visible", timeout=30_000)
    assert "refused" in page.inner_text("#login-why") and page.inner_text("#view") == ""
    page.screenshot(path=str(tmp_path / "token-prompt.png"))
    page.fill("#token", server.token)
    page.click("#save-token")
    page.locator("#jobs").wait_for(state="attached", timeout=30_000)
    assert page.is_hidden("#login")

    code, output = cli("serve", "token", "create", "reader", "--role", "read", "--data-dir", server.data_dir)
    assert code == 0, output
    reader = output.strip().splitlines()[-1]
    page = open_page(server, token=reader)
    page.wait_for_function("() => document.getElementById('who').textContent === 'signed in as reader (read)'")
    page.locator("#jobs tr").first.wait_for(timeout=30_000)
    assert page.locator("button.cancel").count() == 0  # (a read token cancels nothing: no button)
    code, output = cli("serve", "token", "revoke", "reader", "--data-dir", server.data_dir)
    assert code == 0, output
    page.locator("#login").wait_for(state="visible", timeout=30_000)  # (the list's next refresh: 401)
    assert page.locator("#jobs").count() == 0


# ---------------------------------------------------------------- in Firefox
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


class Marionette:
    """The least of a client of Firefox's Marionette protocol (its remote control, on by
    --marionette; Playwright drives only its own build of Firefox, which cannot be
    downloaded here): length-prefixed JSON messages [0, id, command, parameters] over TCP,
    answered [1, id, error, result]."""

    def __init__(self, port: int, timeout: float = 30):
        import socket

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.pending, self.sent = b"", 0
        self._message()  # (its greeting)

    def _message(self):
        while b":" not in self.pending:
            self.pending += self.socket.recv(65536)
        size, rest = self.pending.split(b":", 1)
        while len(rest) < int(size):
            rest += self.socket.recv(65536)
        self.pending = rest[int(size):]
        return json.loads(rest[: int(size)])

    def __call__(self, command: str, **parameters):
        self.sent += 1
        text = json.dumps([0, self.sent, command, parameters]).encode()
        self.socket.sendall(str(len(text)).encode() + b":" + text)
        while True:
            kind, number, error, result = self._message()
            if kind == 1 and number == self.sent:
                if error:
                    raise AssertionError(f"{command}: {error.get('message', error)}")
                return result

    def run(self, script: str, *args):
        """A script's return value, run in the page (WebDriver's executeScript)."""
        return self("WebDriver:ExecuteScript", script=script, args=list(args))["value"]

    def until(self, script: str, what: str, timeout: float = 60):
        return wait_for(lambda: self.run(script), timeout=timeout, what=what)

    def screenshot(self, path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self("WebDriver:TakeScreenshot", full=True)["value"]))


@pytest.fixture
def firefox(tmp_path):
    """A Marionette session of a headless Firefox (Debian's firefox-esr) on a fresh profile,
    closed after the test."""
    import socket
    import subprocess

    if FIREFOX is None:
        pytest.skip("needs Firefox (.ci/run installs Debian's firefox-esr)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    (profile / "user.js").write_text(f'user_pref("marionette.port", {port});\n')
    process = subprocess.Popen([FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session = Marionette(port)
        session("WebDriver:NewSession", capabilities={})
        yield session
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_pages_work_in_firefox(server, firefox, tmp_path):
    """Firefox (headless, through Marionette) shows the jobs, a job's curves with axes and
    legend, a sweep's trials sorted by a click and its plots, and the submit forms."""
    job = server.client.wait(server.client.submit({**IRIS, "epochs": 4})["id"], timeout=120)
    sweep = server.client.sweep({**IRIS, "epochs": 3}, {"optimizer.lr": [0.3, 0.01, 0.1]})
    for member in sweep["jobs"]:
        server.client.wait(member["id"], timeout=120)
    firefox("WebDriver:Navigate", url=server.url + "/")
    firefox.run("localStorage.setItem('numbamlp-token', arguments[0]); location.hash = '#/jobs'; location.reload();",
                server.token)
    firefox.until(f"return document.querySelector('#job-{job['id']}') !== null", "the jobs page's rows")
    assert firefox.run("return document.getElementById('who').textContent") == "signed in as admin (admin)"
    firefox.screenshot(tmp_path / "firefox-jobs.png")
    firefox.run(f"location.hash = '#/jobs/{job['id']}'")
    firefox.until("const t = [...document.querySelectorAll('.axis-title')].map((e) => e.textContent);"
                  "return ['epoch', 'loss', 'validation score'].every((title) => t.includes(title)) && "
                  "document.querySelectorAll('.legend-item').length >= 3", "the job's curves' axes and legends")
    ticks = firefox.run("return [...document.querySelectorAll('.x-axis .tick text')].map((e) => e.textContent)")
    assert len(ticks) >= 4 and all(float(tick) >= 1 for tick in ticks), ticks
    firefox.screenshot(tmp_path / "firefox-job.png")
    firefox.run(f"location.hash = '#/sweeps/{sweep['id']}'")
    firefox.until("return document.querySelectorAll('#trials tbody tr').length === 3 && "
                  "document.querySelectorAll('#parallel svg path.line').length === 3", "the sweep's trials and plot")
    firefox.run("document.querySelector(\"#trials th[data-key='grid:optimizer.lr'] button\").click()")
    shown = firefox.until("const h = [...document.querySelectorAll('#trials thead th')].map((e) => e.dataset.key);"
                          "const k = h.indexOf('grid:optimizer.lr');"
                          "return [...document.querySelectorAll('#trials tbody tr')].map((r) => r.cells[k].textContent)",
                          "the sorted table")
    assert shown == ["0.01", "0.1", "0.3"]
    firefox.screenshot(tmp_path / "firefox-sweep.png")
    firefox.run("location.hash = '#/submit'")
    firefox.until("return document.getElementById('submit-sweep') !== null && "
                  "document.getElementById('hidden') !== null", "the submit forms")
    assert firefox.run("return document.getElementById('error').textContent") == ""
    firefox.screenshot(tmp_path / "firefox-submit.png")


@needs_chromium
def test_ten_thousand_jobs_a_light_first_load_a_page_at_a_time_and_quick_filters(start_server, open_page, tmp_path,
                                                                                 capsys):
    """With 10,000 jobs stored the jobs page shows one page of them (the API's pagination:
    never all of them), renders it and applies a filter quickly, and the first load (the
    document, then the calls it makes for the first page) weighs under 200 kB."""
    from numbamlp.config import TrainConfig
    from numbamlp.service.store import Store

    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    store = Store(data_dir / "numbamlp.sqlite")
    base = TrainConfig().model_dump(mode="json", by_alias=True)
    configs = [base | {"seed": i, "optimizer": base["optimizer"] | {"lr": (0.01, 0.03, 0.1)[i % 3]}}
               for i in range(10_000)]
    owners = ("alice", "bob", "admin", "carol")
    ids = {owner: [] for owner in owners}
    for i, owner in enumerate(owners):  # (each owner's quarter, submitted in one transaction)
        ids[owner] = [job["id"] for job in store.add_jobs(configs[i::4], owner=owner)]
    every = [job_id for owner in owners for job_id in ids[owner]]
    failed = set(every[::7])
    scores = json.dumps({"val_accuracy": None, "val_loss": None, "test_accuracy": 0.95, "test_loss": 0.2,
                         "test_balanced_accuracy": 0.95, "test_macro_f1": 0.95, "test_roc_auc": 0.99,
                         "test_average_precision": 0.98, "test_log_loss": 0.2})
    store.set_status(failed, "failed", started_at=time.time(), error="training diverged (a stored example)")
    store.set_status([i for i in every if i not in failed], "succeeded", started_at=time.time(),
                     test_accuracy=0.95, scores=scores)
    store.close()
    server = start_server("--batch-window", "0.3", data_dir=data_dir)

    page = open_page(server, token=None)
    document = page.evaluate("performance.getEntriesByType('navigation')[0].decodedBodySize")
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.evaluate("window.longTasks = []; new PerformanceObserver((list) => "  # (tasks that held the page > 50 ms)
                  "window.longTasks.push(...list.getEntries().map((e) => e.duration))).observe({type: 'longtask'})")
    started = time.perf_counter()
    page.fill("#token", server.token)
    page.click("#save-token")
    page.locator("#jobs tr").nth(49).wait_for(timeout=20_000)
    first_page = time.perf_counter() - started
    assert page.locator("#jobs tr").count() == 50 and page.inner_text("#page-info") == "jobs 1–50"
    page.wait_for_timeout(1500)  # (the rows' curves: each job's events, all ended)
    listed = [r for r in responses if "/v1/jobs?" in r.url]
    assert all("limit=50" in r.url for r in listed)  # (a page, never the whole store)
    weight = document + sum(len(r.body()) for r in responses if r.request.resource_type in ("fetch", "xhr")
                            and r.url.startswith(server.url) and "/events" not in r.url)
    events = sum(len(r.body()) for r in responses if "/events" in r.url)
    assert all(r.url.startswith(server.url) for r in responses)  # (nothing from elsewhere)
    assert weight + events < 200_000
    page.screenshot(path=str(tmp_path / "jobs-10000.png"))

    started = time.perf_counter()
    page.select_option("#status-filter", "failed")
    page.wait_for_function("() => [...document.querySelectorAll('#jobs tr')].length === 50 && "
                           "[...document.querySelectorAll('#jobs tr')].every((tr) => tr.dataset.status === 'failed')",
                           timeout=20_000)
    filtered = time.perf_counter() - started
    started = time.perf_counter()
    page.fill("#owner-filter", "carol")
    page.press("#owner-filter", "Enter")
    page.wait_for_function("() => [...document.querySelectorAll('#jobs tr .owner')].every((td) => td.textContent === 'carol')",
                           timeout=20_000)
    owner_filtered = time.perf_counter() - started
    newest = page.locator("#jobs tr").first.get_attribute("id")
    page.click("#older")
    page.wait_for_function(f"() => document.querySelector('#jobs tr').id !== '{newest}'", timeout=20_000)
    assert page.inner_text("#page-info") == "jobs 51–100"
    page.mouse.wheel(0, 5000)
    frame = page.evaluate("new Promise((done) => { const t = performance.now(); "
                          "requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t))); })")
    longest = max(page.evaluate("window.longTasks"), default=0)
    page.screenshot(path=str(tmp_path / "jobs-10000-filtered.png"))
    page.set_viewport_size({"width": 390, "height": 800})  # (a phone: the table scrolls, the page does not)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "jobs-phone.png"))
    with capsys.disabled():
        print(f"\n10,000 jobs: first page drawn {first_page:.2f} s after the token; status filter {filtered:.2f} s; "
              f"owner filter {owner_filtered:.2f} s; two frames after scrolling {frame:.0f} ms; longest task "
              f"{longest:.0f} ms; first load {weight / 1000:.1f} kB (document {document / 1000:.1f} kB) "
              f"+ {events / 1000:.1f} kB of events")
