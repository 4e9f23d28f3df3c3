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
        trainer._step(X, y, None, 0.01)  # compile, build the workspace
    return trainer, X, y


@njit
def repeat_step(n, params, grads, a, b, layers, offsets, ws, hidden, S, P, dS, row_loss, scalars, X, y,
                act, uses_output, alpha, mode, adam, lr, momentum, wd, flag, b1, b2, eps, step):
    loss = 0.0
    for _ in range(n):
        loss = cpu_backend.train_step(params, grads, a, b, layers, offsets, ws, hidden, S, P, dS, row_loss,
                                      scalars, X, y, None, act, uses_output, alpha, mode, adam, lr, momentum,
                                      wd, flag, b1, b2, eps, step)
    return loss


def allocation_counts(optimizer) -> list[int]:
    """Numba allocations for 1 and for 2000 steps run inside one compiled loop (needs
    NUMBA_NRT_STATS=1 in the environment before Numba is imported)."""
    trainer, X, y = prepared_trainer(CONFIGS[optimizer])
    rows = trainer._workspace.rows(len(y))
    arguments = trainer.optimizer.arguments(0.01)
    adam, _, momentum, *_ = arguments
    mode = cpu_backend.UPDATE_AFTER if adam or momentum else cpu_backend.UPDATE_SGD
    args = (trainer.model.flat_params, trainer._grad_flat, *trainer.optimizer.buffers, trainer._layers,
            trainer._offsets, trainer._workspace.flat, trainer._workspace.hidden_offsets, rows.S, rows.P,
            rows.dS, rows.row_loss, trainer._scalars, X, y, *trainer._activation_arguments, mode, *arguments)
    repeat_step(1, *args)
    counts = []
    for n in (1, 2000):
        before = rtsys.get_allocation_stats()
        repeat_step(n, *args)
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
    one, many = map(int, run.stdout.split())
    assert one > 0, "allocation statistics were not collected"
    assert one == many, f"allocations grew with steps: 1 step {one}, 2000 steps {many}"


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
