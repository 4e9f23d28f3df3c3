"""A sweep's directory on disk (numbamlp.layout says what it holds): checked and claimed
before anything trains, written as each stack finishes, read back by ``resume``."""

from __future__ import annotations

import json
from pathlib import Path

from numbamlp.config import TrainConfig
from numbamlp.io import atomic_write_bytes, atomic_write_json, json_text
from numbamlp.layout import (MODEL_FILE, RESULTS_CSV, RESULTS_JSONL, RUN_FILES, SUMMARY_FILE, SWEEP_FILE, SWEEP_FILES,
                             holds_sweep, member_directory)
from numbamlp.sweeps.errors import SweepError
from numbamlp.sweeps.results import table_csv
from numbamlp.sweeps.task import write_run_files

NEW_DIRECTORY = "<new sweeps/ directory>"  # out=NEW_DIRECTORY: sweeps/<UTC timestamp>, as the CLI's default


def check_new_directory(out) -> None:
    """SweepError unless ``out`` can become a new sweep's directory: writable, and holding
    no sweep, no run and none of the files a sweep would write over (a user's own)."""
    from numbamlp.paths import check_output_directory

    check_output_directory(out, "the sweep directory")
    if holds_sweep(Path(out)):
        raise SweepError(f"{out} already holds a sweep; choose another --out, or --resume it")
    in_the_way = [name for name in dict.fromkeys((*SWEEP_FILES, *RUN_FILES)) if (Path(out) / name).exists()]
    if in_the_way:  # (a run's, or a user's own files: a sweep would write over them)
        raise SweepError(f"{out} already holds {', '.join(in_the_way)}; choose another --out for the sweep")


def claim_directory(out, plan: dict) -> Path:
    """Create the sweep's directory (NEW_DIRECTORY: sweeps/<UTC timestamp>) and its sweep.json,
    which claims it: of two sweeps started on one directory, the second is refused."""
    from numbamlp.paths import RunDirectoryTaken, claim_run_directory

    try:
        directory = claim_run_directory(None if out is NEW_DIRECTORY else out, SWEEP_FILE, parent="sweeps")
    except RunDirectoryTaken:
        raise SweepError(f"{out} already holds a sweep; choose another --out, or --resume it") from None
    atomic_write_json(directory / SWEEP_FILE, plan)
    return directory


class SweepWriter:
    """The sweep's directory, written as each stack finishes (every file atomically); a sweep
    without one (``directory`` None) writes nothing."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def model_path(self, member: int) -> Path:
        """Where member ``member``'s model file is (a resumed sweep's directory may have moved)."""
        return member_directory(self.directory, member) / MODEL_FILE

    def member(self, member: int, config: TrainConfig, outcome: dict, splits) -> str | None:
        """Member ``member``'s run files; returns its model path (None without a model)."""
        if self.directory is None:
            return None
        return write_run_files(member_directory(self.directory, member), config, outcome, splits)

    def rows(self, table: list[dict]) -> None:
        """results.jsonl and results.csv: the rows of the members finished so far."""
        if self.directory is None:
            return
        lines = "".join(json_text(row) + "\n" for row in table)
        atomic_write_bytes(self.directory / RESULTS_JSONL, lines.encode())
        atomic_write_bytes(self.directory / RESULTS_CSV, table_csv(table).encode())

    def summary(self, summary: dict) -> None:
        if self.directory is not None:
            atomic_write_json(self.directory / SUMMARY_FILE, summary)


def read_finished_rows(directory: Path) -> list[dict]:
    """The rows a sweep directory's results.jsonl holds (an interrupted sweep's)."""
    path = directory / RESULTS_JSONL
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise SweepError(f"{path} line {number} is not JSON; the sweep directory is damaged") from None
    return rows


def read_sweep_plan(directory) -> dict:
    """The sweep.json of an existing sweep directory (what ``resume`` trains)."""
    path = Path(directory) / SWEEP_FILE
    if not path.is_file():
        raise SweepError(f"{directory} is not a sweep directory (no {SWEEP_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{path} is not valid JSON: {err}") from None
