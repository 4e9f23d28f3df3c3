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
and Optuna's own tools open it (optuna.load_study; `optuna-dashboard study.journal`, which a
test starts and reads the study's trials from).

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
# A journal file's lock left by a process killed while it wrote is broken after this many
# seconds (Optuna's default, 30, held a search resumed after a kill -9 that long; the lock is
# held only while a few lines are appended).
JOURNAL_LOCK_GRACE_S = 5


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


def trial_values(space: list[Dimension]) -> list[dict]:
    """Every value a trial may take, a setting at a time ({path: value}: each choice, each
    range's two ends), to be checked with the base before a search starts."""
    values = [{d.path: json.loads(choice)} for d in space for choice in d.choices]
    return values + [{d.path: end} for d in space if d.kind != "choice"
                     for end in ((int(d.low), int(d.high)) if d.kind == "int" else (d.low, d.high))]


def written_grid(grid: dict[str, list]) -> dict[str, list]:
    """A normalised grid as sweep.json (and the service's record) keeps it: a range as its
    exact text (Range.exact_text), to be read back by normalise_grid."""
    return {path: [value.exact_text if isinstance(value, Range) else value for value in values]
            for path, values in grid.items()}


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
        from numbamlp.sweeps.members import DEFAULT_MAX_MEMBERS

        if space_size > DEFAULT_MAX_MEMBERS:  # (counted, before its combinations are made)
            raise SweepError(f"the grid search has {space_size} combinations, more than the limit of "
                             f"{DEFAULT_MAX_MEMBERS}: give fewer values, or --search tpe/random --trials N")
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
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path), grace_period=JOURNAL_LOCK_GRACE_S)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


# ---------------------------------------------------------------- trials in refilled stacks
LOSSES_TO_FAIL = 3  # a trial whose stack is lost (its Dask worker gone) this many times fails


@dataclass
class _Trial:
    trial: object  # an optuna Trial (ask-and-tell)
    settings: dict
    config: object  # its TrainConfig
    key: str  # its stack key, as text
    reported: set = field(default_factory=set)  # epochs the storage has its values of (a trial trained again)
    losses: int = 0  # times its stack was lost while it trained there
    epochs: int = 0  # epochs it has trained (in its current stack)
    heard: int = 0  # the last epoch the watch heard of (a trial trained again is not heard again up to it)


@dataclass
class _OpenStack:
    """A running stack of one key (a numbamlp.sweeps.slots.SlotStack, in this process or on
    a Dask worker, through its runner's handle): the trial in each slot (seated, or to be
    seated at its next epoch: ``seats``), its epoch in flight, and whether it has run an
    epoch (without refilling, a started stack's freed slots stay empty)."""

    handle: object
    key: str
    size: int
    slots: dict = field(default_factory=dict)  # slot -> _Trial
    seats: dict = field(default_factory=dict)  # slot -> TrainConfig, seated by the next epoch
    pending: object = None  # the epoch in flight (a future), None between epochs
    started_at: int = 0  # when its epoch in flight was started (of stacks alike, the older goes first)
    started: bool = False

    def vacant(self) -> list[int]:
        return [slot for slot in range(self.size) if slot not in self.slots]


class TrialWatch:
    """What a search tells its caller as it goes, and asks of it (``sweep(..., watch=)``; the
    service's searches keep their jobs with one).  Every method is called in the search's
    own thread, between epochs; these do nothing."""

    def attach(self, stop) -> None:
        """Called once before training: ``stop(reason)``, from any thread, stops every stack
        after its current step (the sweep raises SweepInterrupted; ``resume`` goes on)."""

    def started(self, member: int, settings: dict) -> None:
        """Trial ``member`` was asked, with ``settings`` {path: value}."""

    def epoch(self, member: int, metrics: dict) -> None:
        """Trial ``member`` trained an epoch: its metrics (an entry of a Trainer's history)."""

    def ended(self, member: int, row: dict) -> None:
        """Trial ``member`` ended: its row (results.jsonl's), committed."""

    def cancelled(self) -> set[int]:
        """Trials to stop: each leaves with status "cancelled", its weights as they are, at
        its stack's next epoch boundary (one not training yet, at once)."""
        return set()


class TrialRunner:
    """Trains the trials asked of ``study`` in stacks of ``stack_size`` slots refilled at
    epoch boundaries (``refill``; without, a stack's freed slots stay empty until it ends:
    what refilling saves is measured against that), at most ``stack_size`` trials in flight
    for each of the ``runner``'s parallel tasks (numbamlp.sweeps.runners: this process, or
    Dask workers, where each stack is an actor); each trial reported after every epoch it
    trains (``metric``) and pruned when the pruner says so; ``finish(trial, outcome)`` hears
    of each trial that left its stack (status "done", "stopped early", "pruned", "diverged",
    "cancelled", "failed") and returns its row, and the trial is told to the study after it.
    A trial whose settings an earlier one has is not trained again.  A stack lost with its
    Dask worker: its trials train again from their start, in another stack."""

    def __init__(self, study, space: list[Dimension], make_config, data, metric: str, stack_size: int, finish,
                 refill: bool = True, writes=contextlib.nullcontext, commit=lambda: None, runner=None,
                 watch: TrialWatch | None = None):
        from numbamlp.sweeps.runners import InProcessRunner

        self.study, self.space, self.make_config, self.data = study, space, make_config, data
        self.metric, self.stack_size, self.finish, self.refill = metric, stack_size, finish, refill
        self.runner = runner if runner is not None else InProcessRunner()
        self.watch = watch if watch is not None else TrialWatch()
        self.parallel = self.runner.parallel
        # The trials that end at one epoch boundary: their files written inside one ``writes()``
        # (one flush for them all), then ``commit()`` (their rows), then the study told.
        self.writes, self.commit, self.to_tell = writes, commit, []
        self.stacks: list[_OpenStack] = []
        self.waiting: dict[str, deque] = {}  # key -> trials asked, waiting for a slot of their key
        # A trial whose settings an earlier one of this run has is not trained again (it
        # would give the same bits): it takes that trial's outcome, once that trial has one.
        self.outcomes: dict[str, tuple[int, dict]] = {}  # settings -> (member, outcome)
        self.repeats: dict[str, list[_Trial]] = {}  # settings in training -> trials waiting for its outcome
        self.stop_reason = None
        self.epochs_started = itertools.count()

    def run(self, to_ask: int, again: list | None = None) -> None:
        """Train the trials ``again`` (a resumed sweep's interrupted ones: optuna Trials still
        running in the storage, trained again from the start under their numbers) and
        ``to_ask`` more asked of the study (a grid's enqueued combinations first).  The
        config's threads hold throughout (every stack of a search has the base's); SIGINT and
        SIGTERM (in the main thread), or the watch's ``stop``, stop every stack after its
        current step: numbamlp.member.TrainingInterrupted."""
        from numbamlp.member import TrainingInterrupted
        from numbamlp.run import on_signals
        from numbamlp.threads import threads_while

        reported = {t.number: set(t.intermediate_values) for t in self.study.get_trials(deepcopy=False)}
        again = deque(again or ())
        asked = 0
        base = self.make_config({})
        self.shared_data = self.runner.share(self.data)
        self.watch.attach(self._stop)
        try:
            with threads_while(base.threads, base.backend), on_signals(self._stop):
                while True:
                    with self.writes():  # (a repeat of a told trial is told at once)
                        while (again or asked < to_ask) and self._in_flight() < self.stack_size * self.parallel \
                                and self.stop_reason is None:
                            if again:
                                trial = again.popleft()
                                self._place(self._trial(trial, reported.get(trial.number, set())))
                            else:
                                self._place(self._trial(self.study.ask()))
                                asked += 1
                        self._cancel_waiting()
                    self._tell_ended()
                    if not self.stacks:
                        if self.stop_reason is not None and (again or asked < to_ask):
                            raise TrainingInterrupted(0, 0, self.stop_reason)  # (stopped between stacks)
                        return
                    for open_stack in self.stacks:
                        if open_stack.pending is None:
                            if self.stop_reason is not None:  # (a stop from another thread may miss a stack)
                                open_stack.handle.stop(self.stop_reason)
                            open_stack.pending = open_stack.handle.start_epoch(open_stack.seats)
                            open_stack.started_at, open_stack.seats = next(self.epochs_started), {}
                            open_stack.started = True
                    order = self._order(self.stacks)
                    done = self.runner.first_done([s.pending for s in order])
                    with self.writes():
                        self._after_epoch(next(s for s in order if s.pending is done))
                    self._tell_ended()
        finally:
            # (an interrupted search: every stack stopped after its step, then each one's
            # threads and state put back; on Dask, a close waits for the actor's thread)
            for open_stack in self.stacks:
                with contextlib.suppress(Exception):
                    open_stack.handle.stop(self.stop_reason or "the search ended")
            for open_stack in self.stacks:
                with contextlib.suppress(Exception):
                    open_stack.handle.close()

    @staticmethod
    def _order(stacks: list[_OpenStack]) -> list[_OpenStack]:
        """The stacks in the order their epochs are taken (in this process: the first one's
        runs next; on Dask, the first one's that has ended): the stack whose furthest trial
        has trained the most epochs first — the trials the pruner let on finish first, and
        the sampler hears of them sooner — then the oldest epoch.  Against taking the stacks
        in turn, on bench/search.py's data (TPE + ASHA, 24 trials, 5 sampler seeds, in one
        process): the epochs trained before a trial reached the grid's top 10 % fell from
        126, 141, 119, never, 141 to 57, 54, 27, 159, 138 (bench/README.md, issue 28)."""
        return sorted(stacks, key=lambda s: (-max((t.epochs for t in s.slots.values()), default=0), s.started_at))

    def _stop(self, signal_number) -> None:
        """Every stack stopped after its step (from a signal handler, or any thread: a stack
        the search opens or starts an epoch of after this is stopped then)."""
        self.stop_reason = signal_number if isinstance(signal_number, str) else f"signal {signal_number}"
        for open_stack in list(self.stacks):
            open_stack.handle.stop(self.stop_reason)

    def _trial(self, trial, reported: set | None = None) -> _Trial:
        from numbamlp.sweeps.members import stack_key_text

        settings = trial_settings(trial, self.space)
        config = self.make_config(settings)
        return _Trial(trial, settings, config, stack_key_text(config), set(reported or ()))

    def _in_flight(self) -> int:
        """Trials asked and not yet told: those in stacks (without refilling, a started
        stack's every slot, freed or not), waiting for a slot, or waiting for the outcome
        of the trial they repeat."""
        in_stacks = sum(o.size if (o.started and not self.refill) else len(o.slots) for o in self.stacks)
        return in_stacks + sum(len(q) for q in self.waiting.values()) + sum(len(r) for r in self.repeats.values())

    def _place(self, trial: _Trial) -> None:
        """A repeat of an earlier trial's settings: its outcome (now, or when it has one);
        else a slot (``_assign``)."""
        self.watch.started(trial.trial.number, trial.settings)
        settings = _settings_key(trial)
        if settings in self.outcomes:
            self._repeat(trial, *self.outcomes[settings])
            return
        if settings in self.repeats:
            self.repeats[settings].append(trial)
            return
        self.repeats[settings] = []
        self._assign(trial)

    def _assign(self, trial: _Trial) -> None:
        """Into a vacant slot of a stack of its key (without refilling, only before the
        stack's first epoch), else a new stack of its key (when its key has none, or there
        is a parallel task free for it), else wait for a slot."""
        from numbamlp.sweeps.slots import StackLost

        same_key = [s for s in self.stacks if s.key == trial.key]
        for open_stack in same_key:
            if open_stack.vacant() and (self.refill or not open_stack.started):
                self._seat(open_stack, trial)
                return
        if same_key and len(self.stacks) >= self.parallel:
            self.waiting.setdefault(trial.key, deque()).append(trial)
            return
        try:
            handle = self.runner.open_slot_stack(trial.config, self.stack_size, self.shared_data)
        except StackLost as err:  # (the worker Dask chose was lost meanwhile)
            self._lost_trials([trial], err)
            return
        except Exception as err:  # noqa: BLE001 — a trial no stack can take is a failed row
            self._fail(trial, err)
            return
        if self.stop_reason is not None:
            handle.stop(self.stop_reason)
        self.stacks.append(_OpenStack(handle, trial.key, self.stack_size, {0: trial}))

    @staticmethod
    def _seat(open_stack: _OpenStack, trial: _Trial) -> None:
        """The trial in the stack's first vacant slot, seated by its next epoch."""
        slot = open_stack.vacant()[0]
        open_stack.slots[slot], open_stack.seats[slot] = trial, trial.config

    def _cancel_waiting(self) -> None:
        """The trials not yet training that the watch cancels (waiting for a slot, or given
        one for a stack's next epoch): told as cancelled."""
        cancelled = self.watch.cancelled()
        if not cancelled:
            return
        for queue in self.waiting.values():
            for trial in [t for t in queue if t.trial.number in cancelled]:
                queue.remove(trial)
                self._done(trial, _untrained("cancelled"))
        for open_stack in self.stacks:
            for slot in [s for s in open_stack.seats if open_stack.slots[s].trial.number in cancelled]:
                del open_stack.seats[slot]
                self._done(open_stack.slots.pop(slot), _untrained("cancelled"))
        for waiting in self.repeats.values():  # (a repeat waiting for its original's outcome: told alone)
            for trial in [t for t in waiting if t.trial.number in cancelled]:
                waiting.remove(trial)
                self._tell(trial, _untrained("cancelled"))

    def _after_epoch(self, open_stack: _OpenStack) -> None:
        """An epoch of ``open_stack`` ended: every trial that trained in it reported, the
        pruner asked of those still running (in slot order: the same decisions each time the
        same trials run), the trials that ended, were pruned or cancelled let go and
        finished, and their slots refilled.  A stack that fails fails its trials; one lost
        with its Dask worker sends them to train again."""
        from numbamlp.member import TrainingInterrupted
        from numbamlp.sweeps.slots import StackLost

        done, open_stack.pending = open_stack.pending, None
        try:
            report = done.result()
        except TrainingInterrupted:
            raise
        except StackLost as err:
            self._lost(open_stack, err)
            return
        except Exception as err:  # noqa: BLE001 — a stack that fails fails its trials, not the search
            self._stack_failed(open_stack, err)
            return
        for slot, err in report["refused"].items():
            self._fail(open_stack.slots.pop(int(slot)), err)
        for slot, (epochs, metrics) in report["trained"].items():
            trial = open_stack.slots[int(slot)]
            trial.epochs = epochs
            value = metrics.get(self.metric)
            if value is not None and epochs not in trial.reported:  # (trained again: the same value)
                trial.trial.report(value, epochs)
                trial.reported.add(epochs)
            if epochs > trial.heard:
                trial.heard = epochs
                self.watch.epoch(trial.trial.number, metrics)
        ended = {int(slot) for slot in report["ended"]}
        cancelled = self.watch.cancelled()
        leaving: dict[int, str | None] = {}
        for slot in sorted(open_stack.slots):
            if slot in ended or slot in open_stack.seats:
                continue
            if open_stack.slots[slot].trial.number in cancelled:
                leaving[slot] = "cancelled"
            elif open_stack.slots[slot].trial.should_prune():
                leaving[slot] = "pruned"
        leaving.update({slot: None for slot in sorted(ended)})
        try:
            outcomes = open_stack.handle.leave(leaving) if leaving else {}
        except StackLost as err:
            self._lost(open_stack, err)
            return
        except Exception as err:  # noqa: BLE001 — (as above)
            self._stack_failed(open_stack, err)
            return
        for slot, outcome in outcomes.items():
            self._done(open_stack.slots.pop(int(slot)), outcome)
        queue = self.waiting.get(open_stack.key)
        while self.refill and queue and open_stack.vacant():
            self._seat(open_stack, queue.popleft())
        if not open_stack.slots:
            self._close(open_stack)
            for trial in self.waiting.pop(open_stack.key, ()):  # (without refilling: into a stack of their own)
                self._assign(trial)

    def _close(self, open_stack: _OpenStack) -> None:
        self.stacks.remove(open_stack)
        with contextlib.suppress(Exception):  # (a lost worker's stack has nothing to close)
            open_stack.handle.close()

    def _stack_failed(self, open_stack: _OpenStack, err: Exception) -> None:
        """A stack that failed: its trials fail, and so do those waiting for its key when no
        other stack of the key is left to take them (they would fail alike)."""
        self._close(open_stack)
        waiting = () if any(s.key == open_stack.key for s in self.stacks) else self.waiting.pop(open_stack.key, ())
        for trial in [*open_stack.slots.values(), *waiting]:
            self._fail(trial, err)

    def _lost(self, open_stack: _OpenStack, err: Exception) -> None:
        """A stack lost with its Dask worker: its trials train again from their start."""
        self._close(open_stack)
        self._lost_trials([open_stack.slots[slot] for slot in sorted(open_stack.slots)], err,
                          untrained={trial.trial.number for slot, trial in open_stack.slots.items()
                                     if slot in open_stack.seats})

    def _lost_trials(self, trials: list[_Trial], err: Exception, untrained: set = frozenset()) -> None:
        """Trials whose stack was lost: each trains again from its start (the same bits:
        training is deterministic per member) in another stack; one whose stack was lost
        LOSSES_TO_FAIL times while it trained there fails."""
        for trial in trials:
            trial.epochs = 0
            if trial.trial.number not in untrained:
                trial.losses += 1
            if trial.losses >= LOSSES_TO_FAIL:
                self._fail(trial, err)
            else:
                self._assign(trial)

    def _fail(self, trial: _Trial, err) -> None:
        """A trial that could not train (its stack refused it, or failed): a "failed" row."""
        from numbamlp.sweeps.slots import StackFailed
        from numbamlp.sweeps.task import error_text

        message = str(err) if isinstance(err, (str, StackFailed)) else error_text(err)
        self._done(trial, {**_untrained("failed"), "error": message})

    def _done(self, trial: _Trial, outcome: dict) -> None:
        """The trial told, and the trials that repeat its settings with it when its outcome
        is what training them would give (REUSED); else the first of those trains."""
        self._tell(trial, outcome)
        settings = _settings_key(trial)
        repeats = self.repeats.pop(settings, [])
        if outcome["status"] not in REUSED:  # (cancelled, or failed by its stack or a lost worker)
            if repeats:
                self.repeats[settings] = repeats[1:]
                self._assign(repeats[0])
            return
        self.outcomes[settings] = (trial.trial.number, outcome)
        for repeat in repeats:
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
        row = self.finish(trial, outcome)
        self.to_tell.append((trial, outcome, row))

    def _tell_ended(self) -> None:
        """The rows of the trials ended since the last call committed (``commit``), then
        the study told of each: its value, pruned, or failed (a row before its tell: a
        resumed sweep tells a trial from its row when the sweep stopped between the two);
        then the watch hears of them."""
        if not self.to_tell:
            return
        optuna = optuna_module()
        self.commit()
        for trial, outcome, _ in self.to_tell:
            if outcome["status"] == "pruned":
                self.study.tell(trial.trial, state=optuna.trial.TrialState.PRUNED)
            elif outcome.get(self.metric) is not None and outcome["status"] in ("done", "stopped early"):
                self.study.tell(trial.trial, outcome[self.metric])
            else:
                self.study.tell(trial.trial, state=optuna.trial.TrialState.FAIL)
        told, self.to_tell = self.to_tell, []
        for trial, _, row in told:
            self.watch.ended(trial.trial.number, row)


# The outcomes a trial with the same settings takes instead of training: those training it
# again would give (the same bits; a pruned one's, as the pruner stopped the first).
REUSED = ("done", "stopped early", "diverged", "pruned")


def _untrained(status: str) -> dict:
    """The outcome of a trial that left without training."""
    return {"status": status, "error": None, "seconds": 0.0, "history": [], "model": None}


def _settings_key(trial: _Trial) -> str:
    """A trial's settings as text: equal for two trials that would train alike."""
    return json.dumps(trial.settings, sort_keys=True)
