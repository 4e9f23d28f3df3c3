"""A client of the training service (`numbamlp serve`), on the standard library alone.

    from numbamlp import Client
    client = Client("http://127.0.0.1:8000", token)
    job = client.submit({"epochs": 20, "optimizer": {"lr": 0.1}})
    for epoch, metrics in client.events(job["id"]): ...
    client.wait(job["id"]); client.download(job["id"], "model.safetensors")

Every method returns the server's JSON (dicts); an HTTP error is a ServiceError carrying
the status code and the server's one-line message.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from numbamlp.job_status import FINAL


class ServiceError(RuntimeError):
    """The service answered with an error (``status``: the HTTP code), or could not be reached
    (``status`` None)."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0):
        address = urllib.parse.urlsplit(url)
        if address.scheme not in ("http", "https") or not address.netloc:
            raise ValueError(f"{url!r} is not an http:// or https:// address (e.g. http://127.0.0.1:8000)")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    # ------------------------------------------------------------ transport
    def _request(self, method: str, path: str, body=None, headers=None, raw: bool = False, timeout=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
                headers.setdefault("Content-Type", "application/octet-stream")
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as err:
            raise ServiceError(err.code, f"{err.code}: {_detail(err.read())}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ServiceError(None, f"cannot reach {self.url}: {reason}") from None
        if raw:
            return response
        with response:
            return json.loads(response.read() or b"null")

    # ------------------------------------------------------------ jobs
    def submit(self, config: dict | None = None, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request("POST", "/v1/jobs", {"config": config or {}}, headers)

    def sweep(self, config: dict | None, grid: dict, random: int | None = None, search: str | None = None,
              trials: int | None = None, prune: str | None = None, min_epochs: int | None = None,
              reduction_factor: int | None = None, stack_size: int | None = None) -> dict:
        """A grid sweep: a job per member of ``grid`` over ``config`` (or ``random`` draws) →
        {"id", "jobs"}.  With ``search`` ("tpe", "cmaes", "random", "grid"), a search, with
        numbamlp.sweeps.sweep's settings (the server's defaults for those left None) →
        {"id", "jobs": []}: its trials become jobs as it asks them (``show_sweep``)."""
        settings = {name: value for name, value in (("search", search), ("trials", trials), ("prune", prune),
                                                    ("min_epochs", min_epochs), ("reduction_factor", reduction_factor),
                                                    ("stack_size", stack_size)) if value is not None}
        return self._request("POST", "/v1/sweeps", {"config": config or {}, "grid": grid, "random": random, **settings})

    def show_sweep(self, sweep_id: str) -> dict:
        """The sweep: its state, counts, best member, a search's settings, and its members."""
        return self._request("GET", self._path("sweeps", sweep_id))

    def cancel_sweep(self, sweep_id: str) -> dict:
        """Cancel a search (it stops after its current step), or a grid sweep's members not yet ended."""
        return self._request("POST", self._path("sweeps", sweep_id, "/cancel"))

    @staticmethod
    def _path(collection: str, item_id: str, rest: str = "") -> str:
        """/v1/<collection>/<id><rest>, the id quoted (an empty one, as from an unset shell
        variable, would name the whole collection)."""
        if not isinstance(item_id, str) or not item_id.strip():
            raise ValueError(f"a {collection[:-1]} id is a non-empty string, got {item_id!r}")
        return f"/v1/{collection}/{urllib.parse.quote(item_id, safe='')}{rest}"

    @classmethod
    def _job_path(cls, job_id: str, rest: str = "") -> str:
        return cls._path("jobs", job_id, rest)

    def job(self, job_id: str) -> dict:
        return self._request("GET", self._job_path(job_id))

    def jobs(self, status: str | None = None, limit: int = 50, page_token: str | None = None,
             owner: str | None = None) -> dict:
        """One page: {"jobs": [...], "next_page_token": ...}, newest first (``owner``'s only,
        when given: the name of the token that submitted them)."""
        query = {k: v for k, v in (("status", status), ("limit", limit), ("page_token", page_token),
                                   ("owner", owner)) if v is not None}
        return self._request("GET", "/v1/jobs?" + urllib.parse.urlencode(query))

    def all_jobs(self, status: str | None = None, page_size: int = 200, owner: str | None = None):
        """Every job (``owner``'s only, when given), newest first, page after page."""
        token = None
        while True:
            page = self.jobs(status, page_size, token, owner)
            yield from page["jobs"]
            token = page["next_page_token"]
            if token is None:
                return

    def me(self) -> dict:
        """{"name", "role"} of this client's token."""
        return self._request("GET", "/v1/me")

    def cancel(self, job_id: str) -> dict:
        return self._request("POST", self._job_path(job_id, "/cancel"))

    def events(self, job_id: str, last_event_id: int | None = None, reconnects: int = 3):
        """(epoch, metrics) for each epoch as it ends (a finished job's history at once), then
        ("end", {status, ...}).  ``last_event_id`` resumes after that epoch.  A stream that
        closes before the job's end (a server stopping closes its streams) is opened again
        after the last epoch seen, up to ``reconnects`` times in a row without a new event;
        then, or when the server cannot be reached, ServiceError: never a silent end."""
        tries, connected = 0, [False]
        while True:
            try:
                for event in self._event_stream(job_id, last_event_id, connected):
                    yield event
                    if event[0] == "end":
                        return
                    last_event_id, tries = event[0], 0
            except ServiceError as err:
                if err.status is not None or not connected[0]:
                    raise
                raise ServiceError(None, f"the event stream of job {job_id} closed before the job ended, and the "
                                   f"server is gone ({err}); once it is back, events(last_event_id="
                                   f"{last_event_id}) goes on from there") from None
            except (OSError, http.client.HTTPException):  # (the connection broke mid-stream: as a closed one)
                pass
            tries += 1
            if tries > reconnects:
                raise ServiceError(None, f"the event stream of job {job_id} closed {reconnects + 1} times without "
                                   "a new event before the job ended")
            time.sleep(0.5)

    def _event_stream(self, job_id: str, last_event_id: int | None, connected: list):
        """One connection's events (events' items), until the server ends or closes it;
        ``connected[0]`` is set once a stream has opened."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else None
        with self._request("GET", self._job_path(job_id, "/events"), headers=headers, raw=True,
                           timeout=3600) as stream:
            connected[0] = True
            fields: dict[str, str] = {}
            for raw_line in stream:
                line = raw_line.decode().rstrip("\n")
                if line.startswith(":"):  # (a comment: the server's heartbeat)
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if fields.get("event") == "epoch":
                    yield int(fields["id"]), json.loads(fields["data"])
                elif fields.get("event") == "end":
                    yield "end", json.loads(fields["data"])
                    return
                fields = {}

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 0.2) -> dict:
        """The job once it is succeeded, failed or cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(poll)

    def download(self, job_id: str, path, overwrite: bool = False) -> Path:
        """The job's model file, written to ``path`` (an existing file only with
        ``overwrite``: OutputPathError otherwise, before anything is downloaded)."""
        from numbamlp.io import atomic_write_bytes
        from numbamlp.paths import check_output_file

        check_output_file(path, overwrite, "the model file")
        with self._request("GET", self._job_path(job_id, "/model"), raw=True) as response:
            atomic_write_bytes(Path(path), response.read())
        return Path(path)

    def model_metadata(self, job_id: str) -> dict:
        """The numbamlp metadata of a succeeded job's model file (task, layers: [features, ...,
        outputs], classes, config), read from the head of GET /v1/jobs/{id}/model: the file's
        safetensors header, without the weights after it."""
        with self._request("GET", self._job_path(job_id, "/model"), raw=True) as response:
            try:
                size = int.from_bytes(response.read(8), "little")
                if not 2 <= size <= 100_000_000:  # (safetensors' own bound on a header)
                    raise ValueError(f"a header of {size} bytes")
                header = json.loads(response.read(size))
                return json.loads(header["__metadata__"]["numbamlp"])
            except (ValueError, KeyError, TypeError) as err:
                raise ServiceError(None, f"job {job_id}'s model file is not a numbamlp model ({err})") from None
            except (OSError, http.client.HTTPException) as err:
                raise ServiceError(None, f"cannot read job {job_id}'s model from {self.url}: {err}") from None

    def predict(self, job_id: str, X, proba: bool = False, columns: list[str] | None = None) -> dict:
        """The job's model's predictions for the rows of X; ``columns`` (a DataFrame's own,
        by default) name X's columns, which a model that knows its features' names takes by
        name.  Rows by column name, for a model of a table (text, missing cells): X a list of
        {column: value} dicts, a dict {column: values}, or a DataFrame with a column that is
        not numbers or a missing cell (sent as rows: None, NaN and pandas' NA as null)."""
        rows = _named_rows(X) if columns is None else None
        if rows is not None:
            return self._request("POST", self._job_path(job_id, "/predict"), {"rows": rows, "proba": proba})
        if columns is None and hasattr(X, "columns"):
            columns = [str(c) for c in X.columns]
            X = X.to_numpy()
        rows = [[float(v) for v in row] for row in X]
        body = {"X": rows, "proba": proba} | ({"columns": list(columns)} if columns is not None else {})
        return self._request("POST", self._job_path(job_id, "/predict"), body)

    # ------------------------------------------------------------ data
    def upload_dataset(self, path, label_column: str | int | None = None) -> dict:
        """Send an .npz, .parquet or .csv file (label_column: a .csv or .parquet file's label
        column when it is not the last, as the job's data.label_column will say); returns
        {"id", ...}: name it in configs as dataset:<id>."""
        query = "" if label_column is None else "?" + urllib.parse.urlencode({"label_column": label_column})
        body = Path(path).read_bytes()
        # the server refuses a wrong token before it reads a body, and closes the connection:
        # a big body would then break off mid-send, said as "cannot reach".  Ask first.
        self.me()
        return self._request("POST", "/v1/datasets" + query, body)

    def health(self) -> dict:
        return self._request("GET", "/healthz")


def _named_rows(X) -> list[dict] | None:
    """X as rows by column name, [{column: cell}] (cells JSON's: numbers, strings, booleans,
    None for a missing value), when X is rows of dicts, a dict of columns, or a DataFrame
    that is not all numbers without a missing cell; None otherwise (X is sent as numbers)."""
    if isinstance(X, dict):
        names = [str(name) for name in X]
        columns = [list(values) for values in X.values()]
        return [{name: _cell(column[i]) for name, column in zip(names, columns)}
                for i in range(len(columns[0]) if columns else 0)]
    if isinstance(X, (list, tuple)) and X and all(isinstance(row, dict) for row in X):
        return [{str(name): _cell(value) for name, value in row.items()} for row in X]
    if hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "isna"):  # (pandas)
        numbers = all(getattr(dtype, "kind", "O") in "biuf" for dtype in X.dtypes)
        if numbers and not bool(X.isna().to_numpy().any()):
            return None
        names = [str(name) for name in X.columns]
        return [{name: _cell(value) for name, value in zip(names, row)}
                for row in X.itertuples(index=False, name=None)]
    return None


def _cell(value):
    """One cell as JSON takes it: numpy's scalars as Python's, a missing value (None, NaN,
    pandas' NA or NaT) as None, any other object as its text."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # (numpy scalars)
        value = value.item()
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200]
    return detail if isinstance(detail, str) else json.dumps(detail)
