"""Sweeps that learn (``sweep(..., search=...)``, ``numbamlp sweep --search``): trials asked
of an Optuna study (its sampler: TPE, CMA-ES, random, or every combination of a grid),
trained in stacks whose freed slots are refilled at the next epoch boundary, reported after
every epoch and stopped early by the study's pruner (median, ASHA, Hyperband).

A trial is a sweep member: its number is the member's, its run directory members/<number>/,
its row in results.csv/jsonl as a grid sweep's (a pruned member's status "pruned", with the
epoch it stopped at, ``pruned_epoch``).  Trials of one stack key (numbamlp.stack.STACK_KEY:
hidden sizes, activation, batch size, optimizer, ...) share a running stack of
``stack_size`` slots: when a member is pruned, stops early or finishes, the next trial of
that key asked of the study takes its slot at the next epoch boundary (a new member, its
own seed, shuffles and optimizer state), so the compiled step keeps running full.  Every
member's weights equal ``numbamlp train`` with its config for the epochs it trained, bit
for bit (numbamlp.stack.StackFit).  At most ``stack_size`` trials are in flight at once, so
the sampler learns from the trials told before it is asked again.

The study lives in an Optuna storage: ``storage`` (an RDB URL such as sqlite:///study.db,
or a journal file's path), by default the journal file study.journal in the sweep's
directory (in memory for a sweep without one), so that ``resume`` goes on with the study
and Optuna's own tools open it (optuna.load_study; optuna-dashboard, which was not tried
here, reads the same storages).

Symbols: R the first epoch a pruner may stop a trial at (``min_epochs``), η the pruners'
reduction factor.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from numbamlp.sweeps.errors import SweepError
from numbamlp.sweeps.grid import Range

SEARCHES = ("grid", "random", "tpe", "cmaes")
PRUNERS = ("none", "median", "asha", "hyperband")
DEFAULT_REDUCTION_FACTOR = 3


def optuna_module():
    """optuna, or a SweepError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise SweepError("--search needs Optuna: pip install 'numbamlp[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # (its INFO line per trial: the sweep reports)
    return optuna


# ---------------------------------------------------------------- the space
@dataclass(frozen=True)
class Dimension:
    """One searched setting: a dotted TrainConfig path and its Optuna distribution —
    ``choices`` (a grid key's list: each value's JSON text, as Optuna takes only scalars),
    or a range ``low``..``high`` (``kind`` "uniform", "loguniform" or "int")."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """This setting's value for an Optuna trial."""
        if self.kind == "choice":
            return json.loads(trial.suggest_categorical(self.path, list(self.choices)))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high))
        return trial.suggest_float(self.path, self.low, self.high, log=self.kind == "loguniform")


def search_space(grid: dict[str, list], search: str) -> list[Dimension]:
    """The dimensions of a normalised grid (numbamlp.sweeps.grid.normalise_grid): a key's
    list of values is a choice, one range (uniform:A:B, loguniform:A:B, int:A:B) a range;
    SweepError for a key that mixes the two, for a range in a grid search, and for data
    settings (a search varies the model and its training on one split)."""
    dimensions = []
    for path, values in grid.items():
        if path.startswith("data.") or path == "threads":
            raise SweepError(f"a search varies the model and its training, not the data or the machine ({path}): "
                             "run one search per setting of it")
        ranges = [value for value in values if isinstance(value, Range)]
        if ranges and (len(values) > 1 or search == "grid"):
            raise SweepError(f"{path}: a range ({ranges[0]}) must be the key's only value, and a grid search "
                             "takes lists only" if search != "grid" else
                             f"{path}={ranges[0]} is a range: a grid search takes lists of values")
        if ranges:
            dimensions.append(Dimension(path, ranges[0].kind, ranges[0].low, ranges[0].high))
        else:
            dimensions.append(Dimension(path, "choice", choices=tuple(dict.fromkeys(json.dumps(v) for v in values))))
    return dimensions


def trial_settings(trial, space: list[Dimension]) -> dict:
    """A trial's settings {path: value}, as a grid sweep's member has them."""
    return {dimension.path: dimension.suggest(trial) for dimension in space}


def grid_combinations(space: list[Dimension]) -> list[dict]:
    """Every combination of a grid search's choices, as Optuna parameters (JSON texts)."""
    return [dict(zip((d.path for d in space), combination))
            for combination in itertools.product(*(d.choices for d in space))]


# ---------------------------------------------------------------- the study
@dataclass(frozen=True)
class SearchSettings:
    """What a search is: ``search`` (SEARCHES), ``trials``, ``prune`` (PRUNERS), R
    (``min_epochs``), η (``reduction_factor``), ``storage`` (None: the default; a journal
    file by absolute path) and the ``study``'s name in it (each sweep's own)."""

    search: str
    trials: int
    prune: str = "none"
    min_epochs: int = 1
    reduction_factor: int = DEFAULT_REDUCTION_FACTOR
    storage: str | None = None
    study: str = ""

    def as_json(self) -> dict:
        return {"search": self.search, "trials": self.trials, "prune": self.prune, "min_epochs": self.min_epochs,
                "reduction_factor": self.reduction_factor, "storage": self.storage, "study": self.study}


def check_search(search: str | None, trials: int | None, prune: str, min_epochs: int, reduction_factor: int,
                 storage, random: int | None, space_size: int | None) -> SearchSettings:
    """The search settings, checked: SweepError naming what is wrong.  ``space_size``: a
    grid search's number of combinations (its trials unless fewer are asked).  The study is
    named for this sweep (numbamlp-search-<UTC time>-<random>), so that sweeps can share a
    storage (one database to look at them in) without reading each other's trials."""
    import datetime
    import secrets

    if search not in SEARCHES:
        raise SweepError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if random is not None:
        raise SweepError("give --search random --trials N, not --random N beside --search")
    if prune not in PRUNERS:
        raise SweepError(f"prune must be one of {', '.join(PRUNERS)}, got {prune!r}")
    if trials is None and search != "grid":
        raise SweepError(f"--search {search} needs --trials N: how many trials to ask for")
    if trials is not None and trials < 1:
        raise SweepError(f"--trials must be at least 1, got {trials}")
    if search == "grid":
        trials = space_size if trials is None else min(trials, space_size)
    if min_epochs < 1:
        raise SweepError(f"--min-epochs must be at least 1, got {min_epochs}")
    if reduction_factor < 2:
        raise SweepError(f"--reduction-factor must be at least 2, got {reduction_factor}")
    if storage is not None and "://" not in str(storage):
        storage = str(Path(storage).resolve())  # (a journal file: the same one from wherever the sweep resumes)
    name = f"numbamlp-search-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    return SearchSettings(search, trials, prune, min_epochs, reduction_factor,
                          None if storage is None else str(storage), name)


def make_study(settings: SearchSettings, direction: str, seed: int, max_epochs: int, directory: Path | None,
               resume: bool = False):
    """The sweep's Optuna study with the settings' sampler and pruner: created (SweepError
    when its storage cannot be opened), or, to ``resume``, loaded (SweepError when the
    storage does not hold it)."""
    optuna = optuna_module()
    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                # (the grid is enqueued trial by trial: Optuna's GridSampler stops the study itself,
                # which ask-and-tell does not allow)
                "grid": lambda: optuna.samplers.RandomSampler(seed=seed)}
    R, eta = settings.min_epochs, settings.reduction_factor
    pruners = {"none": lambda: optuna.pruners.NopPruner(),
               # (steps are epochs, from 1: the earliest a trial is pruned is step n_warmup_steps)
               "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=eta, n_warmup_steps=R),
               "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=R, reduction_factor=eta),
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=R, max_resource=max(max_epochs, R),
                                                                   reduction_factor=eta)}
    from numbamlp.layout import STUDY_FILE

    where = settings.storage or (None if directory is None else str(directory / STUDY_FILE))
    try:
        storage = study_storage(settings.storage, directory)
        if resume:
            return optuna.load_study(study_name=settings.study, storage=storage, sampler=samplers[settings.search](),
                                     pruner=pruners[settings.prune]())
        return optuna.create_study(storage=storage, study_name=settings.study, direction=direction,
                                   sampler=samplers[settings.search](), pruner=pruners[settings.prune]())
    except KeyError:
        raise SweepError(f"the study storage {where} holds no study {settings.study}: the search cannot go on "
                         "without it") from None
    except Exception as err:  # noqa: BLE001 — (an RDB URL's driver, a path, a locked file: Optuna's and SQLAlchemy's own)
        if isinstance(err, SweepError):
            raise
        raise SweepError(f"cannot open the study storage {where}: {str(err).splitlines()[0]}") from None


def study_storage(storage: str | None, directory: Path | None):
    """An Optuna storage: an RDB URL (sqlite:///..., postgresql://...) as it is, a journal
    file for a path, the sweep directory's STUDY_FILE by default, in memory without one."""
    from numbamlp.layout import STUDY_FILE

    optuna = optuna_module()
    if storage is None and directory is None:
        return None
    if storage is not None and "://" in storage:
        return storage
    path = Path(storage) if storage is not None else directory / STUDY_FILE
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


# ---------------------------------------------------------------- trials in refilled stacks
@dataclass
class _Trial:
    trial: object  # an optuna Trial (ask-and-tell)
    settings: dict
    config: object  # its TrainConfig
    key: str  # its stack key, as text
    reported: frozenset = frozenset()  # epochs the storage has its values of (a trial trained again)


@dataclass
class _OpenStack:
    """A running stack of one key, the trial in each of its slots, and whether it has run
    an epoch (without refilling, a started stack's freed slots stay empty)."""

    fit: object  # numbamlp.stack.StackFit
    slots: dict = field(default_factory=dict)  # slot -> _Trial
    started: bool = False


class TrialRunner:
    """Trains the trials asked of ``study``, at most ``stack_size`` at once, in stacks of
    ``stack_size`` slots refilled at epoch boundaries (``refill``; without, a stack's freed
    slots stay empty until it ends: what refilling saves is measured against that); each
    trial reported after every epoch it trains (``metric``) and pruned when the pruner says
    so; ``finish(trial, outcome)`` hears of each trial that left its stack (status "done",
    "stopped early", "pruned", "diverged", "cancelled", "failed"), and the trial is told to
    the study after it.  A trial whose settings an earlier one has is not trained again."""

    def __init__(self, study, space: list[Dimension], make_config, data, metric: str, stack_size: int, finish,
                 refill: bool = True, writes=contextlib.nullcontext, commit=lambda: None):
        self.study, self.space, self.make_config, self.data = study, space, make_config, data
        self.metric, self.stack_size, self.finish, self.refill = metric, stack_size, finish, refill
        # The trials that end at one epoch boundary: their files written inside one ``writes()``
        # (one flush for them all), then ``commit()`` (their rows), then the study told.
        self.writes, self.commit, self.to_tell = writes, commit, []
        self.stacks: dict[str, _OpenStack] = {}
        self.waiting: dict[str, deque] = {}  # key -> trials asked, waiting for a slot of their key
        # A trial whose settings an earlier one of this run has is not trained again (it
        # would give the same bits): it takes that trial's outcome, once that trial has one.
        self.outcomes: dict[str, tuple[int, dict]] = {}  # settings -> (member, outcome)
        self.repeats: dict[str, list[_Trial]] = {}  # settings in training -> trials waiting for its outcome
        self.stop_reason = None

    def run(self, to_ask: int, again: list | None = None) -> None:
        """Train the trials ``again`` (a resumed sweep's interrupted ones: optuna Trials still
        running in the storage, trained again from the start under their numbers) and
        ``to_ask`` more asked of the study (a grid's enqueued combinations first).  The
        config's threads hold throughout (every stack of a search has the base's); SIGINT and
        SIGTERM (in the main thread) stop every stack after its current step:
        numbamlp.member.TrainingInterrupted."""
        from numbamlp.run import on_signals
        from numbamlp.threads import threads_while

        reported = {t.number: frozenset(t.intermediate_values) for t in self.study.get_trials(deepcopy=False)}
        again = deque(again or ())
        asked = 0
        base = self.make_config({})
        try:
            with threads_while(base.threads, base.backend), on_signals(self._stop):
                while True:
                    with self.writes():  # (a repeat of a told trial is told at once)
                        while (again or asked < to_ask) and self._in_flight() < self.stack_size:
                            if again:
                                trial = again.popleft()
                                self._place(self._trial(trial, reported.get(trial.number, frozenset())))
                            else:
                                self._place(self._trial(self.study.ask()))
                                asked += 1
                    self._tell_ended()
                    if not self.stacks:
                        return
                    for key in list(self.stacks):
                        with self.writes():
                            self._epoch(key)
                        self._tell_ended()
        finally:
            for open_stack in self.stacks.values():  # (an interrupted search: each fit's threads and state put back)
                with contextlib.suppress(Exception):
                    open_stack.fit.close()

    def _stop(self, signal_number) -> None:
        self.stop_reason = f"signal {signal_number}"
        for open_stack in self.stacks.values():
            open_stack.fit.stack.request_stop(self.stop_reason)

    def _trial(self, trial, reported: frozenset = frozenset()) -> _Trial:
        from numbamlp.sweeps.members import stack_key_text

        settings = trial_settings(trial, self.space)
        config = self.make_config(settings)
        return _Trial(trial, settings, config, stack_key_text(config), reported)

    def _in_flight(self) -> int:
        """Trials asked and not yet told: those in stacks (without refilling, a started
        stack's every slot, freed or not), waiting for a slot, or waiting for the outcome
        of the trial they repeat."""
        in_stacks = sum(self.stack_size if (o.started and not self.refill) else len(o.slots)
                        for o in self.stacks.values())
        return in_stacks + sum(len(q) for q in self.waiting.values()) + sum(len(r) for r in self.repeats.values())

    def _place(self, trial: _Trial) -> None:
        """A repeat of an earlier trial's settings: its outcome (now, or when it has one);
        else into a vacant slot of its key's stack (without refilling, only before the
        stack's first epoch), else a new stack of its key, else wait for a slot."""
        settings = _settings_key(trial)
        if settings in self.outcomes:
            self._repeat(trial, *self.outcomes[settings])
            return
        if settings in self.repeats:
            self.repeats[settings].append(trial)
            return
        self.repeats[settings] = []
        open_stack = self.stacks.get(trial.key)
        try:
            if open_stack is None:
                self._open(trial)
            elif open_stack.fit.vacant() and (self.refill or not open_stack.started):
                self._seat(open_stack, open_stack.fit.vacant()[0], trial)
            else:
                self.waiting.setdefault(trial.key, deque()).append(trial)
        except Exception as err:  # noqa: BLE001 — a trial its stack cannot take is a failed row, not a failed search
            self._fail(trial, err)

    def _open(self, trial: _Trial) -> None:
        """A stack of ``stack_size`` slots for the trial's key, the trial in slot 0 and the
        others vacant (filled as trials of the key are asked)."""
        from numbamlp.stack import StackTrainer

        stack = StackTrainer([trial.config] * self.stack_size)
        data = self.data
        fit = stack.open_fit(data.X_train, data.y_train, data.X_val, data.y_val)
        for slot in range(1, self.stack_size):
            fit.release(slot, "vacant")
        if self.stop_reason is not None:
            stack.request_stop(self.stop_reason)
        self.stacks[trial.key] = _OpenStack(fit, {0: trial})

    def _seat(self, open_stack: _OpenStack, slot: int, trial: _Trial) -> None:
        open_stack.fit.seat(slot, trial.config)
        open_stack.slots[slot] = trial

    def _epoch(self, key: str) -> None:
        """One epoch of the key's stack; then every trial that trained in it reported, the
        pruner asked of those still running (in slot order: the same decisions each time the
        same trials run), the trials that ended or were pruned finished, and their slots
        refilled.  A stack whose epoch fails fails its trials."""
        open_stack = self.stacks[key]
        fit = open_stack.fit
        trained = fit.running()
        try:
            fit.run_epoch()
        except Exception as err:  # noqa: BLE001 — (TrainingInterrupted, a signal's stop, is not one of these)
            from numbamlp.member import TrainingInterrupted

            if isinstance(err, TrainingInterrupted):
                raise
            del self.stacks[key]
            for trial in [*open_stack.slots.values(), *self.waiting.pop(key, ())]:
                self._fail(trial, err)
            return
        open_stack.started = True
        for slot in trained:
            history = fit.history(slot)
            value = history[-1].get(self.metric) if history else None
            trial = open_stack.slots[slot]
            if value is not None and len(history) not in trial.reported:  # (trained again: the same value)
                trial.trial.report(value, len(history))
        for slot in fit.running():
            if open_stack.slots[slot].trial.should_prune():
                self._leave(open_stack, slot, "pruned")
        for slot in fit.ended():
            self._leave(open_stack, slot, None)
        queue = self.waiting.get(key)
        while self.refill and queue and fit.vacant():
            self._seat(open_stack, fit.vacant()[0], queue.popleft())
        if not fit.running():
            fit.close()
            del self.stacks[key]
            for trial in self.waiting.pop(key, ()):  # (without refilling: into a stack of their own)
                self.repeats.pop(_settings_key(trial), None)
                self._place(trial)

    def _leave(self, open_stack: _OpenStack, slot: int, status: str | None) -> None:
        from numbamlp.sweeps.task import member_outcome

        left = open_stack.fit.release(slot, status)
        trial = open_stack.slots.pop(slot)
        outcome = member_outcome(left["trainer"], left["status"], left["error"], self.data)
        if left["status"] == "pruned":
            outcome["pruned_epoch"] = left["epochs"]
        self._done(trial, outcome)

    def _fail(self, trial: _Trial, err: Exception) -> None:
        """A trial that could not train (its stack refused it, or failed): a "failed" row."""
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self._done(trial, {"status": "failed", "error": message, "seconds": 0.0, "history": [], "model": None})

    def _done(self, trial: _Trial, outcome: dict) -> None:
        """The trial told, and the trials that repeat its settings with it."""
        self._tell(trial, outcome)
        settings = _settings_key(trial)
        self.outcomes[settings] = (trial.trial.number, outcome)
        for repeat in self.repeats.pop(settings, ()):
            self._repeat(repeat, trial.trial.number, outcome)

    def _repeat(self, trial: _Trial, member: int, outcome: dict) -> None:
        """A trial with an earlier one's settings: that trial's outcome (the bits training it
        would give), its epochs reported as that trial's were, told as it was."""
        for step, epoch in enumerate(outcome.get("history", ()), 1):
            if epoch.get(self.metric) is not None and step not in trial.reported:
                trial.trial.report(epoch[self.metric], step)
        self._tell(trial, {**outcome, "repeat_of": member, "seconds": 0.0})

    def _tell(self, trial: _Trial, outcome: dict) -> None:
        """The trial's run files and row (``finish``); the study is told after ``commit``."""
        self.finish(trial, outcome)
        self.to_tell.append((trial, outcome))

    def _tell_ended(self) -> None:
        """The rows of the trials ended since the last call committed (``commit``), then
        the study told of each: its value, pruned, or failed (a row before its tell: a
        resumed sweep tells a trial from its row when the sweep stopped between the two)."""
        if not self.to_tell:
            return
        optuna = optuna_module()
        self.commit()
        for trial, outcome in self.to_tell:
            if outcome["status"] == "pruned":
                self.study.tell(trial.trial, state=optuna.trial.TrialState.PRUNED)
            elif outcome.get(self.metric) is not None and outcome["status"] in ("done", "stopped early"):
                self.study.tell(trial.trial, outcome[self.metric])
            else:
                self.study.tell(trial.trial, state=optuna.trial.TrialState.FAIL)
        self.to_tell.clear()


def _settings_key(trial: _Trial) -> str:
    """A trial's settings as text: equal for two trials that would train alike."""
    return json.dumps(trial.settings, sort_keys=True)

