"""What a run compiles: the cpu backend compiles a step specialised for the run's
activation and optimizer (kernels/cpu_backend.py, "What a run compiles"), and a second
process loads it from Numba's cache without compiling anything."""

import os
import subprocess
import sys

import pytest

# One training step in a fresh process; prints what the process compiled (Numba's compile
# events, by function name) and which kernels now have compiled versions.
STEP = """
import sys
import numpy as np
from numba.core import event
from numbamlp.kernels import cpu_backend
from numbamlp.trainer import Trainer

compiled = []
class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(getattr(e.data["dispatcher"], "__name__", "?"))
    def on_end(self, e):
        pass
event.register("numba:compile", Listener())
activation, optimizer, hidden = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = Trainer({"batch_size": 8, "model": {"hidden": [hidden], "activation": activation},
             "optimizer": {"name": optimizer}})
rng = np.random.default_rng(0)
t.step(rng.normal(size=(8, 16)).astype(np.float32), np.arange(8) % 3)
print("compiled", *compiled)
# (a public kernel's compiled dispatcher is its private name, behind the checked public one)
print("kernels", *[name[1:] if name[1:] in cpu_backend.KERNEL_CHECKS else name for name in dir(cpu_backend)
                   if getattr(getattr(cpu_backend, name), "signatures", None)])
"""


def run_step(env, activation, optimizer, hidden=32) -> dict[str, list[str]]:
    run = subprocess.run([sys.executable, "-c", STEP, activation, optimizer, str(hidden)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in run.stdout.splitlines())
    return {key: lines[key].split() for key in ("compiled", "kernels")}


@pytest.mark.slow
def test_a_run_compiles_its_own_activation_and_optimizer_and_a_second_process_compiles_nothing(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first = run_step(env, "tanh", "momentum")
    assert "stack_step_tanh_sgd" in first["compiled"], first
    kernels = set(first["kernels"])
    # the run's own kernels were compiled, no other activation's, not Adam, and no update
    # chunks for a model this small (9,000 parameters < UPDATE_PARALLEL_MIN)
    assert {"tanh_forward", "tanh_backward", "_gemm"} <= kernels, kernels
    others = {f"{name}_{d}" for name in ("relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu")
              for d in ("forward", "backward")}
    assert not kernels & (others | {"adam_update", "_update_in_chunks"}), kernels & others
    second = run_step(env, "tanh", "momentum")
    assert second["compiled"] == [], second  # everything came from the cache
    # another activation and optimizer: its own step; the shared kernels (the GEMM) from the cache
    third = run_step(env, "gelu", "adam")
    assert "stack_step_gelu_adam" in third["compiled"] and "_gemm" not in third["compiled"], third
    assert run_step(env, "gelu", "adam")["compiled"] == []


@pytest.mark.slow
def test_past_update_parallel_min_the_step_with_update_chunks_is_cached_too(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first = run_step(env, "relu", "adam", hidden=5000)  # 16·5000 + 5000·3 + … > 65,536 parameters
    assert "stack_step_relu_adam_chunked" in first["compiled"], first
    assert "_update_in_chunks" in first["kernels"], first
    assert run_step(env, "relu", "adam", hidden=5000)["compiled"] == []
