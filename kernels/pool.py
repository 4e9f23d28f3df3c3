"""Numba's thread pool: started once, and on the default settings as many threads as the
cores that other processes leave free.

Why: Numba's default threading layer on Linux is GNU OpenMP (libgomp), whose threads spin
for a while (GOMP_SPINCOUNT, 300,000 turns by default) before they sleep, at every barrier
and between parallel loops.  On a quiet machine that saves a wake-up per loop; beside a
busy process, the spinning thread holds a core that the thread it waits for, descheduled
by the other process, needs: with one other busy process on 2 cores, whole fits ran 5-25x
slower than on one thread (bench/contention.py; the tables and the choice are in
bench/README.md, "a busy machine (issue 25)").

What was measured and not chosen: threads that sleep at once (OMP_WAIT_POLICY=PASSIVE,
set before the pool starts) held up under load but cost 9-22 % of a quiet step (a futex
wake-up per parallel loop, dear on this virtual machine); shorter spins (GOMP_SPINCOUNT
3,000-10,000) were level when quiet but 1.2-1.6x one thread's time beside a busy process;
Numba's workqueue layer was 1.7x slower quiet at a stack of 32; TBB held up under load but
was 1.14x slower quiet there, and Numba finds its library only through the library path.

What is done instead: OpenMP keeps its own waiting, and a fit or step on the default
threads (``threads`` unset) runs on the cores this process may use less those other
processes kept busy over the last half second (read from /proc/stat, this process's own
CPU time taken out), shared among this process's threads that train at once; at least
one.  On one thread the kernels take their serial paths and nothing spins.  The thread
count never changes the bits (kernels/cpu_backend.py: blocks cut by shape).  Where
/proc/stat cannot be read (not Linux), the default stays all usable cores.  An explicit
``threads`` is left as given.
"""

from __future__ import annotations

import os
import threading
import time

SAMPLE_EVERY_S = 0.5  # how often a training thread looks at the machine's load
# /proc/stat counts in ticks (10 ms): over a window of w seconds a core's busy time is known
# to about ±0.02/w cores, which a shorter window than this makes too coarse to go by
_MIN_WINDOW_S = 0.25
_TRAINING_RECENTLY_S = 2 * SAMPLE_EVERY_S  # a thread that adapted this recently is training
_STALE_S = 4 * SAMPLE_EVERY_S  # a window longer than this starts afresh
# USER_HZ: the unit of /proc/stat's times
_TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)

_starting = threading.Lock()
_started = False


def start() -> None:
    """Start Numba's thread pool (once per process; later calls return at once) and take the
    first reading of the machine's load."""
    global _started
    if _started:
        return
    with _starting:
        if not _started:
            import numba

            numba.get_num_threads()  # (starts the pool)
            _LOAD.free_cores()  # (the first reading)
            _started = True


def wait_policy() -> str:
    """How Numba's idle threads wait, in words, for ``numbamlp info``."""
    start()
    import numba

    layer = numba.threading_layer()
    if layer != "omp":
        return f"{layer}'s own"
    chosen = [f"{name}={os.environ[name]}" for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if name in os.environ]
    return ", ".join(chosen) + " (from the environment)" if chosen else "OpenMP's own (spin, then sleep)"


def thread_choice() -> str:
    """How the default thread count is chosen, in words, for ``numbamlp info``."""
    start()
    time.sleep(0.25)  # (a window to read the load over)
    if _LOAD.cpus is None:
        return "all usable cores (this system's load cannot be read)"
    free = _LOAD.free_cores()
    now = f"now {free} of {len(_LOAD.cpus)}" if free is not None else f"{len(_LOAD.cpus)} usable"
    return f"the usable cores that other processes leave free, looked at every {SAMPLE_EVERY_S:g} s while training ({now})"


def keep_one_thread() -> None:
    """From now on, leave this process on the threads it has (one, in a child forked under
    GNU OpenMP, which cannot start parallel work: kernels/cpu_backend.py)."""
    _LOAD.adapting = False


def one_thread_in_forked_children() -> None:
    """Under GNU OpenMP, run a child forked from this process on one thread: OpenMP does
    not survive fork(), and Numba terminates a child that starts parallel work after its
    parent used OpenMP (measured: a multiprocessing pool forked after a fit hung with its
    workers dead).  On one thread the kernels take their serial paths; the blocks are the
    same, so are the bits, and the default threads' look at the load keeps it there.  The
    cpu backend calls this once its pool has started (the layer is known only then)."""
    import numba

    if numba.threading_layer() == "omp":
        os.register_at_fork(after_in_child=_one_thread_after_fork)


def _one_thread_after_fork() -> None:
    set_numba_threads(1)
    keep_one_thread()


def look_at_the_next_step() -> None:
    """Let the calling thread's next ``adapt_threads`` look at the load at once (after a fit
    put its threads back as they were: a fit that follows should not run on those for the
    half second until its next look)."""
    _LOAD.local.next_look = 0.0


def adapt_threads() -> None:
    """For a fit or step on the default threads (call it before each step): at most every
    SAMPLE_EVERY_S, set the calling thread's Numba threads to its share of the free cores
    (``free_cores`` divided among this process's threads training at once, at least 1).
    ~0.1 µs when it is not yet time."""
    if not _LOAD.adapting:
        return
    local = _LOAD.local
    now = time.monotonic()
    if now < getattr(local, "next_look", 0.0):
        return
    threads = _LOAD.share(now)
    local.next_look = now + (SAMPLE_EVERY_S if threads is not None else _MIN_WINDOW_S)
    if threads is not None:
        set_numba_threads(threads)


def set_numba_threads(threads: int) -> None:
    """Run the calling thread's Numba parallel regions on ``threads`` threads: at least one,
    at most the pool's size (NUMBA_NUM_THREADS, more than which Numba refuses)."""
    import numba

    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    if threads != numba.get_num_threads():
        numba.set_num_threads(threads)


class _Load:
    """How busy this process's usable cores are with other processes' work: readings of
    /proc/stat's per-CPU busy times and of this process's CPU time, compared over the time
    between two readings (at least _MIN_WINDOW_S)."""

    def __init__(self):
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # (not Linux)
            cpus = None
        self.cpus = cpus
        self.lock = threading.Lock()
        self.local = threading.local()
        self.last = None  # (monotonic s, busy s on our CPUs, this process's CPU s)
        self.free = None if cpus is None else len(cpus)
        self.training: dict[int, float] = {}  # thread id → when it last asked for its share
        self.adapting = True  # (False in a child forked under OpenMP: it stays on one thread)

    def reading(self):
        """(now, seconds our CPUs were busy, seconds of CPU this process used), or None
        where /proc/stat cannot be read (then nothing adapts)."""
        if self.cpus is None:
            return None
        wanted = {f"cpu{n}" for n in self.cpus}
        busy = 0
        try:
            with open("/proc/stat") as stat:
                for line in stat:
                    if not line.startswith("cpu"):
                        break
                    fields = line.split()
                    if fields[0] in wanted:  # user nice system idle iowait irq softirq steal ...
                        numbers = [int(f) for f in fields[1:9]]
                        busy += sum(numbers) - numbers[3] - numbers[4]
        except (OSError, ValueError, IndexError):
            self.cpus = None
            return None
        return time.monotonic(), busy * _TICK_S, time.process_time()

    def free_cores(self) -> int | None:
        """The usable cores other processes left free since the last reading, at least 1 (the
        last answer when that reading is under _MIN_WINDOW_S old); None when not known."""
        with self.lock:
            return self._free_cores()

    def _free_cores(self) -> int | None:
        if self.last is None:  # (the first reading: nothing to compare it with yet)
            self.last = self.reading()
            return None
        now = self.reading()
        if now is None:
            return None
        wall, busy, ours = (b - a for a, b in zip(self.last, now))
        if wall < _MIN_WINDOW_S:
            return self.free
        if wall > _STALE_S:  # (an average over long ago says little of now: a new window)
            self.last = now
            return None
        self.last = now
        others = max(0.0, busy - ours) / wall  # cores' worth of other processes' work
        # a core counts as taken from 0.6 of it on: below that, a little background work (an
        # editor, a browser) would cost a quiet machine half its threads
        self.free = max(1, len(self.cpus) - int(others + 0.4))
        return self.free

    def share(self, now: float) -> int | None:
        """The calling training thread's share of the free cores."""
        with self.lock:
            free = self._free_cores()
            self.training[threading.get_ident()] = now
            for ident, last in list(self.training.items()):
                if now - last > _TRAINING_RECENTLY_S:
                    del self.training[ident]
            return None if free is None else max(1, free // len(self.training))


_LOAD = _Load()


def _forget_readings_after_fork() -> None:
    # a forked child's CPU time starts again at 0: a reading of its parent's is no baseline
    _LOAD.last, _LOAD.training = None, {}
    _LOAD.local.next_look = 0.0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_readings_after_fork)
