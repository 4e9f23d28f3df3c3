"""One prepared run on a real GPU: correctness, GEMM rate, training steps, digits.

    python bench/gpu_check.py RESULT.json [--smoke]

1. every CUDA kernel against the CPU backend on the GPU (max relative error per kernel);
2. the tiled GEMM's GFLOP/s against cuBLAS float32 (torch.matmul, TF32 off) at 1024³, 2048³;
3. Trainer.step throughput at the small / mnist / deep / large configs against PyTorch CUDA
   float32 (SGD, ReLU), interleaved, medians;
4. stacks of models (issue 12): one step of M members, float32 SGD, ReLU — numbamlp's cuda
   stack step (StepPlan.step on device batches) against PyTorch CUDA torch.func.vmap(grad)
   and torch.bmm/baddbmm with autograd, validated first against the numpy backend, then
   interleaved, medians, member-steps/s: M = 64 small [64, 128, 10] B 32, M = 8 mnist-sized
   [784, 512, 10] B 128;
5. digits trained with backend cuda (the `numbamlp train` defaults), test accuracy.

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
STACKS = {"m64-small": (64, [64, 128, 10], 32), "m8-mnist": (8, [784, 512, 10], 128)}
SMOKE_STACKS = {"m3-smoke": (3, [6, 9, 3], 5)}


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


def gemm_rates(smoke: bool) -> list[dict]:
    from numbamlp.kernels import cuda_backend

    rounds = 1 if smoke else 5
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


def step_rates(smoke: bool) -> list[dict]:
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
        plan = trainer.plan  # the step fit takes: a batch already on the device, the loss copied down
        Xd, yd = cuda.to_device(X[None]), cuda.to_device(y[None])
        steps, rounds = (1, 1) if smoke else (50, 5)
        impls = {"numbamlp": lambda: plan.step(Xd, yd)}
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


def _torch_stack_steps(W, b, lr):
    """PyTorch CUDA steps of the stack (W[l] (M, out, in), b[l] (M, out) float32 tensors):
    {"pytorch_bmm": step(X, y), "pytorch_vmap": step(X, y)}, X (M, B, D), y (M, B); each
    member's loss is its batch's mean cross-entropy, each an SGD step at ``lr``."""
    import torch
    from torch.func import grad, vmap

    def forward(params, X):  # X (M, B, D) with params (W (M, out, in), b (M, out)) per layer, or one member's
        h = X
        for layer, (Wl, bl) in enumerate(params):
            h = torch.baddbmm(bl.unsqueeze(-2), h, Wl.transpose(-1, -2)) if h.dim() == 3 else h @ Wl.T + bl
            if layer < len(params) - 1:
                h = torch.relu(h)
        return h

    bmm_params = [(Wl.clone().requires_grad_(), bl.clone().requires_grad_()) for Wl, bl in zip(W, b)]

    def bmm_step(X, y):
        S = forward(bmm_params, X)
        # Σ over members of each member's mean loss: member m's gradients are its own
        loss = torch.nn.functional.cross_entropy(S.reshape(-1, S.shape[-1]), y.reshape(-1), reduction="none")
        loss.view(y.shape).mean(dim=1).sum().backward()
        with torch.no_grad():
            for Wl, bl in bmm_params:
                Wl -= lr * Wl.grad
                bl -= lr * bl.grad
                Wl.grad = bl.grad = None
        return bmm_params

    vmap_params = [(Wl.clone(), bl.clone()) for Wl, bl in zip(W, b)]

    def member_loss(params, X, y):  # one member: X (B, D), y (B,)
        return torch.nn.functional.cross_entropy(forward(params, X), y)

    member_grads = vmap(grad(member_loss))

    def vmap_step(X, y):
        grads = member_grads(vmap_params, X, y)
        with torch.no_grad():
            for (Wl, bl), (gW, gb) in zip(vmap_params, grads):
                Wl -= lr * gW
                bl -= lr * gb
        return vmap_params

    return {"pytorch_bmm": bmm_step, "pytorch_vmap": vmap_step}


def stack_rates(smoke: bool) -> list[dict]:
    """Member-steps/s of one float32 SGD step of a stack, numbamlp against PyTorch CUDA."""
    from numbamlp.plan import StepPlan

    results = []
    for name, (M, layers, batch) in (SMOKE_STACKS if smoke else STACKS).items():
        rng = np.random.default_rng(3)
        X = rng.normal(size=(M, batch, layers[0])).astype(np.float32)
        y = rng.integers(0, layers[-1], (M, batch))
        scale = [np.sqrt(2.0 / n_in) for n_in in layers[:-1]]
        W = [(rng.normal(size=(M, n_out, n_in)) * s).astype(np.float32)
             for n_in, n_out, s in zip(layers[:-1], layers[1:], scale)]
        b = [(rng.normal(size=(M, n_out)) * 0.1).astype(np.float32) for n_out in layers[1:]]
        lr = 0.01
        plans = {}
        for backend in ("cuda", "numpy"):
            plan = plans[backend] = StepPlan(layers, "relu", "sgd", M, batch, np.float32, backend)
            for layer, offset in enumerate(plan.layout.param_offsets):
                n_out, n_in = W[layer].shape[1:]
                plan.host.params[:, offset : offset + n_out * n_in] = W[layer].reshape(M, -1)
                plan.host.params[:, offset + n_out * n_in : offset + n_out * (n_in + 1)] = b[layer]
            plan.settings.lr[:] = lr
            plan.push()
        Xd, yd = cuda.to_device(X), cuda.to_device(y)
        # validate first: one step on the device against the numpy backend's
        plans["cuda"].step(Xd, yd)
        plans["numpy"].step(X, y)
        plans["cuda"].pull()
        row = {"stack": name, "members": M, "layers": layers, "batch": batch,
               "max_rel_error_vs_numpy": max_rel(plans["cuda"].host.params, plans["numpy"].host.params)}
        steps, rounds = (1, 1) if smoke else (50, 5)
        impls = {"numbamlp": lambda: plans["cuda"].step(Xd, yd)}
        synchronize = cuda.synchronize
        try:
            import torch

            row["pytorch_max_rel_error_vs_numpy"] = _torch_first_step_error(X, y, W, b, lr, plans["numpy"])
            Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")
            for key, step in _torch_stack_steps([torch.as_tensor(w, device="cuda") for w in W],
                                                [torch.as_tensor(v, device="cuda") for v in b], lr).items():
                impls[key] = lambda step=step: step(Xt, yt)

            def synchronize():
                cuda.synchronize()
                torch.cuda.synchronize()
        except Exception as err:  # no torch or no torch CUDA: report what was measured
            row["note"] = f"PyTorch CUDA peers unavailable: {type(err).__name__}: {err}"
        for fn in impls.values():  # warm-up (compiles the kernels, builds torch's graphs)
            fn()
        synchronize()
        samples = {k: [] for k in impls}
        for _ in range(rounds):  # interleaved: each round times every implementation
            for k, fn in impls.items():
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                synchronize()
                samples[k].append((time.perf_counter() - start) / steps)
        for k, v in samples.items():
            row[f"{k}_us"] = statistics.median(v) * 1e6
            row[f"{k}_member_steps_per_s"] = M / statistics.median(v)
        peers = [row[f"{k}_member_steps_per_s"] for k in impls if k != "numbamlp"]
        if peers:
            row["ratio_to_best_peer"] = row["numbamlp_member_steps_per_s"] / max(peers)
        results.append(row)
    return results


def _torch_first_step_error(X, y, W, b, lr, numpy_plan) -> float:
    """Max relative difference between PyTorch's first bmm and vmap steps (from the same
    weights) and the numpy backend's, over the flat parameters."""
    import torch

    errors = []
    for step in _torch_stack_steps([torch.as_tensor(w, device="cuda") for w in W],
                                   [torch.as_tensor(v, device="cuda") for v in b], lr).values():
        params = step(torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda"))
        M = X.shape[0]
        flat = np.concatenate([np.concatenate([Wl.detach().cpu().numpy().reshape(M, -1),
                                               bl.detach().cpu().numpy()], axis=1) for Wl, bl in params], axis=1)
        errors.append(max_rel(flat, numpy_plan.host.params))
    return max(errors)


def digits(smoke: bool) -> dict:
    from numbamlp.config import TrainConfig
    from numbamlp.data import prepare
    from numbamlp.trainer import Trainer

    # smoke: a narrow network on a few rows (the simulator runs every GPU thread in Python)
    smaller = {"epochs": 1, "model": {"hidden": [8]}} if smoke else {}
    config = TrainConfig.model_validate({"backend": "cuda", "epochs": 30, **smaller})
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
    report["stacks"] = stack_rates(args.smoke)
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
    for row in report["stacks"]:
        rates = ", ".join(f"{k[:-len('_member_steps_per_s')]} {v:,.0f}" for k, v in row.items()
                          if k.endswith("_member_steps_per_s"))
        print(f"stack {row['stack']:<10} member-steps/s: {rates}  "
              f"ratio to the best peer {row.get('ratio_to_best_peer', '—')}  "
              f"(validation: max rel error vs numpy {row['max_rel_error_vs_numpy']:.1e}) {row.get('note', '')}")
    print(f"digits on cuda: test accuracy {report['digits']['test_accuracy']:.4f} in {report['digits']['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
