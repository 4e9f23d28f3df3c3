"""Many models at once: M same-shaped MLPs, one SGD step each per call, against the peers.

numbamlp's stack step against M sequential Trainer.step calls and the peers, interleaved.

    python bench/many.py [--configs m32,m8,small,mnist,deep,large] [--rounds 7]
                         [--backend cpu|numpy] [--threads N] [--impls name,...]
                         [--against REV] [--json]
    python bench/many.py --layers small      (where one Trainer.step's time goes)

Symbols: M members, B batch rows, D features, C classes.  float32, ReLU, plain SGD
(momentum 0, weight decay 0); member m has its own seed (its initial weights) and learning
rate (0.01 to 0.05), and its own batch: X (M, B, D), y (M, B).

One call = one SGD step of every member: forward, mean softmax cross-entropy over the
member's batch, backward, the update in place; the M losses are returned.  The headline
number is member-steps per second = M ÷ seconds per call.

Implementations (each optional peer is skipped with a note when it is not installed):

    stack.step          numbamlp.StackTrainer(configs).step(X, y): the public call, with its
                        input checks and copies
    stack.step shared   the same with one batch X (B, D), y (B,) shared by every member
    plan.step           numbamlp.plan.StepPlan.step on prepared arrays (the step without
                        Python's checks)
    M x Trainer.step    one numbamlp.Trainer per member, stepped one after the other
    numpy loop          per member: 2-D matmuls forward, backward, SGD
    numpy batched       np.matmul over the member axis
    pytorch bmm         torch.baddbmm / bmm over the member axis, autograd, SGD by hand
    pytorch vmap        torch.func.vmap(grad_and_value(loss)) over the member axis
    jax                 jax.jit(jax.vmap(jax.value_and_grad(loss))) with the update inside

Configurations (the issue's): m32 = 32 members of 64-128-10 at batch 32; m8 = 8 members
of 784-256-10 at batch 128; and M = 1 at bench/train.py's four configurations (small,
mnist, deep, large), where Trainer.step, stack.step and plan.step are compared alone, to
show that one model on the stack's path is no slower than the single-model step.  Since
Trainer itself became the M = 1 case of the plan, that needs the code from before:
``--against REV`` also times Trainer.step of the library at git revision REV (extracted
with ``git archive`` into a temporary folder) and of the working tree, each in a process of
its own (two versions of a package cannot share one), the two alternating round by round
with the in-process implementations.

Method: every implementation starts from the same weights (numbamlp's, from the members'
seeds) and its first step is checked against numbamlp's numpy-backend stack (the losses,
and the update of member 0's and member M-1's weights) before anything is timed.  The
first call (compile, or loading Numba's cache; JAX's trace and compile) is reported
separately, then three warm-up calls, then rounds in which every implementation is timed
once in turn (a 0.2 s pause and two untimed calls first, so the previous implementation's
spinning threads are asleep; see bench/train.py's seconds_per_call), each call timed on
its own for at least 0.15 s and 5 calls.  The table shows, over the rounds, the median of
each round's median call ("µs/call", what the ratios use) and of each round's mean call
("mean µs").  They differ on a busy machine: a call on 2 threads now and then waits a
scheduler quantum (several ms) for a core that another process holds, which the mean
counts and the median leaves out.  All implementations run in one process, as in
bench/train.py; ``--impls`` runs a subset, to check that the others' thread pools do not
distort a number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import SETTLE_SECONDS, machine_info, numpy_sgd_step  # noqa: E402

DTYPE = "float32"
# name: (members M, layers, batch B)
CONFIGS = {
    "m32": (32, [64, 128, 10], 32),
    "m8": (8, [784, 256, 10], 128),
    "small": (1, [64, 128, 10], 32),
    "mnist": (1, [784, 512, 10], 128),
    "deep": (1, [784, 1024, 1024, 10], 256),
    "large": (1, [784, 2048, 2048, 10], 1024),
}
# the targets: (stack ÷ best peer, stack ÷ M × Trainer.step), in member-steps/s
TARGETS = {"m32": (2.0, 3.0), "m8": (1.2, None)}
NO_REGRESSION = 1.0  # M = 1: Trainer.step's time ÷ the stack path's (≥ 1: no slower)
TOLERANCE = 1e-4  # float32: relative error of the first-step losses
UPDATE_TOLERANCE = 1e-3  # float32: relative error of one step's weight update (W_after − W_before)


def learning_rates(M: int) -> np.ndarray:
    """(M,) float64: 0.01 for one member, else 0.01 to 0.05 evenly."""
    return np.full(1, 0.01) if M == 1 else np.linspace(0.01, 0.05, M)


def member_configs(M, layers, batch, backend, threads):
    """M TrainConfig dicts differing in seed and learning rate; plain SGD, no weight decay."""
    return [{"seed": m, "dtype": DTYPE, "batch_size": batch, "backend": backend, "threads": threads,
             "model": {"layers": layers, "activation": "relu"},
             "optimizer": {"name": "sgd", "lr": float(lr), "momentum": 0.0, "weight_decay": 0.0}}
            for m, lr in enumerate(learning_rates(M))]


# ---------------------------------------------------------------- numbamlp
class StackStep:
    """StackTrainer.step(X, y): X (M, B, D), y (M, B); shared: X[0] (B, D), y[0] (B,)."""

    def __init__(self, configs, shared=False):
        from numbamlp import StackTrainer

        self.stack = StackTrainer(configs)
        self.shared = shared
        self.name = "stack.step shared" if shared else "stack.step"

    def __call__(self, X, y):
        return self.stack.step(X[0], y[0]) if self.shared else self.stack.step(X, y)

    def member_weights(self, m):
        return [(W.copy(), b.copy()) for W, b in self.stack.trainers[m].model.params]


class PlanStep(StackStep):
    """StepPlan.step on arrays prepared once: X (M, B, D) C-contiguous float32, y (M, B) int64."""

    def __init__(self, configs, layers):
        super().__init__(configs)
        self.name = "plan.step"
        self.stack.build(layers[0], layers[-1])  # the plan, with each member's lr set
        self.plan = self.stack.plan
        self._cache = {}

    def __call__(self, X, y):
        key = (id(X), id(y))
        if key not in self._cache:
            self._cache = {key: (np.ascontiguousarray(X, DTYPE), np.ascontiguousarray(y, np.int64))}
        return self.plan.step(*self._cache[key])


class TrainerSteps:
    """One Trainer per member, Trainer.step(X[m], y[m]) for m = 0 .. M−1."""

    def __init__(self, configs):
        from numbamlp.trainer import Trainer

        self.trainers = [Trainer(c) for c in configs]
        self.name = f"{len(configs)} x Trainer.step" if len(configs) > 1 else "Trainer.step"

    def __call__(self, X, y):
        return [t.step(X[m], y[m]) for m, t in enumerate(self.trainers)]

    def member_weights(self, m):
        return [(W.copy(), b.copy()) for W, b in self.trainers[m].model.params]


# ---------------------------------------------------------------- peers
def stacked_layers(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """The members' weights layer by layer, [(W (M, out, in), b (M, out)), ...], from
    params[m] = [(W (out, in), b (out,)), ...] (new arrays)."""
    return [(np.stack([member[l][0] for member in params]), np.stack([member[l][1] for member in params]))
            for l in range(len(params[0]))]


class Peer:
    """A peer built from the members' initial weights: params[m] = [(W (out, in), b (out,)), ...]."""

    def member_weights(self, m):
        return [(np.asarray(W[m]).copy(), np.asarray(b[m]).copy()) for W, b in self.stacked()]


class NumpyLoop(Peer):
    name = "numpy loop"

    def __init__(self, params, lrs):
        self.params = [[(W.copy(), b.copy()) for W, b in member] for member in params]
        self.lrs = [np.float32(lr) for lr in lrs]

    def __call__(self, X, y):
        losses = np.empty(len(self.params))
        for m, (member, lr) in enumerate(zip(self.params, self.lrs)):
            losses[m] = numpy_sgd_step(member, lr, X[m], y[m])
        return losses

    def member_weights(self, m):
        return [(W.copy(), b.copy()) for W, b in self.params[m]]


class NumpyBatched(Peer):
    name = "numpy batched"

    def __init__(self, params, lrs):
        self.W, self.b = map(list, zip(*stacked_layers(params)))  # (M, out, in), (M, out) per layer
        self.lr = np.asarray(lrs, DTYPE)[:, None, None]  # (M, 1, 1)

    def stacked(self):
        return list(zip(self.W, self.b))

    def __call__(self, X, y):
        M, B = y.shape
        inputs, pre, h = [X], [], X
        for W, b in zip(self.W[:-1], self.b[:-1]):
            a = np.matmul(h, W.transpose(0, 2, 1)) + b[:, None, :]  # (M, B, out)
            pre.append(a)
            h = np.maximum(a, 0)
            inputs.append(h)
        s = np.matmul(h, self.W[-1].transpose(0, 2, 1)) + self.b[-1][:, None, :]  # (M, B, C)
        s = s - s.max(axis=2, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=2, keepdims=True)
        members, rows = np.arange(M)[:, None], np.arange(B)[None, :]
        losses = np.mean(np.log(total[:, :, 0]) - s[members, rows, y], axis=1)
        d = e / total
        d[members, rows, y] -= 1
        d /= B
        for layer in range(len(self.W) - 1, -1, -1):
            W, b = self.W[layer], self.b[layer]
            dW, db = np.matmul(d.transpose(0, 2, 1), inputs[layer]), d.sum(axis=1)  # (M, out, in), (M, out)
            if layer > 0:
                d = np.matmul(d, W) * (pre[layer - 1] > 0)
            W -= self.lr * dW
            b -= self.lr[:, :, 0] * db
        return losses


class TorchBmm(Peer):
    name = "pytorch bmm"

    def __init__(self, params, lrs, threads):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        layers = stacked_layers(params)
        self.W = [torch.from_numpy(W).requires_grad_() for W, _ in layers]
        self.b = [torch.from_numpy(b).requires_grad_() for _, b in layers]
        self.lr = torch.from_numpy(np.asarray(lrs, DTYPE))[:, None, None]
        self._cache = {}

    def stacked(self):
        return [(W.detach().numpy(), b.detach().numpy()) for W, b in zip(self.W, self.b)]

    def _tensors(self, X, y):
        key = (id(X), id(y))
        if key not in self._cache:
            self._cache = {key: (self.torch.from_numpy(X), self.torch.from_numpy(np.asarray(y, np.int64)))}
        return self._cache[key]

    def __call__(self, X, y):
        torch = self.torch
        Xt, yt = self._tensors(X, y)
        M, B = yt.shape
        h = Xt
        for W, b in zip(self.W[:-1], self.b[:-1]):
            h = torch.relu(torch.baddbmm(b[:, None, :], h, W.transpose(1, 2)))
        s = torch.baddbmm(self.b[-1][:, None, :], h, self.W[-1].transpose(1, 2))  # (M, B, C)
        losses = torch.nn.functional.cross_entropy(s.reshape(M * B, -1), yt.reshape(-1),
                                                   reduction="none").view(M, B).mean(dim=1)
        losses.sum().backward()  # the members are independent: ∂(Σ loss_m)/∂θ_m = ∂loss_m/∂θ_m
        with torch.no_grad():
            for W, b in zip(self.W, self.b):
                W.addcmul_(W.grad, self.lr, value=-1.0)
                b.addcmul_(b.grad, self.lr[:, :, 0], value=-1.0)
                W.grad = b.grad = None
        return losses.detach().numpy()


class TorchVmap(Peer):
    name = "pytorch vmap"

    def __init__(self, params, lrs, threads):
        import torch
        from torch.func import grad_and_value, vmap

        torch.set_num_threads(threads)
        self.torch = torch
        self.params = tuple((torch.from_numpy(W), torch.from_numpy(b)) for W, b in stacked_layers(params))
        self.lr = torch.from_numpy(np.asarray(lrs, DTYPE))

        def loss(p, X, y):  # one member: X (B, D), y (B,)
            h = X
            for W, b in p[:-1]:
                h = torch.relu(torch.addmm(b, h, W.T))
            W, b = p[-1]
            return torch.nn.functional.cross_entropy(torch.addmm(b, h, W.T), y)

        self.grads = vmap(grad_and_value(loss))
        self._cache = {}

    def stacked(self):
        return [(W.numpy(), b.numpy()) for W, b in self.params]

    _tensors = TorchBmm._tensors

    def __call__(self, X, y):
        Xt, yt = self._tensors(X, y)
        grads, losses = self.grads(self.params, Xt, yt)
        with self.torch.no_grad():
            for (W, b), (dW, db) in zip(self.params, grads):
                W.addcmul_(dW, self.lr[:, None, None], value=-1.0)
                b.addcmul_(db, self.lr[:, None], value=-1.0)
        return losses.numpy()


class JaxVmap(Peer):
    name = "jax"

    def __init__(self, params, lrs, threads):
        import jax
        import jax.numpy as jnp

        def loss(p, X, y):  # one member: X (B, D), y (B,)
            h = X
            for W, b in p[:-1]:
                h = jax.nn.relu(h @ W.T + b)
            W, b = p[-1]
            s = h @ W.T + b
            return jnp.mean(jax.nn.logsumexp(s, axis=1) - jnp.take_along_axis(s, y[:, None], axis=1)[:, 0])

        def update(p, X, y, lr):  # p: [(W (M, out, in), b (M, out)), ...], lr (M,)
            losses, grads = jax.vmap(jax.value_and_grad(loss))(p, X, y)
            new = [(W - lr[:, None, None] * dW, b - lr[:, None] * db) for (W, b), (dW, db) in zip(p, grads)]
            return new, losses

        self.jnp = jnp
        self.update = jax.jit(update, donate_argnums=0)
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in stacked_layers(params)]
        self.lr = jnp.asarray(np.asarray(lrs, DTYPE))
        self._cache = {}

    def stacked(self):
        return self.params

    def __call__(self, X, y):
        key = (id(X), id(y))
        if key not in self._cache:
            self._cache = {key: (self.jnp.asarray(X), self.jnp.asarray(np.asarray(y, np.int32)))}
        self.params, losses = self.update(self.params, *self._cache[key], self.lr)
        return np.asarray(losses)


# ---------------------------------------------------------------- measurement
def call_times(fn, *args, min_seconds=0.15, min_calls=5) -> tuple[float, float]:
    """(median, mean) seconds of single calls fn(*args), repeated for at least min_seconds
    and min_calls, after a pause and two untimed calls (see bench/train.py's
    seconds_per_call: the previous implementation's threads must be asleep).  Both, because
    on a busy shared machine a multi-threaded call now and then waits a scheduler quantum
    (several ms) for a core another process holds: the median is the cost of a call, the
    mean the throughput on the machine as it was (stalls included)."""
    time.sleep(SETTLE_SECONDS)
    fn(*args)
    fn(*args)
    times, start = [], time.perf_counter()
    while True:
        before = time.perf_counter()
        fn(*args)
        after = time.perf_counter()
        times.append(after - before)
        if after - start >= min_seconds and len(times) >= min_calls:
            return statistics.median(times), statistics.fmean(times)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def update_error(after, before, reference_after) -> float:
    """Worst relative error of one step's update W_after − W_before over a member's arrays."""
    return max(relative_error(np.asarray(a, np.float64) - w0, np.asarray(r, np.float64) - w0)
               for a, w0, r in zip(after, before, reference_after))


def flat(member):  # [(W, b), ...] → [W1, b1, W2, b2, ...]
    return [np.asarray(x, np.float64) for pair in member for x in pair]


def build(name, M, layers, batch, args, notes):
    """The implementations of one configuration (the ones that could be made)."""
    configs = member_configs(M, layers, batch, args.backend, args.threads if args.backend == "cpu" else None)
    from numbamlp import StackTrainer

    initial = StackTrainer(member_configs(M, layers, batch, "numpy", None))
    initial.build(layers[0], layers[-1])
    params = [[(W.copy(), b.copy()) for W, b in t.model.params] for t in initial.trainers]
    lrs = learning_rates(M)
    makers = [("stack.step", lambda: StackStep(configs))]
    if M > 1:
        makers.append(("stack.step shared", lambda: StackStep(configs, shared=True)))
    makers += [("plan.step", lambda: PlanStep(configs, layers)),
               ("Trainer.step", lambda: TrainerSteps(configs))]
    if M > 1:
        makers += [("numpy loop", lambda: NumpyLoop(params, lrs)),
                   ("numpy batched", lambda: NumpyBatched(params, lrs)),
                   ("pytorch bmm", lambda: TorchBmm(params, lrs, args.threads)),
                   ("pytorch vmap", lambda: TorchVmap(params, lrs, args.threads)),
                   ("jax", lambda: JaxVmap(params, lrs, args.threads))]
    impls = []
    for key, make in makers:
        if args.impls and key not in args.impls:
            continue
        try:
            impls.append(make())
        except ImportError as err:
            notes.add(f"{key} skipped: not installed ({err.name}); pip install -e '.[bench]'")
    return impls, params


def reference_first_step(M, layers, batch, X, y, shared):
    """numbamlp's numpy-backend stack: the first step's losses and every member's weights after it."""
    from numbamlp import StackTrainer

    stack = StackTrainer(member_configs(M, layers, batch, "numpy", None))
    losses = stack.step(X[0], y[0]) if shared else stack.step(X, y)
    return losses, [flat(t.model.params) for t in stack.trainers]


def run_config(name, args, notes):
    M, layers, batch = CONFIGS[name]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(M, batch, layers[0])).astype(DTYPE)  # (M, B, D): one batch per member
    y = rng.integers(0, layers[-1], size=(M, batch))  # (M, B)
    impls, initial = build(name, M, layers, batch, args, notes)
    reference = {shared: reference_first_step(M, layers, batch, X, y, shared) for shared in (False, True)}
    checks, first_call_s = {}, {}
    for impl in impls:
        start = time.perf_counter()
        losses = np.asarray(impl(X, y), np.float64).copy()  # compile / trace / cache load happens here
        first_call_s[impl.name] = time.perf_counter() - start
        ref_losses, ref_weights = reference[getattr(impl, "shared", False)]
        loss_error = relative_error(losses, ref_losses)
        weight_errors = [update_error(flat(impl.member_weights(m)), flat(initial[m]), ref_weights[m])
                         for m in sorted({0, M - 1})]
        ok = loss_error <= TOLERANCE and max(weight_errors) <= UPDATE_TOLERANCE
        checks[impl.name] = {"loss_error": loss_error, "update_errors": weight_errors, "ok": ok}
        if not ok:
            raise SystemExit(f"{name}: {impl.name} disagrees with numbamlp's numpy-backend stack on the first "
                             f"step: losses {loss_error:.1e} (tolerance {TOLERANCE:g}), updates of members "
                             f"{sorted({0, M - 1})} {', '.join(f'{e:.1e}' for e in weight_errors)} "
                             f"(tolerance {UPDATE_TOLERANCE:g})")
    children = []
    if args.against and M == 1:
        children = [OtherProcess(tree_at(args.against), f"Trainer.step @{args.against}", name, args.threads),
                    OtherProcess(None, "Trainer.step @tree", name, args.threads)]
        for child in children:
            loss, weights, first_call_s[child.name] = child.first_step()
            child.first_step()  # once more: the first child may have compiled into an empty cache
            ref_losses, ref_weights = reference[False]
            errors = [update_error(weights, flat(initial[0]), ref_weights[0])]
            loss_error = relative_error([loss], ref_losses)
            ok = loss_error <= TOLERANCE and errors[0] <= UPDATE_TOLERANCE
            checks[child.name] = {"loss_error": loss_error, "update_errors": errors, "ok": ok, "numbamlp": child.where}
            if not ok:
                raise SystemExit(f"{name}: {child.name} disagrees with numbamlp's numpy-backend stack on the first "
                                 f"step: loss {loss_error:.1e}, update {errors[0]:.1e}")
    for impl in impls:  # warm-up
        for _ in range(3):
            impl(X, y)
    samples = {impl.name: [] for impl in [*impls, *children]}  # [(median, mean) of each round]
    for _ in range(args.rounds):
        for impl in impls:
            samples[impl.name].append(call_times(impl, X, y))
        for child in children:
            samples[child.name].append(child.seconds())
    # medians over the rounds of each round's median call, and of each round's mean
    median = {k: statistics.median(s[0] for s in v) for k, v in samples.items()}
    mean = {k: statistics.median(s[1] for s in v) for k, v in samples.items()}
    peers = [impl.name for impl in impls if isinstance(impl, Peer)]
    best_peer = min(peers, key=median.get) if peers else None
    best_peer_by_mean = min(peers, key=mean.get) if peers else None
    trainer_name = next((impl.name for impl in impls if isinstance(impl, TrainerSteps)), None)
    ratios = {}  # name: (by median calls, by mean calls)
    for ours in ("stack.step", "plan.step"):
        if ours not in median:
            continue
        if best_peer:
            ratios[f"{ours} / best peer"] = (median[best_peer] / median[ours], mean[best_peer_by_mean] / mean[ours])
        if trainer_name:
            ratios[f"{ours} / {trainer_name}"] = (median[trainer_name] / median[ours], mean[trainer_name] / mean[ours])
    if children:
        old, new = (child.name for child in children)
        ratios[f"{new} / {old} (own processes)"] = (median[old] / median[new], mean[old] / mean[new])
    return {
        "config": name, "members": M, "layers": layers, "batch": batch,
        "median_us": {k: v * 1e6 for k, v in median.items()},
        "mean_us": {k: v * 1e6 for k, v in mean.items()},
        "member_steps_per_s": {k: M / v for k, v in median.items()},
        "samples_us": {k: [[x * 1e6 for x in s] for s in v] for k, v in samples.items()},
        "first_call_s": first_call_s, "checks": checks, "best_peer": best_peer,
        "best_peer_by_mean": best_peer_by_mean, "ratios": ratios,
    }


def limit_threads(threads: int, notes: set) -> None:
    """Every implementation on ``threads`` threads.  Numba's and PyTorch's are set where they
    are made; here numpy's own BLAS (not scipy's, which the cpu backend keeps on one thread)
    and, at 1, XLA's (before JAX is imported)."""
    if threads >= os.cpu_count():
        return
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if "numpy" in lib.filepath:
            lib.set_num_threads(threads)
    if threads == 1 and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    elif threads > 1:
        notes.add(f"jax runs on XLA's own thread count (no setting for {threads} threads)")


def tree_at(revision: str) -> Path:
    """The library at ``revision`` in a folder of its own, importable as ``numbamlp`` from
    there (kernels/ and cli/ linked in, as pyproject's package-dir mapping installs them)."""
    import tempfile

    root = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "rev-parse", "--short", revision], cwd=root, capture_output=True, text=True,
                         check=True).stdout.strip()
    folder = Path(tempfile.gettempdir()) / f"numbamlp-bench-{sha}"
    if not (folder / "numbamlp").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        for name in ("kernels", "cli"):
            link = folder / "numbamlp" / name
            if not link.exists():
                link.symlink_to(Path("..") / name)
    return folder


def child_trainer_step(name, threads, out) -> None:
    """(In a process of its own.)  Trainer.step of whichever numbamlp this process imports,
    at the M = 1 config ``name``: the first step's loss and weights into ``out`` (.npz), then
    the steady-state seconds per call on stdout."""
    import numbamlp
    from numbamlp.trainer import Trainer

    M, layers, batch = CONFIGS[name]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(M, batch, layers[0])).astype(DTYPE)
    y = rng.integers(0, layers[-1], size=(M, batch))
    trainer = Trainer(member_configs(1, layers, batch, "cpu", threads)[0])
    start = time.perf_counter()
    loss = trainer.step(X[0], y[0])
    first = time.perf_counter() - start
    np.savez(out, loss=loss, **{f"a{i}": a for i, a in enumerate(flat(trainer.model.params))})
    for _ in range(3):
        trainer.step(X[0], y[0])
    print(json.dumps({"seconds": call_times(trainer.step, X[0], y[0]), "first_call_s": first,
                      "numbamlp": str(Path(numbamlp.__file__).parent.parent)}))


class OtherProcess:
    """Trainer.step timed in a child process of the library in ``tree`` (None: this working
    tree), one child per call of ``seconds``."""

    def __init__(self, tree, label, name, threads):
        self.tree, self.name, self.config, self.threads = tree, label, name, threads

    def _run(self, out):
        env = dict(os.environ)
        if self.tree is not None:
            env["PYTHONPATH"] = str(self.tree) + os.pathsep + env.get("PYTHONPATH", "")
        result = subprocess.run([sys.executable, __file__, "--child-trainer-step", self.config,
                                 "--threads", str(self.threads), "--child-out", out],
                                cwd=self.tree or Path(__file__).resolve().parent.parent, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{self.name}: the child process failed:\n{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def first_step(self):
        """The first step's loss and weights, and the first call's seconds (a child compiling
        an empty cache the first time: this child's time is the one reported)."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "first.npz")
            report = self._run(out)
            saved = np.load(out)
            self.where = report["numbamlp"]
            return float(saved["loss"]), [saved[f"a{i}"] for i in range(len(saved.files) - 1)], report["first_call_s"]

    def seconds(self):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            return self._run(os.path.join(folder, "first.npz"))["seconds"]


def layers_of_one_step(name, threads, repeats=7, calls=3000) -> None:
    """(--layers CONFIG.)  Where the time of one Trainer.step goes at an M = 1 config, in this
    process: each layer from the compiled step up to Trainer.step, and the input checks, timed
    as loops of ``calls`` single calls, the layers interleaved, ``repeats`` times; prints the
    median and best µs per call of each.  The layers' differences are the Python each adds."""
    from numbamlp.kernels import cpu_backend
    from numbamlp.arrays import as_class_indices, as_features
    from numbamlp.trainer import Trainer

    M, layers, batch = CONFIGS[name]
    if M != 1:
        raise SystemExit(f"--layers takes an M = 1 config, not {name}")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(batch, layers[0])).astype(DTYPE)
    y = rng.integers(0, layers[-1], size=batch)
    trainer = Trainer(member_configs(1, layers, batch, "cpu", threads)[0])
    for _ in range(3):
        trainer.step(X, y)
    plan, lr = trainer.plan, trainer.lr
    act_code, uses_output, alpha, adam, flag = plan.options
    X3, y2 = X[None], y[None]
    arguments = (plan.buffers, plan.layout, plan.settings, X3, y2, None, uses_output, alpha, flag)
    dispatcher = cpu_backend.stack_function(act_code, cpu_backend.UPDATE_SGD, False, False, False, False)
    entry = dispatcher.overloads[tuple(dispatcher.typeof_pyval(a) for a in arguments)].entry_point
    timed = {
        "compiled step, entry point": lambda: entry(*arguments),
        "compiled step, Numba's dispatcher": lambda: dispatcher(*arguments),
        "cpu_backend.stack_step": lambda: cpu_backend.stack_step(*arguments[:6], *plan.options, 0),
        "StepPlan.step": lambda: plan.step(X3, y2, None),
        "Trainer.train_step (checked arrays)": lambda: trainer.train_step(X, y, None, lr),
        "Trainer.step": lambda: trainer.step(X, y),
        "  as_features": lambda: as_features(X, layers[0], DTYPE),
        "  as_class_indices": lambda: as_class_indices(y, batch, layers[-1]),
        "  Trainer.lr": lambda: trainer.lr,
    }
    times = {key: [] for key in timed}
    for _ in range(repeats):
        for key, call in timed.items():
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times[key].append((time.perf_counter() - start) / calls * 1e6)
    print(f"config {name}: {'-'.join(map(str, layers))}, batch {batch}, {DTYPE}, relu, sgd; in-process loops of "
          f"{calls} calls, {repeats} interleaved repeats; load {'%.2f,%.2f,%.2f' % os.getloadavg()}")
    print(f"{'layer':<36} {'median µs':>10} {'best µs':>8}")
    for key, values in times.items():
        print(f"{key:<36} {statistics.median(values):>10.2f} {min(values):>8.2f}")


def source_state() -> str:
    """The commit measured, and the library files that differ from it (a shared checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "numbamlp", "kernels"], cwd=root,
                                 capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in changed if line.strip()]
    return head + (f"+uncommitted({','.join(changed)})" if changed else "")


def target_of(result, ratio_name):
    if result["members"] == 1:
        return f"≥ {NO_REGRESSION:g} (no regression)"
    peer_target, trainer_target = TARGETS.get(result["config"], (None, None))
    wanted = peer_target if "best peer" in ratio_name else trainer_target
    return f"≥ {wanted:g}" if wanted else "—"


def report(result, backend):
    r, M = result, result["members"]
    print(f"\nconfig {r['config']}: M={M} x {'-'.join(map(str, r['layers']))}, batch {r['batch']}, relu, sgd, "
          f"{DTYPE}, numbamlp backend {backend}")
    print(f"{'implementation':<21} {'µs/call':>10} {'member-steps/s':>15} {'mean µs':>10} {'first call s':>12}   "
          f"first step vs numpy stack")
    for impl, us in r["median_us"].items():
        check = r["checks"][impl]
        errors = ", ".join(f"{e:.0e}" for e in check["update_errors"])
        print(f"{impl:<21} {us:>10.1f} {r['member_steps_per_s'][impl]:>15,.0f} {r['mean_us'][impl]:>10.1f} "
              f"{r['first_call_s'][impl]:>12.2f}   "
              f"losses {check['loss_error']:.0e}, updates {errors}: {'ok' if check['ok'] else 'MISMATCH'}"
              + (f" (numbamlp from {check['numbamlp']})" if "numbamlp" in check else ""))
    for ratio_name, (by_median, by_mean) in r["ratios"].items():
        peer = f" ({r['best_peer']})" if "best peer" in ratio_name else ""
        print(f"  {ratio_name}{peer}: {by_median:.2f}x   (by mean µs: {by_mean:.2f}x)   "
              f"target {target_of(r, ratio_name)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"some of {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", default="cpu", choices=["cpu", "numpy"],
                        help="numbamlp's backend for stack.step, plan.step and Trainer.step")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for every implementation: Numba's (cpu backend), PyTorch's, numpy's BLAS; "
                             "XLA's only at 1 (it has no other setting)")
    parser.add_argument("--impls", default="",
                        help="time only these (comma-separated): stack.step, stack.step shared, plan.step, "
                             "Trainer.step, numpy loop, numpy batched, pytorch bmm, pytorch vmap, jax")
    parser.add_argument("--against", default=None, metavar="REV",
                        help="M = 1 configs: also time Trainer.step of the library at git revision REV and of "
                             "the working tree, each in processes of its own (cpu backend)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--layers", default=None, metavar="CONFIG",
                        help="instead: where one Trainer.step's time goes at an M = 1 config, layer by layer, "
                             "in this process (cpu backend)")
    parser.add_argument("--child-trainer-step", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_trainer_step:
        return child_trainer_step(args.child_trainer_step, args.threads, args.child_out)
    if args.layers:
        return layers_of_one_step(args.layers, args.threads)
    args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; valid: {', '.join(CONFIGS)}")
    notes: set[str] = set()
    limit_threads(args.threads, notes)
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = "%.2f,%.2f,%.2f" % os.getloadavg()  # 1, 5, 15 minutes: how busy the shared machine was
    results = [run_config(name, args, notes) for name in names]
    info = machine_info(args.threads)
    import numba

    info["numba_threads"] = numba.get_num_threads()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["date"] = started
    info["load_before"] = load_before
    info["load_after"] = "%.2f,%.2f,%.2f" % os.getloadavg()
    info["source"] = source_state()
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = sorted({f"{p['filepath'].split('/site-packages/')[-1].split('/')[0]}:{p['num_threads']}"
                                       for p in threadpool_info() if p["user_api"] == "blas"})
    except ImportError:
        pass
    if "XLA_FLAGS" in os.environ:
        info["XLA_FLAGS"] = repr(os.environ["XLA_FLAGS"])
    if args.json:
        print(json.dumps({"machine": info, "backend": args.backend, "rounds": args.rounds, "results": results,
                          "notes": sorted(notes)}))
        return
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    print(f"dtype={DTYPE} activation=relu optimizer=sgd (momentum 0, weight decay 0) backend={args.backend} "
          f"rounds={args.rounds} (medians over interleaved rounds of each round's median call; 'mean µs': of each "
          f"round's mean call, stalls included; all implementations in this one process unless marked); "
          f"one call = one SGD step of each of the M members; ratios compare member-steps/s (> 1: numbamlp faster); "
          f"first step checked against numbamlp's numpy-backend stack (relative errors of the losses and of "
          f"members 0 and M-1's weight updates)")
    for result in results:
        report(result, args.backend)
    for note in sorted(notes):
        print("note:", note)


if __name__ == "__main__":
    sys.exit(main())
