"""One prepared run on a real GPU: correctness, GEMM rate, training steps, digits.

    python bench/gpu_check.py RESULT.json [--smoke]

1. every CUDA kernel against the CPU backend on the GPU (max relative error per kernel);
2. the tiled GEMM's GFLOP/s against cuBLAS float32 (torch.matmul, TF32 off) at 1024³, 2048³;
3. Trainer.step throughput at the small / mnist / deep / large configs against PyTorch CUDA
   float32 (SGD, ReLU), interleaved, medians;
4. digits trained with backend cuda (the `numbamlp train` defaults), test accuracy.

Prints a table and writes everything to RESULT.json.  Meant to finish in under 4 minutes
on one H100.  ``--smoke`` shrinks every size so the script can be exercised under
NUMBA_ENABLE_CUDASIM=1 (where timings mean nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from numba import cuda

CONFIGS = {"small": ([64, 128, 10], 32), "mnist": ([784, 512, 10], 128),
           "deep": ([784, 1024, 1024, 10], 256), "large": ([784, 2048, 2048, 10], 1024)}
SMOKE_CONFIGS = {"small": ([6, 9, 3], 5)}


def max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_kernels(smoke: bool) -> dict:
    from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS, get_backend

    gpu, cpu = get_backend("cuda"), get_backend("numpy")
    rng = np.random.default_rng(0)
    B, D, H, C = (9, 7, 5, 3) if smoke else (257, 300, 513, 10)
    f = np.float32
    X, W, b = rng.normal(size=(B, D)).astype(f), rng.normal(size=(H, D)).astype(f), rng.normal(size=H).astype(f)
    errors = {}
    out_g, out_c = np.zeros((B, H), f), np.zeros((B, H), f)
    gpu.affine_forward(out_g, X, W, b)
    cpu.affine_forward(out_c, X, W, b)
    errors["affine_forward"] = max_rel(out_g, out_c)
    dout = rng.normal(size=(B, H)).astype(f)
    g = [np.zeros((B, D), f), np.zeros((H, D), f), np.zeros(H, f)]
    c = [np.zeros((B, D), f), np.zeros((H, D), f), np.zeros(H, f)]
    gpu.affine_backward(*g, dout, X, W)
    cpu.affine_backward(*c, dout, X, W)
    errors["affine_backward"] = max(max_rel(a, e) for a, e in zip(g, c))
    for name in ACTIVATION_NAMES:
        spec = ACTIVATIONS[name]
        hg, hc, dg, dc = (np.zeros_like(out_c) for _ in range(4))
        getattr(gpu, f"{name}_forward")(hg, out_c, spec.alpha)
        getattr(cpu, f"{name}_forward")(hc, out_c, spec.alpha)
        cache = out_c if spec.backward_uses == "input" else hc
        getattr(gpu, f"{name}_backward")(dg, dout, cache, spec.alpha)
        getattr(cpu, f"{name}_backward")(dc, dout, cache, spec.alpha)
        errors[name] = max(max_rel(hg, hc), max_rel(dg, dc))
    S, y = rng.normal(size=(B, C)).astype(f) * 3, rng.integers(0, C, B)
    Pg, Pc, rg, rc, dg, dc = (np.zeros((B, C), f), np.zeros((B, C), f), np.zeros(B, f), np.zeros(B, f),
                              np.zeros((B, C), f), np.zeros((B, C), f))
    lg = gpu.softmax_crossentropy_forward(Pg, rg, S, y)
    lc = cpu.softmax_crossentropy_forward(Pc, rc, S, y)
    gpu.softmax_crossentropy_backward(dg, Pg, y)
    cpu.softmax_crossentropy_backward(dc, Pc, y)
    errors["softmax_crossentropy"] = max(abs(lg - lc) / abs(lc), max_rel(dg, dc))
    return errors


def gemm_rates(smoke: bool, rounds: int = 5) -> list[dict]:
    from numbamlp.kernels import cuda_backend

    results = []
    for n in ((33,) if smoke else (1024, 2048)):
        rng = np.random.default_rng(1)
        A = cuda.to_device(rng.normal(size=(n, n)).astype(np.float32))
        B = cuda.to_device(rng.normal(size=(n, n)).astype(np.float32))
        C = cuda.device_array((n, n), np.float32)
        cuda_backend._gemm(C, A, B)
        cuda.synchronize()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            cuda_backend._gemm(C, A, B)
            cuda.synchronize()
            times.append(time.perf_counter() - start)
        row = {"n": n, "numbamlp_gflops": 2 * n**3 / statistics.median(times) / 1e9}
        try:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False
            ta, tb = torch.as_tensor(A.copy_to_host(), device="cuda"), torch.as_tensor(B.copy_to_host(), device="cuda")
            torch.matmul(ta, tb)
            torch.cuda.synchronize()
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                torch.matmul(ta, tb)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            row["cublas_gflops"] = 2 * n**3 / statistics.median(times) / 1e9
            row["ratio"] = row["numbamlp_gflops"] / row["cublas_gflops"]
        except Exception as err:  # no torch or no torch CUDA: report what was measured
            row["cublas_gflops"] = None
            row["note"] = f"cuBLAS reference unavailable: {type(err).__name__}: {err}"
        results.append(row)
    return results


def step_rates(smoke: bool, rounds: int = 5) -> list[dict]:
    from numbamlp import MLP
    from numbamlp.trainer import Trainer

    results = []
    for name, (layers, batch) in (SMOKE_CONFIGS if smoke else CONFIGS).items():
        rng = np.random.default_rng(2)
        X = rng.normal(size=(batch, layers[0])).astype(np.float32)
        y = rng.integers(0, layers[-1], batch)
        trainer = Trainer({"backend": "cuda", "batch_size": batch, "model": {"layers": layers},
                           "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}})
        trainer.set_model(MLP(layers, seed=0))
        upload = trainer._mirror.upload
        Xd, yd = upload(X), upload(y)
        steps = 3 if smoke else 50
        impls = {"numbamlp": lambda: trainer._device_step(Xd, yd, None, 0.01)}
        try:
            import torch

            model = torch.nn.Sequential(*[m for i, o in zip(layers[:-1], layers[1:])
                                          for m in (torch.nn.Linear(i, o), torch.nn.ReLU())][:-1]).cuda()
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")

            def torch_step():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(Xt), yt)
                loss.backward()
                opt.step()
                return loss.item()

            impls["pytorch"] = torch_step
        except Exception:
            pass
        for fn in impls.values():
            fn()
        samples = {k: [] for k in impls}
        for _ in range(rounds):
            for k, fn in impls.items():
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                samples[k].append((time.perf_counter() - start) / steps)
        row = {"config": name, "layers": layers, "batch": batch,
               **{f"{k}_us": statistics.median(v) * 1e6 for k, v in samples.items()}}
        if "pytorch_us" in row:
            row["ratio"] = row["pytorch_us"] / row["numbamlp_us"]
        results.append(row)
    return results


def digits(smoke: bool) -> dict:
    from numbamlp.config import TrainConfig
    from numbamlp.data import prepare
    from numbamlp.trainer import Trainer

    config = TrainConfig.model_validate({"backend": "cuda", "epochs": 1 if smoke else 30})
    splits = prepare(config.data, config.seed)
    if smoke:
        splits.X_train, splits.y_train = splits.X_train[:40], splits.y_train[:40]
    start = time.perf_counter()
    trainer = Trainer(config)
    trainer.fit(splits.X_train, splits.y_train)
    return {"test_accuracy": trainer.evaluate(splits.X_test, splits.y_test)["accuracy"],
            "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", help="where to write the JSON results")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the simulator")
    args = parser.parse_args(argv)
    import os

    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    name = "simulator" if simulated else cuda.get_current_device().name
    report = {"device": name.decode() if isinstance(name, bytes) else str(name)}
    report["kernels"] = check_kernels(args.smoke)
    report["gemm"] = gemm_rates(args.smoke)
    report["steps"] = step_rates(args.smoke)
    report["digits"] = digits(args.smoke)
    with open(args.result, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(f"device: {report['device']}")
    print("kernel max relative error vs CPU: " + ", ".join(f"{k} {v:.1e}" for k, v in report["kernels"].items()))
    for row in report["gemm"]:
        print(f"GEMM {row['n']}³: numbamlp {row['numbamlp_gflops']:.0f} GFLOP/s, cuBLAS {row.get('cublas_gflops')}")
    for row in report["steps"]:
        print(f"step {row['config']:<6} numbamlp {row['numbamlp_us']:.1f} µs  pytorch {row.get('pytorch_us', '—')}"
              f"  ratio {row.get('ratio', '—')}")
    print(f"digits on cuda: test accuracy {report['digits']['test_accuracy']:.4f} in {report['digits']['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
