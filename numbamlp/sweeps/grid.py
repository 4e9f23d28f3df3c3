"""A sweep's grid: its keys (dotted TrainConfig paths), its values as written on the command
line, in a config file's ``[grid]`` table or in Python, and the members it makes.

A grid maps settings (``optimizer.lr``, ``model.hidden``, ``seed``, ...; a leaf name that
only one setting has, such as ``lr``, stands for it) to lists of values; the members are
their cartesian product, or, with ``random=N``, N draws from the lists and from ranges
(``uniform:A:B``, ``loguniform:A:B``, ``int:A:B``) with the sweep's seed.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.sweeps.errors import SweepError

RANGE_KINDS = ("uniform", "loguniform", "int")


@dataclass(frozen=True)
class Range:
    """A range to draw from (``random`` sweeps only): uniform, log-uniform, or integers A..B."""

    kind: str
    low: float
    high: float

    def draw(self, rng: np.random.Generator):
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def __str__(self) -> str:
        return f"{self.kind}:{self.low:g}:{self.high:g}"

    @property
    def exact_text(self) -> str:
        """The range as written to a file (a search's sweep.json): its bounds in full, so
        that reading it back gives this range, not a neighbour."""
        return f"{self.kind}:{self.low!r}:{self.high!r}"


def setting_paths() -> list[str]:
    """Every dotted path of a single setting in TrainConfig (``optimizer.lr``, ``seed``, ...)."""
    from pydantic import BaseModel

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            key = field.alias or name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{key}.")
            else:
                yield prefix + key

    return list(walk(TrainConfig, ""))


def resolve_key(key: str) -> str:
    """The setting a grid key names: a dotted path, or a leaf name that only one setting has
    (``lr`` → ``optimizer.lr``); SweepError otherwise, with the closest names."""
    paths = setting_paths()
    if key in paths:
        return key
    by_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == key]
    if len(by_leaf) == 1:
        return by_leaf[0]
    if len(by_leaf) > 1:
        raise SweepError(f"grid key {key!r} is ambiguous: write {' or '.join(by_leaf)}")
    close = difflib.get_close_matches(key, paths, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (see numbamlp train --help)"
    raise SweepError(f"grid key {key!r} is not a setting{hint}")


def _split_top_level(text: str) -> list[str]:
    """'a,[1,2],b' → ['a', '[1,2]', 'b']: commas inside brackets belong to the value."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise SweepError(f"unbalanced ']' in {text!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise SweepError(f"unbalanced '[' in {text!r}")
    return [*parts, current]


def parse_value(text: str):
    """One value as written on the command line: a range (``loguniform:1e-4:1e-1``), a
    number, true/false/null, a bracketed list (``[128,64]``), or else the text itself."""
    text = text.strip()
    kind, _, bounds = text.partition(":")
    if kind in RANGE_KINDS and bounds:
        return parse_range(kind, bounds, text)
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text)  # .5, 1e-3 and the like that JSON does not take
    except ValueError:
        pass
    if text.startswith("["):
        return [parse_value(item) for item in _split_top_level(text[1:-1]) if item.strip()]
    return text


def parse_range(kind: str, bounds: str, text: str) -> Range:
    low, _, high = bounds.partition(":")
    try:
        low_value, high_value = float(low), float(high)
    except ValueError:
        raise SweepError(f"range {text!r} must be {kind}:LOW:HIGH with two numbers") from None
    if not (math.isfinite(low_value) and math.isfinite(high_value)):
        raise SweepError(f"range {text!r} must have finite bounds")
    if kind == "int" and max(abs(low_value), abs(high_value)) >= 2**62:  # (numpy draws int64 below that)
        raise SweepError(f"range {text!r}: int bounds must lie within ±2**62")
    if not low_value <= high_value:
        raise SweepError(f"range {text!r} has LOW above HIGH")
    if kind == "loguniform" and low_value <= 0:
        raise SweepError(f"range {text!r}: loguniform needs LOW > 0")
    if kind == "int" and (low_value != int(low_value) or high_value != int(high_value)):
        raise SweepError(f"range {text!r}: int needs whole numbers")
    return Range(kind, low_value, high_value)


def parse_grid_option(text: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` (one ``--grid``) → (the setting's dotted path, its values)."""
    key, equals, values = text.partition("=")
    if not equals or not key.strip():
        raise SweepError(f"--grid {text!r} must be KEY=V1,V2,... (e.g. optimizer.lr=0.01,0.1)")
    items = _split_top_level(values)
    if not any(item.strip() for item in items):
        raise SweepError(f"--grid {text!r} gives no values for {key.strip()}")
    if not all(item.strip() for item in items):  # (0.1, or 0.1,,0.3: a value left out by mistake)
        raise SweepError(f"--grid {text!r} has an empty value; write KEY=V1,V2,... without empty items")
    return resolve_key(key.strip()), [parse_value(item) for item in items]


def grid_from_table(table: dict) -> dict[str, list]:
    """A config file's ``[grid]`` table (nested tables for dotted keys) → {path: values}; a
    value is a list of values or one range string."""
    grid: dict[str, list] = {}
    if not isinstance(table, dict):
        raise SweepError(f"grid must be a table of KEY = [values] (e.g. [grid] with lr = [0.01, 0.1]), "
                         f"got {type(table).__name__}")

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
                continue
            path = resolve_key(prefix + key)
            if path in grid:  # (e.g. lr = [...] beside [grid.optimizer] lr = [...])
                raise SweepError(f"grid sets {path} twice")
            if isinstance(value, str):
                value = [parse_value(value)]
            if not isinstance(value, list) or not value:
                raise SweepError(f"grid.{prefix}{key} must be a non-empty list of values (or a range string)")
            grid[path] = [parse_value(v) if isinstance(v, str) else v for v in value]

    walk("", table)
    return grid


def normalise_grid(grid: dict) -> dict[str, list]:
    """A grid from Python: keys resolved, a single value or Range made a list of one."""
    if not isinstance(grid, dict):
        raise SweepError(f"grid must be a mapping of settings to their values, e.g. {{'optimizer.lr': [0.01, 0.1]}}; "
                         f"got {type(grid).__name__}")
    if not grid:
        raise SweepError("the grid is empty: give at least one setting and its values")
    out: dict[str, list] = {}
    for key, values in grid.items():
        path = resolve_key(key)
        if path in out:
            raise SweepError(f"grid sets {path} twice")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise SweepError(f"grid gives no values for {path}")
        out[path] = [_range_in_text(value) for value in values]
    return out


def _range_in_text(value):
    """A range written as text in a Python grid (``"loguniform:1e-4:1e-1"``) as its Range;
    any other value as it is (a string such as ``"relu"`` stays a string)."""
    if isinstance(value, str):
        kind, _, bounds = value.strip().partition(":")
        if kind in RANGE_KINDS and bounds:
            return parse_range(kind, bounds, value.strip())
    return value


def grid_size(grid: dict[str, list], random: int | None = None) -> int:
    """How many members ``grid`` makes (``random`` draws, else every combination), counted,
    not made: a limit is checked before a list that long is built."""
    return random if random is not None else math.prod(len(values) for values in grid.values())


def member_settings(grid: dict[str, list], random: int | None, seed: int) -> list[dict]:
    """Each member's grid values {path: value}: the cartesian product, or ``random`` draws
    with ``seed``: of different combinations when every value is listed (_distinct_draws),
    else each key's own (a list is drawn from uniformly, a Range by its kind)."""
    if random is None:
        for path, values in grid.items():
            ranges = [str(v) for v in values if isinstance(v, Range)]
            if ranges:
                raise SweepError(f"grid {path}={ranges[0]} is a range: ranges need a random sweep "
                                 "(--random N; random=N in Python)")
        return [dict(zip(grid, combination)) for combination in itertools.product(*grid.values())]
    if random < 1:
        raise SweepError(f"--random must be at least 1, got {random}")
    rng = np.random.default_rng(seed)
    if not any(isinstance(v, Range) for values in grid.values() for v in values):
        return _distinct_draws(grid, random, rng)
    members = []
    for _ in range(random):
        member = {}
        for path, values in grid.items():
            pick = values[int(rng.integers(len(values)))] if len(values) > 1 else values[0]
            member[path] = pick.draw(rng) if isinstance(pick, Range) else pick
        members.append(member)
    return members


def _distinct_draws(grid: dict[str, list], random: int, rng) -> list[dict]:
    """``random`` different combinations of a grid of lists, drawn uniformly without
    replacement (as scikit-learn's ParameterSampler): all of them, in the grid's order, when
    there are no more than ``random``."""
    sizes = [len(values) for values in grid.values()]
    total = math.prod(sizes)
    if total <= 2 * random:  # all of them, or most: a shuffle of every combination's index tuple
        every = list(itertools.product(*map(range, sizes)))
        picked = every if total <= random else sorted(every[i] for i in rng.permutation(total)[:random])
    else:  # few of many (any number of them): draw each key's index until enough combinations differ
        chosen: set[tuple] = set()
        while len(chosen) < random:
            chosen.add(tuple(int(rng.integers(size)) for size in sizes))
        picked = sorted(chosen)  # (in the grid's order, as product lists them)
    return [{path: values[i] for (path, values), i in zip(grid.items(), indices)} for indices in picked]
