"""Training-step benchmark: numbamlp against numpy, PyTorch eager and JAX (jit), interleaved.

    python bench/train.py [--configs small,mnist,deep,large] [--rounds 7] [--dtype float32]
                          [--activation relu] [--optimizer sgd] [--json]
    numbamlp bench ...      (the same)

One call = one minibatch update (forward, mean softmax cross-entropy, backward, SGD with
weights updated in place, loss returned as a Python float).  All implementations start
from the same weights and are validated against each other on the first step before any
timing.  Compile / warm-up time is excluded from the steady-state numbers and reported
separately.  Rounds are interleaved (every implementation once per round) and the table
shows medians, the ratio numbamlp ÷ best peer and numbamlp ÷ batched numpy in speed
(> 1: numbamlp faster; numbamlp is called as a user calls it, Trainer.step), GFLOP/s of the
matrix products a step actually computes (see step_flops), and the machine's GEMM rate in
the benchmark's dtype (numpy matmul, 2048³) as the roofline.  PyTorch and JAX are
optional (`pip install -e '.[bench]'`); a missing peer is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

CONFIGS = {
    "small": ([64, 128, 10], 32),
    "mnist": ([784, 512, 10], 128),
    "deep": ([784, 1024, 1024, 10], 256),
    "large": ([784, 2048, 2048, 10], 1024),
}
TARGETS = {"small": 2.0, "mnist": 1.1, "deep": 1.0, "large": 0.95}
LR = 0.01


def step_flops(layers, batch) -> float:
    """FLOPs of the matrix products one step computes: per layer (in → out) 2·batch·in·out
    forward and 2·batch·in·out for dW; 2·batch·in·out for dX in every layer but the first,
    whose input gradient nobody needs (numbamlp, the numpy peer, PyTorch and JAX all skip
    it).  So 6·batch·Σ in·out − 2·batch·in₀·out₀.  The elementwise work (bias, activation,
    softmax, the update) is left out: a few FLOPs per element against the GEMMs' 2·in."""
    pairs = [a * b for a, b in zip(layers[:-1], layers[1:])]
    return 6.0 * batch * sum(pairs) - 2.0 * batch * pairs[0]


def initial_params(layers, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [((rng.normal(size=(o, i)) * np.sqrt(2.0 / i)).astype(dtype), np.zeros(o, dtype))
            for i, o in zip(layers[:-1], layers[1:])]


# ---------------------------------------------------------------- implementations
class NumbamlpStep:
    name = "numbamlp"

    def __init__(self, params, layers, batch, dtype, activation, optimizer, threads):
        from numbamlp import MLP
        from numbamlp.trainer import Trainer

        self.trainer = Trainer({"dtype": dtype, "batch_size": batch, "threads": threads,
                                "model": {"layers": layers, "activation": activation},
                                "optimizer": {"name": optimizer, "lr": LR, "momentum": 0.0,
                                              "weight_decay": 0.0}})
        self.trainer.set_model(MLP.from_params(params, activation=activation, dtype=dtype))

    def __call__(self, X, y) -> float:
        return self.trainer.step(X, y)

    def weights(self):
        return [W.copy() for W, _ in self.trainer.model.params]


def numpy_sgd_step(params, lr, X, y) -> float:
    """One plain-SGD step of a ReLU MLP in straightforward batched numpy, params
    [(W (out, in), b (out,)), ...] updated in place; returns the mean loss.  The numpy peer
    here and bench/many.py's numpy loop over members."""
    inputs, pre, h = [X], [], X
    for W, b in params[:-1]:
        a = h @ W.T + b
        pre.append(a)
        h = np.maximum(a, 0)
        inputs.append(h)
    W, b = params[-1]
    s = h @ W.T + b
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - s[rows, y]))
    d = e / total
    d[rows, y] -= 1
    d /= len(y)
    for layer in range(len(params) - 1, -1, -1):
        W, b = params[layer]
        dW, db = d.T @ inputs[layer], d.sum(axis=0)
        if layer > 0:
            d = (d @ W) * (pre[layer - 1] > 0)
        W -= lr * dW
        b -= lr * db
    return loss


class NumpyStep:
    """A straightforward batched numpy implementation (ReLU, SGD only)."""

    name = "numpy"

    def __init__(self, params, layers, batch, dtype, activation, optimizer, threads):
        if activation != "relu" or optimizer != "sgd":
            raise NotImplementedError("the numpy peer implements relu + sgd only")
        self.params = [(W.copy(), b.copy()) for W, b in params]

    def __call__(self, X, y) -> float:
        return numpy_sgd_step(self.params, LR, X, y)

    def weights(self):
        return [W.copy() for W, _ in self.params]


class TorchStep:
    name = "pytorch"

    def __init__(self, params, layers, batch, dtype, activation, optimizer, threads):
        import torch

        if optimizer != "sgd":
            raise NotImplementedError("the torch peer is timed with sgd")
        torch.set_num_threads(threads)
        self.torch = torch
        acts = {"relu": torch.nn.ReLU, "leaky_relu": lambda: torch.nn.LeakyReLU(0.1), "elu": torch.nn.ELU,
                "sigmoid": torch.nn.Sigmoid, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}
        modules = []
        for i, (W, b) in enumerate(params):
            linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=getattr(torch, dtype))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
            if i < len(params) - 1:
                modules.append(acts[activation]())
        self.model = torch.nn.Sequential(*modules)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.loss_fn = torch.nn.functional.cross_entropy
        self._cache = {}

    def _tensors(self, X, y):
        key = (id(X), id(y))
        if key not in self._cache:
            self._cache = {key: (self.torch.from_numpy(X), self.torch.from_numpy(np.asarray(y, dtype=np.int64)))}
        return self._cache[key]

    def __call__(self, X, y) -> float:
        Xt, yt = self._tensors(X, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(Xt), yt)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def weights(self):
        return [m.weight.detach().numpy().copy() for m in self.model if hasattr(m, "weight")]


class JaxStep:
    name = "jax"

    def __init__(self, params, layers, batch, dtype, activation, optimizer, threads):
        import jax

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)  # JAX computes in float32 otherwise
        import jax.numpy as jnp

        if optimizer != "sgd":
            raise NotImplementedError("the jax peer is timed with sgd")
        functions = {"relu": jax.nn.relu, "leaky_relu": lambda a: jax.nn.leaky_relu(a, 0.1), "elu": jax.nn.elu,
                     "sigmoid": jax.nn.sigmoid, "gelu": lambda a: jax.nn.gelu(a, approximate=False),
                     "silu": jax.nn.silu, "tanh": jnp.tanh}
        phi = functions[activation]

        def loss_fn(p, X, y):
            h = X
            for W, b in p[:-1]:
                h = phi(h @ W.T + b)
            W, b = p[-1]
            s = h @ W.T + b
            return jnp.mean(jax.nn.logsumexp(s, axis=1) - jnp.take_along_axis(s, y[:, None], axis=1)[:, 0])

        def update(p, X, y):
            loss, grads = jax.value_and_grad(loss_fn)(p, X, y)
            return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads), loss

        self.update = jax.jit(update, donate_argnums=0)
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
        self._cache = {}
        self.jnp = jnp

    def __call__(self, X, y) -> float:
        key = (id(X), id(y))
        if key not in self._cache:
            self._cache = {key: (self.jnp.asarray(X), self.jnp.asarray(np.asarray(y, dtype=np.int32)))}
        Xj, yj = self._cache[key]
        self.params, loss = self.update(self.params, Xj, yj)
        return float(loss)

    def weights(self):
        return [np.asarray(W) for W, _ in self.params]


PEERS = [NumpyStep, TorchStep, JaxStep]


# ---------------------------------------------------------------- measurement
SETTLE_SECONDS = 0.2


def seconds_per_call(fn, *args, min_seconds=0.15, min_calls=3) -> float:
    """Seconds per fn(*args), repeated for at least min_seconds.  First a pause and two
    untimed calls: the thread pool of whatever ran before (OpenBLAS, OpenMP, PyTorch's,
    XLA's) keeps its threads spinning for a while after its last call, and they would
    take the cores from this one (measured: numbamlp's affine_backward 16× slower right
    after numpy's multi-threaded matmul in bench/kernels.py)."""
    time.sleep(SETTLE_SECONDS)
    fn(*args)
    fn(*args)
    calls, start = 0, time.perf_counter()
    while True:
        fn(*args)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= min_calls:
            return elapsed / calls


def gemm_rate(dtype: str, n: int = 2048, rounds: int = 5) -> float:
    """This machine's GEMM rate (GFLOP/s): numpy matmul of two n×n matrices, median."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    C = np.empty((n, n), dtype)
    np.matmul(A, B, out=C)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.matmul(A, B, out=C)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def run_config(name, layers, batch, args, notes):
    dtype = args.dtype
    params = initial_params(layers, dtype)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(batch, layers[0])).astype(dtype)
    y = rng.integers(0, layers[-1], size=batch)
    impls, compile_s = [], {}
    for cls in [NumbamlpStep, *PEERS]:
        try:
            start = time.perf_counter()
            impl = cls(params, layers, batch, dtype, args.activation, args.optimizer, args.threads)
            first_loss = impl(X, y)  # compile / trace happens here
            compile_s[cls.name] = time.perf_counter() - start
            impl.first_loss = first_loss
            impls.append(impl)
        except ImportError as err:
            notes.add(f"{cls.name} skipped: not installed ({err.name}); pip install -e '.[bench]'")
        except NotImplementedError as err:
            notes.add(f"{cls.name} skipped: {err}")
    # validate: same loss on the first step, same weights after it
    reference = impls[0]
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    for impl in impls[1:]:
        if abs(impl.first_loss - reference.first_loss) > tolerance * max(1.0, abs(reference.first_loss)):
            raise SystemExit(f"{name}: {impl.name} first-step loss {impl.first_loss} != numbamlp {reference.first_loss}")
        for a, b in zip(impl.weights(), reference.weights()):
            error = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
            if error > 10 * tolerance:
                raise SystemExit(f"{name}: {impl.name} weights after one step differ from numbamlp by {error:.1e}")
    for impl in impls:  # warm-up
        for _ in range(3):
            impl(X, y)
    samples = {impl.name: [] for impl in impls}
    for _ in range(args.rounds):
        for impl in impls:
            samples[impl.name].append(seconds_per_call(impl, X, y))
    median = {k: statistics.median(v) for k, v in samples.items()}
    peers = {k: v for k, v in median.items() if k != "numbamlp"}
    best_peer = min(peers, key=peers.get) if peers else None
    flops = step_flops(layers, batch)
    return {
        "config": name, "layers": layers, "batch": batch,
        "median_us": {k: v * 1e6 for k, v in median.items()},
        "first_call_s": compile_s,
        "gflops": {k: flops / v / 1e9 for k, v in median.items()},
        "best_peer": best_peer,
        "ratio": (median[best_peer] / median["numbamlp"]) if best_peer else None,
        # the yardstick at small: numbamlp.Trainer.step against batched numpy
        "vs_numpy": (median["numpy"] / median["numbamlp"]) if "numpy" in median else None,
        "target": TARGETS.get(name),
    }


def machine_info(threads) -> dict:
    import numba

    info = {"machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "threads": threads}
    for module in ("torch", "jax"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = "not installed"
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({f"{p['internal_api']} {p['version']} ({p.get('architecture')} kernels)"
                               for p in threadpool_info() if p["user_api"] == "blas"})
    except ImportError:
        pass
    return info


def main(argv=None):
    from numbamlp.kernels import ACTIVATION_NAMES, usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"some of {','.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--activation", default="relu", choices=ACTIVATION_NAMES)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "nesterov", "adam", "adamw"])
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = [name for name in args.configs.split(",") if name not in CONFIGS]
    problem = (f"--configs: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(CONFIGS)}" if unknown
               else f"--rounds must be at least 1, got {args.rounds}" if args.rounds < 1
               else f"--threads must be at least 1, got {args.threads}" if args.threads < 1 else None)
    if problem:  # (one line, exit 2, as numbamlp's own bad input)
        parser.exit(2, f"Error: {problem}\n")
    notes: set[str] = set()
    results = [run_config(name, *CONFIGS[name], args, notes) for name in args.configs.split(",")]
    roofline = gemm_rate(args.dtype)
    info = machine_info(args.threads)
    if args.json:
        print(json.dumps({"machine": info, "gemm_gflops": roofline, "results": results, "notes": sorted(notes)}))
        return
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    print(f"dtype={args.dtype} activation={args.activation} optimizer={args.optimizer} rounds={args.rounds} "
          f"(medians of interleaved rounds); {args.dtype} GEMM roofline {roofline:.1f} GFLOP/s (numpy matmul 2048³); "
          f"GFLOP/s count the GEMMs a step computes: 6·batch·Σ in·out − 2·batch·in₀·out₀ (no dX for the first layer)")
    names = ["numbamlp"] + [cls.name for cls in PEERS]
    print(f"{'config':<7} {'layers':<18} {'batch':>5} " + " ".join(f"{n + ' µs':>12}" for n in names)
          + f" {'ratio':>7} {'target':>6} {'÷ numpy':>7} {'numbamlp GFLOP/s':>17} {'% roofline':>10} {'compile s':>9}")
    for r in results:
        cells = " ".join(f"{r['median_us'][n]:>12.1f}" if n in r["median_us"] else f"{'—':>12}" for n in names)
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "—"
        vs_numpy = f"{r['vs_numpy']:.2f}×" if r["vs_numpy"] else "—"
        print(f"{r['config']:<7} {'-'.join(map(str, r['layers'])):<18} {r['batch']:>5} {cells} {ratio:>7} "
              f"{r['target'] or '':>6} {vs_numpy:>7} {r['gflops']['numbamlp']:>17.1f} {100 * r['gflops']['numbamlp'] / roofline:>9.0f}% "
              f"{r['first_call_s']['numbamlp']:>9.2f}")
    for note in sorted(notes):
        print("note:", note)


if __name__ == "__main__":
    sys.exit(main())
