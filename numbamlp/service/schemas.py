"""What the service's requests and answers hold: the pydantic models behind the OpenAPI
document's schemas (their class names are its schema names), and ``job_view``, a stored
job as the API shows it."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, create_model, model_validator
from pydantic_core import PydanticCustomError

from numbamlp.job_status import STATUSES, TRIAL_STATUSES, JobStatus, TrialStatus, trial_status
from numbamlp.service.auth import ROLES
from numbamlp.service.store import SEARCH_STATES
from numbamlp.sweeps import DEFAULT_MAX_MEMBERS, DEFAULT_SEARCH_STACK, DEFAULT_STACK_SIZE, PRUNERS, SEARCHES
from numbamlp.sweeps.search import DEFAULT_REDUCTION_FACTOR


# ---------------------------------------------------------------- requests
class _Body(BaseModel):
    """A request body.  Unknown fields are refused (a config sent without its {"config": ...}
    wrapper would otherwise train the defaults), and so is text UTF-8 cannot encode (a lone
    surrogate such as \\ud800, which JSON can spell): stored, it would make every later
    listing of the jobs fail to encode."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _utf8_only(cls, value):
        if not isinstance(value, dict):  # (e.g. curl -d's form encoding: FastAPI hands over the raw bytes)
            raise PydanticCustomError("json_object", "the body must be a JSON object, sent with Content-Type: "
                                      "application/json")
        try:
            json.dumps(value, ensure_ascii=False).encode()  # (the fast check, at C speed)
        except UnicodeEncodeError:
            raise PydanticCustomError("unencodable_text", "{where} is not UTF-8 text (it holds a lone surrogate "
                                      "such as \\ud800)", {"where": _unencodable(value)}) from None
        return value


def _unencodable(value, where: str = "") -> str | None:
    """Where in a parsed JSON document a string or key is not encodable as UTF-8, if anywhere."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return where or "the body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if _unencodable(key) is not None:
                return f"a key of {where or 'the body'}"
            found = _unencodable(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unencodable(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


class JobRequest(_Body):
    config: dict[str, Any] = Field(default_factory=dict, description="A TrainConfig (partial: defaults fill the rest).")


class SweepRequest(_Body):
    """A grid sweep (``config``, ``grid``, ``random``), or, with ``search``, a search: the
    settings of numbamlp.sweeps.sweep, under its names, with its defaults and checks."""

    config: dict[str, Any] = Field(default_factory=dict, description="The base TrainConfig.")
    grid: dict[str, list[Any] | str] = Field(description="Setting → values (lists; range strings with random, or "
                                             "a search: a range, uniform:A:B, loguniform:A:B or int:A:B, as a "
                                             "key's only value).")
    random: int | None = Field(None, ge=1, description="Draw this many members instead of every combination.")
    search: Literal[SEARCHES] | None = Field(None, description="Ask an Optuna study for trials instead: tpe, cmaes, "
                                             "random, or grid (every combination of the lists, once).")
    trials: int | None = Field(None, le=DEFAULT_MAX_MEMBERS, description="How many trials a search asks for (a "
                               "grid search: at most its combinations, all of them by default).")
    prune: Literal[PRUNERS] = Field("none", description="Stop a search's poor trials early, from the validation "
                                    "metric after every epoch: median, asha or hyperband.")
    min_epochs: int = Field(1, description="The first epoch the pruner may stop a trial at.")
    reduction_factor: int = Field(DEFAULT_REDUCTION_FACTOR, description="The pruner's reduction factor (about one "
                                  "trial in this many goes on at each rung).")
    stack_size: int | None = Field(None, ge=1, le=DEFAULT_STACK_SIZE, description="A search's slots in each running "
                                   "stack, which is also how many trials are in flight "
                                   f"({DEFAULT_SEARCH_STACK} unless given).")


def _cell(value):
    """A cell of a row by column name: a number, a string, a boolean or null (missing)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise PydanticCustomError("cell", "a cell is a number, a string, true, false or null (a missing value)")


Cell = Annotated[Any, PlainValidator(_cell), WithJsonSchema(
    {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]})]


class PredictRequest(_Body):
    X: list[list[Annotated[float, Field(allow_inf_nan=False)]]] | None = Field(
        None, description="Rows of raw features (N, D), numbers only (or give rows).")
    rows: list[dict[str, Cell]] | None = Field(
        None, description="Rows by column name (or give X), for a model that knows its features' names: each row "
        "{column: value} names every column the model was trained with (others are left out).  A model of a table "
        "(text, missing cells) takes numbers, strings and null (a missing value) as its columns held them; a model "
        "of numbers takes finite numbers.")
    columns: list[str] | None = Field(None, description="The names of X's columns: with a model that knows its "
                                      "features' names, X's columns are taken by name, in the model's order (others "
                                      "left out); without, X's columns are the model's features in order.")
    proba: bool = Field(False, description="Also return the probability of every class.")

    @model_validator(mode="after")
    def _x_or_rows(self):
        if (self.X is None) == (self.rows is None):
            raise PydanticCustomError("x_or_rows", "give X (rows of numbers) or rows (rows by column name), one of them")
        if self.rows is not None and self.columns is not None:
            raise PydanticCustomError("columns_with_rows", "columns names X's columns; rows name their own")
        return self


# ---------------------------------------------------------------- answers
class Stack(BaseModel):
    id: str
    size: int = Field(description="The stack's slots.")
    joined_at_epoch: int | None = Field(description="The epochs the stack had run when this job took a slot "
                                        "that another job had left (it was queued alone and fitted the running "
                                        "stack); null: it started with the stack.")


class Trial(BaseModel):
    number: int = Field(description="The trial's number in its search's study (its member in the sweep).")
    status: TrialStatus = Field(description="queued (asked, waiting for a slot of its search's stacks, or for the "
                                "outcome of the trial it repeats); running; "
                                "finished (it succeeded), or pruned (its search's pruner stopped it early: it "
                                "succeeded with the model of pruned_epoch); failed; cancelled.")
    pruned_epoch: int | None = Field(description="The epoch a pruned trial stopped at; null otherwise.")
    repeat_of: int | None = Field(description="The earlier trial whose settings, and so whose outcome, this one "
                                  "repeats (it was not trained again); null otherwise.")


class Job(BaseModel):
    id: str
    owner: str | None = Field(description="The name of the token that submitted the job.")
    status: JobStatus
    config: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    stack: Stack | None = Field(description="The stack that trained (trains) the job, and its size.")
    sweep_id: str | None
    cancel_requested: bool
    test_accuracy: float | None
    test_loss: float | None
    val_accuracy: float | None
    val_loss: float | None
    model_sha256: str | None
    scores: dict[str, float | None] | None = Field(
        description="Every validation and test metric of the saved model: for a classifier accuracy, loss, "
        "balanced_accuracy, f1 (two classes) or macro_f1, roc_auc, average_precision (null where undefined: one "
        "class present) and the test rows' log_loss; for a regressor r2, mse, mae and loss.")
    error: str | None
    trial: Trial | None = Field(description="What a search's trial's job is as a trial; null for other jobs.")


class JobList(BaseModel):
    jobs: list[Job]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class SweepJobs(BaseModel):
    id: str
    jobs: list[Job]


SWEEP_STATES = SEARCH_STATES  # a grid sweep's (queued, running, done), from its members; a search's: Sweep.state
SweepState = Literal[SWEEP_STATES]


# a sweep's members by status: a count for each of job_status.STATUSES, 0 included
SweepCounts = create_model("SweepCounts", __doc__="A sweep's members by status, 0 included.",
                           **{status: (int, ...) for status in STATUSES})


TrialCounts = create_model("TrialCounts", __doc__="A search's trials by status, 0 included.",
                           **{status: (int, ...) for status in TRIAL_STATUSES})


class Search(BaseModel):
    """A search's settings (as POST /v1/sweeps took them, the defaults filled in), its
    trials by status, and whether it is asked to stop or why it failed."""

    search: Literal[SEARCHES]
    trials: int = Field(description="The trials it asks for in all.")
    prune: Literal[PRUNERS]
    min_epochs: int
    reduction_factor: int
    stack_size: int
    trials_by_status: TrialCounts
    cancel_requested: bool
    error: str | None = Field(description="Why a failed search failed; null otherwise.")


class SweepBest(BaseModel):
    job_id: str
    member: int = Field(description="The member's index: its place in the sweep's order (0 the first).")
    metric: str
    value: float


class Sweep(BaseModel):
    id: str
    owner: str | None = Field(description="The name of the token that submitted the sweep.")
    created_at: float = Field(description="When the sweep was submitted.")
    finished_at: float | None = Field(description="When its last member ended (a search: when it ended); null until "
                                      "then.")
    size: int = Field(description="How many members (jobs) the sweep has: a search's, its trials asked so far.")
    counts: SweepCounts
    state: SweepState = Field(description="A grid sweep's: queued: no member has started; running: a member has "
                              "started (is training, paused between time slices, or ended) and another has not ended; "
                              "done: every member ended (succeeded, failed or cancelled).  A search's: queued (for its "
                              "turn: one search runs at a time), running, done (every trial asked and ended), cancelled, failed (search.error "
                              "says why).")
    metric: str = Field(description="The validation metric that ranks the members: their early_stopping.metric, "
                        "else the task's default (val_accuracy, val_r2), as numbamlp sweep ranks them.")
    best: SweepBest | None = Field(description="The best succeeded member so far by the metric (ties to the lower "
                                   "val_loss, then the lower member; a search's pruned trials are never the best); "
                                   "null while none has succeeded with it.")
    search: Search | None = Field(description="A search's settings and trials; null for a grid sweep.")


class SweepList(BaseModel):
    sweeps: list[Sweep]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class SweepMember(Job):
    member: int = Field(description="The member's index: its place in the sweep's order (0 the first); a search's "
                        "trial's number.")
    grid: dict[str, Any] | None = Field(description="The member's grid values {setting: value}; null for a sweep "
                                        "submitted before the service kept them.")
    metric_value: float | None = Field(description="The saved model's value of the sweep's metric; null until "
                                       "the member has succeeded, or where undefined.")
    epochs: int | None = Field(description="The last epoch trained so far (stored events); null before the first.")


class SweepDetail(Sweep):
    members: list[SweepMember] = Field(description="Every member, in the sweep's order.")


class Dataset(BaseModel):
    id: str = Field(description="sha256 of the file; name it in a config as dataset:<id>.")
    format: Literal["npz", "parquet", "csv"]
    size: int
    rows: int
    features: int = Field(description="Its feature columns: a table's (text or missing cells) are its columns but "
                          "the label and the identifier-like ones, which a job's data.features and data.drop may "
                          "change.")


class DatasetColumn(BaseModel):
    name: str = Field(description="The column's name; a file without names (.npz, a CSV without a header): its "
                      "position among the features, from 0.")
    type: str | None = Field(description="What the server read it as: text (a table's categories) or the dtype of "
                             "its numbers (int64, float64, ...); null for an identifier, which is not read.")
    role: Literal["feature", "identifier"] = Field(
        description="feature: a job that names no column roles trains on it; identifier: left out, its values all "
        "different like an identifier's (data.features may keep it).")


class UploadedDataset(Dataset):
    """An upload's answer: the Dataset, with what the server read of each column (the
    dashboard shows them back)."""

    columns: list[DatasetColumn] = Field(description="The file's columns but the label, in its order, as a job "
                                         "that names no column roles (data.features, data.drop, data.categorical) "
                                         "reads them.")


class Prediction(BaseModel):
    labels: list[Any] | None = Field(description="A classifier's predicted labels (its class values).")
    proba: list[list[float]] | None = Field(description="A classifier's class probabilities, when asked for.")
    values: list[Any] | None = Field(None, description="A regressor's predictions, in its targets' units: a "
                                     "number per row, or a list of K per row.")


class Me(BaseModel):
    name: str = Field(description="The token's name (what jobs record as their owner).")
    role: Literal[ROLES]  # (auth.ROLES, as a type)


def job_view(job: dict) -> dict:
    """A stored job as the API shows it."""
    stack = {"id": job["stack_id"], "size": job["stack_size"], "joined_at_epoch": job["joined_at_epoch"]} \
        if job["stack_id"] else None
    return {k: job[k] for k in Job.model_fields if k not in ("stack", "trial")} | {"stack": stack,
                                                                                     "trial": trial_view(job)}


def trial_view(job: dict) -> dict | None:
    """A search's trial's job as a trial (schemas.Trial); None for another job."""
    trial = job.get("trial")
    if trial is None:
        return None
    return {**trial, "status": trial_status(job["status"], trial["pruned_epoch"])}
