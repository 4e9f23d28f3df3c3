"""A sweep's members as configs: the base config with each member's grid values, the split
and validation rows they all share, and their grouping into stacks (the sweep's tasks).

Every member sees the same data split, held out with the base config's seed (which each
member's config records as ``data.seed``), and a validation set (``data.val_fraction``,
numbamlp.config.DEFAULT_VAL_FRACTION unless the base sets one, or ``data.val``).  Members
that can share a step (numbamlp.stack.STACK_KEY) are trained together, at most
``stack_size`` (DEFAULT_STACK_SIZE unless told) to a stack.
"""

from __future__ import annotations

import json
import math

from numbamlp.config import (DEFAULT_VAL_FRACTION, OPTIMIZER_DEFAULTS, TrainConfig, set_setting,
                             with_absolute_data_paths)
from numbamlp.sweeps.errors import SweepError

DEFAULT_MAX_MEMBERS = 10_000  # most members a grid may make (sweep's max_members, the service's cap)
DEFAULT_STACK_SIZE = 32  # most members to a stack unless told (sweep's stack_size, the service's max_stack)
# A search's (numbamlp.sweeps.search) most trials in flight, and slots to each of its stacks,
# unless told: few enough that the sampler learns from trials told before it is asked again.
DEFAULT_SEARCH_STACK = 8


def absolute_data_settings(member: dict) -> dict:
    """A member's grid values with the data files it names (data.train, .val, .test) by
    absolute path."""
    data = {key[len("data."):]: value for key, value in member.items() if key.startswith("data.")}
    absolute = with_absolute_data_paths({"data": data})["data"]
    return {**member, **{f"data.{key}": value for key, value in absolute.items()}}


def base_document(base) -> dict:
    """The base config as a document that members override.  From a TrainConfig, the
    optimizer settings that are only its optimizer's defaults are left out, so that a grid
    over ``optimizer.name`` gets each optimizer's own defaults."""
    if base is None:
        return {}
    if isinstance(base, dict):
        return json.loads(json.dumps(base))  # a deep copy the sweep may edit
    document = base.model_dump(mode="json", by_alias=True)
    defaults = OPTIMIZER_DEFAULTS[base.optimizer.name]
    document["optimizer"] = {k: v for k, v in document["optimizer"].items()
                             if v is not None and defaults.get(k) != v}
    return document


def member_configs(document: dict, settings: list[dict]) -> list[TrainConfig]:
    """Each member's TrainConfig: the base document with the member's values,
    the data split fixed to the base's seed, and a validation set (``data.val_fraction``,
    DEFAULT_VAL_FRACTION unless the base has one).  SweepError naming the member's values
    when the schema refuses them."""
    from pydantic import ValidationError

    base = validate_base(document)
    data = document.setdefault("data", {})
    data["seed"] = base.data.seed if base.data.seed is not None else base.seed
    if base.data.val is None and base.data.val_fraction == 0:
        data["val_fraction"] = DEFAULT_VAL_FRACTION
    configs = []
    for member in settings:
        tree = json.loads(json.dumps(document))
        for path, value in member.items():
            set_setting(tree, path, value)
        try:
            configs.append(TrainConfig.model_validate(tree))
        except ValidationError as err:
            shown = ", ".join(f"{p}={v!r}" for p, v in member.items())
            raise SweepError(f"the member {shown} is not a valid configuration: {_first_problem(err)}") from None
    return configs


def validate_base(document: dict) -> TrainConfig:
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(document)
    except ValidationError as err:
        raise SweepError(f"invalid base configuration: {_first_problem(err)}") from None


def _first_problem(err) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg'].removeprefix('Value error, ')}" if where else first["msg"]


def stack_groups(configs: list[TrainConfig], stack_size: int, parallel: int = 1) -> list[list[int]]:
    """The tasks: lists of member indices that share a step (numbamlp.stack.STACK_KEY), at
    most ``stack_size`` each, and cut into at least ``parallel`` tasks where a group has the
    members for it, so that every worker has one."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(stack_key_text(config), []).append(index)
    tasks = []
    for members in groups.values():
        count = max(math.ceil(len(members) / stack_size), min(parallel, len(members)))
        size = math.ceil(len(members) / count)
        tasks.extend(members[lo : lo + size] for lo in range(0, len(members), size))
    return tasks


def stack_key_text(config: TrainConfig) -> str:
    """What configs must share to train in one stack, as text: the stack key (the step
    they share, numbamlp.stack.stack_key) and the data split (numbamlp.data.split_key, the
    splits each would train on alone; on a table, early stopping holds its validation rows
    out before the encoding is learned).  Equal for a sweep's tasks, a search's running
    stacks, the service's stacks."""
    from numbamlp.data import split_key
    from numbamlp.stack import stack_key

    return json.dumps(stack_key(config), sort_keys=True, default=str) + split_key(config)
