"""What the service's requests and answers hold: the pydantic models behind the OpenAPI
document's schemas (their class names are its schema names), and ``job_view``, a stored
job as the API shows it."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from numbamlp.job_status import JobStatus
from numbamlp.service.auth import ROLES


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
    config: dict[str, Any] = Field(default_factory=dict, description="The base TrainConfig.")
    grid: dict[str, list[Any] | str] = Field(description="Setting → values (lists; range strings with random).")
    random: int | None = Field(None, ge=1, description="Draw this many members instead of every combination.")


class PredictRequest(_Body):
    X: list[list[Annotated[float, Field(allow_inf_nan=False)]]] = Field(description="Rows of raw features (N, D).")
    columns: list[str] | None = Field(None, description="The names of X's columns: with a model that knows its "
                                      "features' names, X's columns are taken by name, in the model's order (others "
                                      "left out); without, X's columns are the model's features in order.")
    proba: bool = Field(False, description="Also return the probability of every class.")


# ---------------------------------------------------------------- answers
class Stack(BaseModel):
    id: str
    size: int


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
        description="Every validation and test metric of the saved model: accuracy and loss for a classifier, "
        "r2, mse, mae and loss for a regressor.")
    error: str | None


class JobList(BaseModel):
    jobs: list[Job]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class SweepJobs(BaseModel):
    id: str
    jobs: list[Job]


class Dataset(BaseModel):
    id: str = Field(description="sha256 of the file; name it in a config as dataset:<id>.")
    format: Literal["npz", "parquet", "csv"]
    size: int
    rows: int
    features: int


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
    stack = {"id": job["stack_id"], "size": job["stack_size"]} if job["stack_id"] else None
    return {k: job[k] for k in Job.model_fields if k != "stack"} | {"stack": stack}
