"""Each fact numbamlp states is stated once, and every other place uses it by reference
(issue 26): a named constant, a tuple or a Literal built from one, in the lowest module
that owns the fact; click's choices and defaults, pydantic's Literals and the messages
refer to it.  (The CUDA status's single statement is tested in tests/test_config.py.)

The source (numbamlp/, kernels/, cli/) is read with ast.  A number counts as a restatement
only in its context: a parameter, flag, name or message about the fact (32 beside "stack",
0.5 beside "window", ...), so unrelated numbers do not matter; a list counts when it is
made of the fact's words alone (two or three statuses, optimizer names, ...).  Docstrings
and comments are prose and are not read, except for the version, which should appear
nowhere but in pyproject.toml.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import tomllib
import typing
from importlib.metadata import version as metadata_version
from pathlib import Path

import numpy as np
import pytest

from numbamlp.config import OPTIMIZERS, SCHEDULES
from numbamlp.job_status import STATUSES
from numbamlp.service.auth import ROLES
from numbamlp.sweeps import METRICS

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRECTORIES = ("numbamlp", "kernels", "cli")
# the statements whose header holds the literal (the body is not its context)
COMPOUND_STATEMENTS = (ast.If, ast.While, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.Try,
                       ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Match)


# ---------------------------------------------------------------- reading the source
@functools.cache
def sources() -> dict[str, tuple[str, ast.Module]]:
    """{path from the repository root: (text, tree)} of every source file."""
    found = {}
    for directory in SOURCE_DIRECTORIES:
        for path in sorted((ROOT / directory).rglob("*.py")):
            text = path.read_text()
            found[path.relative_to(ROOT).as_posix()] = (text, ast.parse(text))
    return found


@functools.cache
def parents(path: str) -> dict[ast.AST, ast.AST]:
    tree = sources()[path][1]
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def module_name(path: str) -> str:
    """The installed name of a source file (kernels/ and cli/ install inside numbamlp)."""
    parts = Path(path).with_suffix("").parts
    if parts[0] != "numbamlp":
        parts = ("numbamlp", *parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The package a module belongs to (a package's own __init__ belongs to it)."""
    packages = {module_name(path) for path in sources() if path.endswith("__init__.py")}
    return module if module in packages else module.rpartition(".")[0]


def source_path(module: str) -> str:
    """The file of an importable module, from the repository root."""
    return Path(importlib.import_module(module).__file__).relative_to(ROOT).as_posix()


def is_prose(path: str, node: ast.AST) -> bool:
    """Whether a string is a docstring (or another bare string statement)."""
    return isinstance(parents(path).get(node), ast.Expr)


def parameter_of(arguments: ast.arguments, default: ast.AST) -> str:
    positional = [*arguments.posonlyargs, *arguments.args]
    pairs = [*zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults),
             *zip(arguments.kwonlyargs, arguments.kw_defaults)]
    return next(arg.arg for arg, value in pairs if value is default)


def context(path: str, node: ast.AST) -> str:
    """The source a literal is written in: its statement, or the part of a compound
    statement's header that holds it, its decorator, or for a default, its parameter."""
    text = sources()[path][0]
    child, parent = node, parents(path).get(node)
    while parent is not None:
        if isinstance(parent, ast.arguments):
            return f"{parameter_of(parent, child)}={ast.get_source_segment(text, child)}"
        if isinstance(parent, COMPOUND_STATEMENTS):
            return ast.get_source_segment(text, child)  # (a decorator, a condition, a default's arguments, ...)
        if isinstance(parent, ast.stmt):
            return ast.get_source_segment(text, parent)
        child, parent = parent, parents(path).get(parent)
    return ""


def numbers(value):
    """(path, node) of every number literal equal to ``value`` (True and False are not numbers)."""
    for path, (_, tree) in sources().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
                    and node.value == value):
                yield path, node


def messages():
    """(path, node, text) of every string that is not prose; an f-string as its literal text."""
    for path, (_, tree) in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                yield path, node, "".join(part.value for part in node.values if isinstance(part, ast.Constant))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and not isinstance(parents(path).get(node), ast.JoinedStr) and not is_prose(path, node)):
                yield path, node, node.value


def definitions(name: str) -> list[str]:
    """The files that assign ``name`` at module level."""
    found = []
    for path, (_, tree) in sources().items():
        for statement in tree.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else (
                [statement.target] if isinstance(statement, ast.AnnAssign) else [])
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                found.append(path)
    return found


def defining_value(path: str, name: str) -> ast.AST:
    for statement in sources()[path][1].body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == name for t in statement.targets):
            return statement.value
    raise LookupError(f"{path} does not assign {name}")


def where(path: str, node: ast.AST) -> str:
    return f"{path}:{node.lineno}: {context(path, node)!r}"


def click_option(command, name: str):
    """The click parameter ``name`` of a command of ``numbamlp`` (command: the path of names)."""
    from numbamlp.cli.main import main

    for part in command:
        main = main.commands[part]
    return next(param for param in main.params if param.name == name)


# ---------------------------------------------------------------- numbers
# fact → (module, constant, what the literal's context names, how a message writes the number)
NUMBERS = {
    "stack size": ("numbamlp.sweeps.members", "DEFAULT_STACK_SIZE", r"stack", r"(?<![\w.])32(?![\w])"),
    "grid member cap": ("numbamlp.sweeps.members", "DEFAULT_MAX_MEMBERS", r"member|settings",
                        r"(?<![\w.])10[,_]?000(?![\w])"),
    "batch window": ("numbamlp.service", "DEFAULT_BATCH_WINDOW_S", r"window", r"(?<![\w.])0\.5(?!\.?\d)"),
    "hold-out fraction": ("numbamlp.config", "DEFAULT_VAL_FRACTION", r"val_fraction|hold",
                          r"(?<![\w.])0\.1(?!\.?\d)"),
}


@pytest.mark.parametrize("fact", NUMBERS)
def test_a_number_is_defined_once_and_written_nowhere_else(fact):
    module, name, about, _ = NUMBERS[fact]
    value = getattr(importlib.import_module(module), name)
    home = source_path(module)
    assert definitions(name) == [home], f"{name} is assigned in {definitions(name)}, not once in {home}"
    definition = defining_value(home, name)
    restated = [where(path, node) for path, node in numbers(value)
                if node is not definition and re.search(about, context(path, node), re.IGNORECASE)]
    assert not restated, (f"the {fact} ({value}) is written again instead of naming {module}.{name}:\n"
                          + "\n".join(restated))


@pytest.mark.parametrize("fact", NUMBERS)
def test_no_message_writes_the_number_out(fact):
    """Help texts, descriptions and errors interpolate the constant (f"...{NAME}...")."""
    _, name, about, written = NUMBERS[fact]
    restated = [where(path, node) for path, node, text in messages()
                if re.search(written, text) and re.search(about, context(path, node), re.IGNORECASE)]
    assert not restated, f"a message writes the {fact} out instead of interpolating {name}:\n" + "\n".join(restated)


def test_the_users_of_the_numbers_take_their_defaults_from_the_constants():
    from numbamlp.config import DEFAULT_VAL_FRACTION, DataConfig
    from numbamlp.service import DEFAULT_BATCH_WINDOW_S, serve
    from numbamlp.service.app import create_app
    from numbamlp.service.scheduler import Scheduler
    from numbamlp.sweeps import DEFAULT_MAX_MEMBERS, DEFAULT_SEARCH_STACK, DEFAULT_STACK_SIZE, sweep

    def default(function, parameter):
        return inspect.signature(function).parameters[parameter].default

    assert default(Scheduler, "max_stack") == default(create_app, "max_stack") == DEFAULT_STACK_SIZE
    # (a sweep's None: DEFAULT_STACK_SIZE, a search's DEFAULT_SEARCH_STACK, which its help names)
    assert default(sweep, "stack_size") is None and click_option(["sweep"], "stack_size").default is None
    assert f"{DEFAULT_STACK_SIZE}; a --search's" in click_option(["sweep"], "stack_size").help
    assert f"in flight: {DEFAULT_SEARCH_STACK}" in click_option(["sweep"], "stack_size").help
    assert default(sweep, "max_members") == click_option(["sweep"], "max_members").default == DEFAULT_MAX_MEMBERS
    assert default(serve, "batch_window") == default(create_app, "batch_window") == default(Scheduler, "batch_window") \
        == click_option(["serve"], "batch_window").default == DEFAULT_BATCH_WINDOW_S
    assert f"holds out {DEFAULT_VAL_FRACTION:g} when" in DataConfig.model_fields["val_fraction"].description


# ---------------------------------------------------------------- lists of names
def name_groups(words: set[str], smallest: int):
    """(path, node, names) of every tuple, list or set made of ``words`` alone (at least
    ``smallest`` of them), and of every dict whose keys are."""
    for path, (_, tree) in sources().items():
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else (
                node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else None)
            if not items or len(items) < smallest:
                continue
            if all(isinstance(item, ast.Constant) and item.value in words for item in items):
                yield path, node, frozenset(item.value for item in items)


# name → (the words, the fewest that make a list of them, the modules that state them)
VOCABULARIES = {
    "job statuses": (set(STATUSES), 3, {"numbamlp/job_status.py"}),
    "optimizer names": (set(OPTIMIZERS), 2, {"numbamlp/config.py", "numbamlp/optim.py"}),
    "validation metrics": (set(METRICS), 3, {"numbamlp/metrics.py"}),
    "token roles": (set(ROLES), 2, {"numbamlp/service/auth.py"}),
    "learning-rate schedules": (set(SCHEDULES), 2, {"numbamlp/config.py"}),
}


@pytest.mark.parametrize("vocabulary", VOCABULARIES)
def test_a_list_of_names_is_written_once_in_its_module(vocabulary):
    """The Adam family's decoding, the statuses a job ends in, the CLI's choices, a Literal's
    arguments: each list is stated once, where the names are owned."""
    words, smallest, homes = VOCABULARIES[vocabulary]
    groups = list(name_groups(words, smallest))
    elsewhere = [where(path, node) for path, node, _ in groups if path not in homes]
    assert not elsewhere, f"{vocabulary} listed outside {sorted(homes)}:\n" + "\n".join(elsewhere)
    seen: dict[frozenset, str] = {}
    for path, node, names in groups:
        assert names not in seen, f"{vocabulary} {sorted(names)} written twice: {seen[names]} and {where(path, node)}"
        seen[names] = where(path, node)


def test_choices_and_literals_are_the_constants():
    from numbamlp.client import FINAL as CLIENT_FINAL
    from numbamlp.config import EarlyStoppingConfig, OptimizerConfig, ScheduleConfig
    from numbamlp.job_status import FINAL, JobStatus
    from numbamlp.service import app, events, schemas, store

    assert tuple(click_option(["jobs", "list"], "status").type.choices) == STATUSES
    assert tuple(click_option(["serve", "token", "create"], "role").type.choices) == ROLES
    assert typing.get_args(EarlyStoppingConfig.model_fields["metric"].annotation)[0] == typing.Literal[METRICS]
    for command in ("train", "sweep"):  # (one --metric: what early stopping watches and a sweep ranks by)
        assert click_option([command], "early_stopping__metric").opts == ["--metric"]
    assert schemas.JobStatus is JobStatus and typing.get_args(schemas.Job.model_fields["status"].annotation) == STATUSES
    assert app.STATUSES is store.STATUSES is STATUSES
    assert CLIENT_FINAL is events.FINAL is store.FINAL is FINAL
    assert typing.get_args(OptimizerConfig.model_fields["name"].annotation) == OPTIMIZERS
    assert typing.get_args(ScheduleConfig.model_fields["name"].annotation) == SCHEDULES


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_optimizer_state_and_the_step_plan_decode_the_name_alike(optimizer):
    from numbamlp.config import OptimizerConfig
    from numbamlp.optim import Optimizer, update_rule
    from numbamlp.plan import StepPlan

    rule = update_rule(optimizer)
    state = Optimizer(OptimizerConfig(name=optimizer), 7, np.float64).state
    assert set(state) == ({"m", "v"} if rule.adam else {"velocity"})
    plan = StepPlan([2, 3, 2], "relu", optimizer, 1, 4, np.float64, "numpy")
    assert (plan.adam, plan.flag) == rule


# ---------------------------------------------------------------- the version
def test_the_version_is_written_only_in_pyproject():
    """pyproject's ``version`` is read from the installed metadata (an editable install and a
    wheel both carry it) by numbamlp.diagnostics.installed_version, the one helper."""
    import numbamlp

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert metadata_version("numbamlp") == declared, "pyproject.toml's version changed since the install: reinstall"
    assert numbamlp.__version__ == declared
    written = re.compile(rf"(?<![\w.]){re.escape(declared)}(?![\w.])")
    restated = [f"{path}:{node.lineno}" for path, (_, tree) in sources().items() for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and written.search(node.value)]
    assert not restated, f"the version {declared} is written in the source: " + ", ".join(restated)


def test_one_helper_reads_installed_versions():
    readers = set()
    for path, (_, tree) in sources().items():
        for node in ast.walk(tree):
            if ((isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("importlib")
                 and (node.module == "importlib.metadata" or any(a.name == "metadata" for a in node.names)))
                    or (isinstance(node, ast.Import) and any(a.name == "importlib.metadata" for a in node.names))
                    or (isinstance(node, ast.Attribute) and node.attr == "metadata"
                        and isinstance(node.value, ast.Name) and node.value.id == "importlib")):
                readers.add(path)
    assert readers == {"numbamlp/diagnostics.py"}


# ---------------------------------------------------------------- threads
def test_numbas_thread_count_is_set_in_one_place():
    """kernels/pool.py's set_numba_threads keeps a count within Numba's pool; the cpu backend's
    own call (a forked child on one thread) is the backend's.  And a step sets a config's
    threads through threads.set_config_threads alone."""
    pool_size_readers, setters = set(), set()
    for path, (_, tree) in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "NUMBA_NUM_THREADS":
                pool_size_readers.add(path)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "set_num_threads"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "numba"):
                setters.add(path)
    assert pool_size_readers == {"kernels/pool.py"}
    assert setters <= {"kernels/pool.py", "kernels/cpu_backend.py"}
    for path in ("numbamlp/trainer.py", "numbamlp/stack.py"):
        steps = [node for node in ast.walk(sources()[path][1])
                 if isinstance(node, ast.FunctionDef) and node.name == "step"]
        called = {node.func.id for step in steps for node in ast.walk(step)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "set_config_threads" in called and "set_threads" not in called, path


# ---------------------------------------------------------------- private names, dead code
def test_no_module_imports_another_packages_private_name():
    """Within a package (numbamlp.data's modules) a private name is the package's own; across
    packages a name another module needs is public (numbamlp.stack.stack_key, once _leaves)."""
    reached = []
    for path, (_, tree) in sources().items():
        package = package_of(module_name(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("numbamlp")):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and package_of(node.module) != package:
                    reached.append(f"{path}:{node.lineno}: {node.module}.{alias.name}")
    assert not reached, "private names reached from another package:\n" + "\n".join(reached)


def test_numpy_and_numba_internals_are_not_reached_or_in_one_place():
    """numpy's global RandomState comes from sklearn.utils.check_random_state; Numba's cache
    internals (which locator chose the directory: no public API says) are read in
    numbamlp.diagnostics._kernel_cache alone."""
    numba_internals = ("_impl", "_cache", "_cache_path")
    mtrand, numba_cache = [], []
    for path, (_, tree) in sources().items():
        function_of = {child: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                       for child in ast.walk(node)}  # (the innermost function: ast.walk goes outside in)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("mtrand", "_rand"):
                mtrand.append(f"{path}:{node.lineno}")
            read = isinstance(node, ast.Attribute) and node.attr in numba_internals and isinstance(node.ctx, ast.Load)
            named = isinstance(node, ast.Constant) and node.value in numba_internals  # (getattr(cache, "_impl"))
            if read or named:
                inside = function_of.get(node)
                numba_cache.append(f"{path}:{inside.name if inside else '<module>'}")
    assert not mtrand
    assert set(numba_cache) == {"numbamlp/diagnostics.py:_kernel_cache"}, numba_cache


def test_no_empty_section_headers():
    """A ``# ---- name`` line heads code: one followed by another header, or by nothing, is
    left over."""
    header = re.compile(r"^(\s*)# -{4,} ?\S")
    empty = []
    for path, (text, _) in sources().items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            if not header.match(line):
                continue
            following = next((other for other in lines[number + 1:] if other.strip()), None)
            if following is None or header.match(following):
                empty.append(f"{path}:{number + 1}: {line.strip()}")
    assert not empty, "section headers with nothing under them:\n" + "\n".join(empty)


def test_every_module_constant_is_used():
    """A module-level constant (JOB_COLUMNS was one) is named somewhere besides its own
    assignment: in its module, another, the tests or the benchmarks."""
    texts = {path: text for path, (text, _) in sources().items()}
    for folder in ("tests", "bench"):  # (not this file, which names the constants it checks)
        texts |= {path.relative_to(ROOT).as_posix(): path.read_text() for path in (ROOT / folder).rglob("*.py")
                  if path != Path(__file__).resolve()}
    unused = []
    for path, (_, tree) in sources().items():
        for statement in tree.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else (
                [statement.target] if isinstance(statement, ast.AnnAssign) else [])
            for target in targets:
                if isinstance(target, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]*", target.id):
                    named = re.compile(rf"\b{target.id}\b")
                    if sum(len(named.findall(text)) for text in texts.values()) <= 1:  # (its assignment alone)
                        unused.append(f"{path}:{statement.lineno}: {target.id}")
    assert not unused, "constants nothing uses:\n" + "\n".join(unused)
