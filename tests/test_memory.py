"""The steady-state training step allocates nothing: no array inside the compiled step, no
growth in Python over thousands of steps."""

import tracemalloc

import numpy as np
import pytest
from numba import njit
from numba.core.runtime import rtsys

from numbamlp.kernels import cpu_backend
from numbamlp.trainer import Trainer

CONFIGS = {"sgd": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0},
           "momentum": {"name": "sgd", "momentum": 0.9, "weight_decay": 1e-3},
           "adam": {"name": "adam"}}


def prepared_trainer(optimizer, layers=(64, 128, 96, 10), batch=32):
    rng = np.random.default_rng(0)
    trainer = Trainer({"batch_size": batch, "model": {"layers": list(layers)}, "optimizer": optimizer})
    trainer.build(layers[0], layers[-1])
    X = rng.normal(size=(batch, layers[0])).astype(np.float32)
    y = rng.integers(0, layers[-1], batch)
    for _ in range(3):
        trainer.train_step(X, y, None, 0.01)  # compile, build the workspace
    return trainer, X, y


def repeat(step_function):
    """A compiled loop of ``n`` calls of a compiled stack step (Python's own call wrappers
    allocate, so the steps must be called from compiled code to count only theirs)."""

    @njit
    def steps(n, buffers, layout, settings, X, y, uses_output, alpha, flag):
        for _ in range(n):
            step_function(buffers, layout, settings, X, y, None, uses_output, alpha, flag)

    return steps


def allocation_counts(optimizer) -> list[int]:
    """Numba allocations for 1 and for 2000 steps run inside one compiled loop, for a model
    alone (its trainer's plan) and for a stack of 3 one member per thread (needs
    NUMBA_NRT_STATS=1 in the environment before Numba is imported)."""
    from numbamlp.plan import StepPlan

    trainer, X, y = prepared_trainer(CONFIGS[optimizer])
    stack = StepPlan(trainer.model.layers, "relu", CONFIGS[optimizer]["name"], 3, len(y), np.float32, "cpu")
    for m in range(3):
        stack.buffers.params[m] = trainer.model.flat_params
        stack.set_member(m, trainer.config.optimizer)
    counts = []
    for plan, by_member in ((trainer._plan, False), (stack, True)):
        act_code, uses_output, alpha, adam, flag = plan.options
        plain = not adam and plan.settings.momentum[0] == 0
        mode = cpu_backend.UPDATE_SGD if plain else cpu_backend.UPDATE_AFTER
        loop = repeat(cpu_backend.stack_function(act_code, mode, adam, False, by_member, False))
        args = (plan.buffers, plan.layout, plan.settings, X[None], y[None], uses_output, alpha, flag)
        loop(1, *args)
        for n in (1, 2000):
            before = rtsys.get_allocation_stats()
            loop(n, *args)
            after = rtsys.get_allocation_stats()
            assert after.alloc - before.alloc == after.free - before.free  # nothing leaks
            counts.append(after.alloc - before.alloc)
    return counts


@pytest.mark.parametrize("optimizer", CONFIGS)
def test_compiled_step_allocates_nothing(optimizer):
    """Numba's allocator counts every array it creates: 2000 steps inside one compiled loop
    must allocate exactly as much as 1 step (only the call's own argument wrappers)."""
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, __file__, optimizer], capture_output=True, text=True,
                         env={**os.environ, "NUMBA_NRT_STATS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr
    one, many, stack_one, stack_many = map(int, run.stdout.split())
    assert one > 0 and stack_one > 0, "allocation statistics were not collected"
    assert one == many, f"allocations grew with steps: 1 step {one}, 2000 steps {many}"
    assert stack_one == stack_many, f"a stack's allocations grew with steps: 1 step {stack_one}, 2000 steps {stack_many}"


@pytest.mark.parametrize("optimizer", CONFIGS)
def test_python_side_of_thousands_of_steps_does_not_grow(optimizer):
    trainer, X, y = prepared_trainer(CONFIGS[optimizer])
    tracemalloc.start()
    for _ in range(200):
        trainer.step(X, y)
    settled, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in range(3000):
        trainer.step(X, y)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current - settled < 16_384, f"grew by {current - settled} bytes over 3000 steps"
    # no step allocates anything array-sized (the gradient alone is 45 KB here)
    assert peak - settled < 16_384, f"a step allocated {peak - settled} bytes at its peak"


if __name__ == "__main__":  # the subprocess of test_compiled_step_allocates_nothing
    import sys

    print(*allocation_counts(sys.argv[1]))


def test_scoring_a_big_x_takes_memory_for_the_scores_and_one_chunk():
    """MLP.scores standardised and converted the whole of X and sized its workspace for every
    row: predict and eval peaked near 6x a big float32 X (924 MB for 128 MB of X, bench
    measurements in bench/README.md).  It scores SCORING_ROWS rows at a time."""
    from numbamlp.data import Standardizer
    from numbamlp.model import MLP

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 32)).astype(np.float32)
    model = MLP([32, 16, 3])
    model.input_transform = Standardizer.fit(X[:1000])
    model.scores(X[:10])  # (kernels loaded)
    tracemalloc.start()
    scores = model.scores(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < scores.nbytes + 0.2 * X.nbytes, (peak, X.nbytes)
