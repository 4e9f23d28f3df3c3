"""On a real NVIDIA GPU only (skips itself elsewhere, saying why)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import cuda

ON_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and cuda.is_available()


@pytest.mark.slow
def test_gpu_check_script_runs_end_to_end_in_smoke_mode(tmp_path):
    """bench/gpu_check.py, the one prepared script for a GPU session, works before it is needed."""
    script = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": os.environ.get("NUMBA_ENABLE_CUDASIM", "1")}
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "r.json"), "--smoke"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "kernel max relative error vs CPU" in run.stdout and (tmp_path / "r.json").exists()


@pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU (none here, or running under the simulator)")
def test_digits_on_the_gpu_reaches_97_percent_and_the_saved_model_predicts_on_the_cpu():
    from numbamlp.config import TrainConfig
    from numbamlp.data import prepare
    from numbamlp.trainer import Trainer

    config = TrainConfig.model_validate({"backend": "cuda"})
    splits = prepare(config.data, config.seed)
    trainer = Trainer(config)
    trainer.fit(splits.X_train, splits.y_train)
    assert trainer.evaluate(splits.X_test, splits.y_test)["accuracy"] >= 0.97
    from numbamlp import load_model, save_model

    save_model(trainer.model, Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-digits.safetensors")

    on_cpu = load_model(Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-digits.safetensors")
    np.testing.assert_array_equal(on_cpu.predict(splits.X_test, backend="cpu"), trainer.predict(splits.X_test))
