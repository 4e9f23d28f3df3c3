"""StackTrainer and the step plan: each member of a stack trains as it would alone.

On the cpu backend the contract is bit for bit (any position, any stack size, any thread
count); the numpy backend batches np.matmul over the member axis and is held to float64
round-off.
"""

import tracemalloc

import numpy as np
import pytest
from naive import ONE_EPOCH, blowing_up
from naive import REPORTS_X as X
from naive import REPORTS_Y as y

from numbamlp import StackTrainer, Trainer
from numbamlp.trainer import TrainingDiverged, TrainingInterrupted

# The host backends; the cuda stack is tested under the simulator (tests/cuda/test_cuda_stack.py).
STACK_BACKENDS = ("cpu", "numpy")


def data(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, d)) + y[:, None] * 0.7
    return X, y


def alone(config, X, y, X_val=None, y_val=None):
    """Trainer(config).fit, and what it left when it diverged (its weights before the bad step)."""
    trainer = Trainer(config)
    try:
        trainer.fit(X, y, X_val, y_val)
        status = "stopped early" if trainer.stopped_early else "done"
    except TrainingDiverged:
        status = "diverged"
    return trainer, status


def assert_same(stack_params, alone_params, backend, what):
    if backend == "cpu":
        assert np.array_equal(stack_params, alone_params), f"{what}: max diff {np.abs(stack_params - alone_params).max()}"
    else:
        np.testing.assert_allclose(stack_params, alone_params, rtol=1e-12, atol=1e-12, err_msg=what)


def mixed_configs(backend, dtype="float64", optimizer="momentum", activation="relu"):
    """Seeds, learning rates, epochs, early stopping and one divergence, side by side."""
    base = {"backend": backend, "dtype": dtype, "batch_size": 16, "model": {"hidden": [7], "activation": activation},
            "data": {"val_fraction": 0.2}}
    rates = {"sgd": 0.05, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01, "adamw": 0.01}
    lr = rates[optimizer]
    return [
        {**base, "seed": 0, "epochs": 5, "optimizer": {"name": optimizer, "lr": lr}},
        {**base, "seed": 1, "epochs": 3, "optimizer": {"name": optimizer, "lr": 2 * lr}},
        {**base, "seed": 2, "epochs": 30, "optimizer": {"name": optimizer, "lr": lr}, "early_stopping": {"patience": 2}},
        {**base, "seed": 3, "epochs": 5, "optimizer": {"name": optimizer, "lr": 1e6}},  # diverges
        {**base, "seed": 4, "epochs": 4, "optimizer": {"name": optimizer, "lr": lr, "weight_decay": 0.0},
         "class_weight": "balanced"},
    ]


@pytest.mark.parametrize("backend", STACK_BACKENDS)
def test_every_member_trains_as_it_would_alone(backend):
    X, y = data()
    configs = mixed_configs(backend)
    stack = StackTrainer(configs)
    stack.fit(X, y)
    statuses = [r["status"] for r in stack.results]
    assert statuses[3] == "diverged" and "training diverged" in stack.results[3]["error"]
    for m, config in enumerate(configs):
        trainer, status = alone(config, X, y)
        assert statuses[m] == status
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, backend, f"member {m}")
        assert [h["loss"] for h in stack.histories[m]] == pytest.approx([h["loss"] for h in trainer.history], rel=1e-12)
        assert stack.results[m]["epochs_run"] == trainer.epoch
        assert stack.results[m]["best_epoch"] == trainer.best_epoch
    assert stack.results[2]["stopped_early"] and stack.results[2]["epochs_run"] < 30


@pytest.mark.parametrize("backend", STACK_BACKENDS)
def test_member_order_does_not_matter(backend):
    X, y = data(seed=1)
    configs = mixed_configs(backend)
    forward = StackTrainer(configs)
    forward.fit(X, y)
    order = [3, 0, 4, 2, 1]
    shuffled = StackTrainer([configs[m] for m in order])
    shuffled.fit(X, y)
    for position, m in enumerate(order):
        assert_same(shuffled.models[position].flat_params, forward.models[m].flat_params, backend, f"member {m}")


@pytest.mark.parametrize("backend", STACK_BACKENDS)
@pytest.mark.parametrize("members", [1, 3, 32])
def test_stacks_of_any_size(backend, members):
    X, y = data(n=64)
    configs = [{"backend": backend, "dtype": "float64", "epochs": 2, "batch_size": 10, "seed": s,
                "model": {"hidden": [5]}, "optimizer": {"name": "sgd", "lr": 0.01 * (1 + s % 4)}}
               for s in range(members)]
    stack = StackTrainer(configs)
    stack.fit(X, y)
    for m in (0, members // 2, members - 1):
        trainer, _ = alone(configs[m], X, y)
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, backend, f"member {m} of {members}")


def test_configs_that_cannot_share_a_step_are_refused_by_name():
    with pytest.raises(ValueError, match=r"model.activation differs \(members 0, 2: 'relu'; member 1: 'gelu'\)"):
        StackTrainer([{"model": {"activation": "relu"}}, {"model": {"activation": "gelu"}}, {}])
    with pytest.raises(ValueError, match=r"batch_size differs"):
        StackTrainer([{"batch_size": 16}, {"batch_size": 32}])
    with pytest.raises(ValueError, match=r"optimizer.name differs"):
        StackTrainer([{"optimizer": {"name": "adam"}}, {"optimizer": {"name": "sgd"}}])
    with pytest.raises(ValueError, match="at least one config"):
        StackTrainer([])
    # what may differ: seeds, learning rates, schedules, epochs, early stopping, class weights
    StackTrainer([{"seed": 1, "optimizer": {"lr": 0.1}, "schedule": {"name": "cosine"}, "epochs": 3},
                  {"seed": 2, "early_stopping": {"patience": 2}, "class_weight": "balanced"}])


def test_a_stack_on_the_reference_backend_trains_each_member_as_alone():
    """The reference path is a backend of the step plan: a stack runs it (once refused), each
    member the bits its Trainer computes alone, where it has the stack's shuffles."""
    X, y = data(n=40)
    configs = [{"backend": "reference", "dtype": "float64", "seed": s, "epochs": 2, "batch_size": 16,
                "model": {"hidden": [5]}, "optimizer": {"name": name, "lr": 0.05}}
               for s, name in ((0, "adam"), (1, "adam"))]
    stack = StackTrainer(configs)
    stack.fit(X, y)
    for config, model in zip(configs, stack.models):
        alone = Trainer(config)
        alone.fit(X, y)
        np.testing.assert_array_equal(model.flat_params, alone.model.flat_params)


@pytest.mark.parametrize("backend", STACK_BACKENDS)
def test_step_returns_one_loss_per_member(backend):
    X, y = data(n=16)
    configs = [{"backend": backend, "dtype": "float64", "seed": s, "model": {"hidden": [4]}} for s in range(3)]
    stack = StackTrainer(configs)
    losses = stack.step(X, y)  # one batch shared by all members
    assert losses.shape == (3,) and np.isfinite(losses).all()
    for m, config in enumerate(configs):
        trainer = Trainer(config)
        assert trainer.step(X, y) == pytest.approx(losses[m], rel=1e-12)
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, backend, f"member {m}")
    per_member = stack.step(np.stack([X, X[::-1], X]), np.stack([y, y[::-1], y]))
    assert per_member.shape == (3,)
    with pytest.raises(ValueError, match=r"X must be \(B, D\) or \(3, B, D\)"):
        stack.step(np.zeros((2, 16, 6)), np.zeros((2, 16), int))


@pytest.mark.parametrize("backend", STACK_BACKENDS)
def test_step_takes_any_batch_size_and_checks_what_it_is_given(backend):
    """Plain batches (float32, int64) and ones that need converting give the same bits; a
    batch bigger than batch_size moves the stack to a bigger plan, every member's state and
    active flag along, and each member still equals a Trainer stepping alone; bad values are
    refused with the Trainer's messages and step nobody."""
    X, y = data(n=40)
    X = X.astype(np.float32)
    configs = [{"backend": backend, "batch_size": 8, "seed": s, "model": {"hidden": [5]},
                "optimizer": {"name": "momentum", "lr": 0.05 * (s + 1)}} for s in range(3)]
    stack, trainers = StackTrainer(configs), [Trainer(config) for config in configs]
    batches = [(X[:8], y[:8]), (X[:8].astype(np.float64), y[:8].astype(np.int32)), (X, y), (X[8:16].tolist(), y[8:16])]
    for step, (Xb, yb) in enumerate(batches):
        if step == 2:
            stack.plan.settings.active[1] = False  # frozen, as fit freezes a member that stopped
        losses = stack.step(Xb, yb)
        for m, trainer in enumerate(trainers):
            if step >= 2 and m == 1:
                assert np.isnan(losses[m])
            else:
                assert_same(np.float64(losses[m]), np.float64(trainer.step(Xb, yb)), backend, f"step {step} member {m}")
            assert_same(stack.models[m].flat_params, trainer.model.flat_params, backend, f"step {step} member {m}")
    assert stack.plan.capacity == 40 and not stack.plan.settings.active[1]
    before = [model.flat_params.copy() for model in stack.models]
    bad_X = X[:8].copy()
    bad_X[3, 2] = np.nan
    for Xb, yb, message in [(bad_X, y[:8], "NaN or infinite"), (X[:8], np.full(8, 3), r"class indices must lie in \[0, 3\)"),
                            (X[:8, :5].copy(), y[:8], "5 features but the model expects 6")]:
        with pytest.raises(ValueError, match=message):
            stack.step(Xb, yb)
    for model, weights in zip(stack.models, before):
        assert np.array_equal(model.flat_params, weights)


@pytest.mark.parametrize("backend", STACK_BACKENDS)
def test_nothing_grows_with_the_step_count(backend):
    X, y = data(n=32)
    stack = StackTrainer([{"backend": backend, "seed": s, "model": {"hidden": [8]}} for s in range(4)])
    Xs, ys = np.stack([X] * 4), np.stack([y] * 4)
    for _ in range(20):  # warm up: compile, build the buffers
        stack.step(Xs, ys)
    tracemalloc.start()
    for _ in range(50):
        stack.step(Xs, ys)
    before = tracemalloc.take_snapshot()
    for _ in range(500):
        stack.step(Xs, ys)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, f"memory grew by {growth} bytes over 500 steps"


# ---------------------------------------------------------------- the cpu contract, family by family
# Each activation (with momentum) and each optimizer (with relu): every activation's kernels
# and every update path (plain SGD inside the GEMMs, SGD after them, Adam after them).
FAMILIES = [(activation, "momentum") for activation in
            ("relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu", "tanh")] + \
           [("relu", optimizer) for optimizer in ("sgd", "nesterov", "adam", "adamw")]


@pytest.mark.parametrize("activation,optimizer", FAMILIES)
def test_cpu_members_are_bit_identical_for_every_activation_and_optimizer(activation, optimizer):
    X, y = data(n=90, seed=2)
    # without the class-weighted member: loss weights compile every step again (the main
    # test above has them), and each family's steps compile once each in a cold CI run
    configs = mixed_configs("cpu", dtype="float32", optimizer=optimizer, activation=activation)[:4]
    stack = StackTrainer(configs)
    stack.fit(X, y)
    for m, config in enumerate(configs):
        trainer, status = alone(config, X, y)
        assert stack.results[m]["status"] == status
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, "cpu", f"{activation}/{optimizer} member {m}")


def test_plain_sgd_and_momentum_members_side_by_side():
    """Plain SGD updates inside the GEMMs, momentum after them: a stack holding both runs
    each member its own way, as it runs alone."""
    X, y = data(seed=3)
    configs = [{"seed": s, "epochs": 3, "batch_size": 16, "model": {"hidden": [9]},
                "optimizer": {"name": "sgd", "momentum": momentum}}
               for s, momentum in enumerate((0.0, 0.9, 0.0, 0.5))]
    stack = StackTrainer(configs)
    stack.fit(X, y)
    for m, config in enumerate(configs):
        trainer, _ = alone(config, X, y)
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, "cpu", f"member {m}")


def test_cpu_stack_bits_do_not_depend_on_the_thread_count():
    import numba

    X, y = data(seed=4)
    configs = mixed_configs("cpu", dtype="float32")
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # members in turn, every block in a plain loop
        one = StackTrainer(configs)
        one.fit(X, y)
    finally:
        numba.set_num_threads(threads)
    many = StackTrainer(configs)  # one member per thread (when there are several)
    many.fit(X, y)
    for m in range(len(configs)):
        assert_same(one.models[m].flat_params, many.models[m].flat_params, "cpu", f"member {m}")


@pytest.mark.parametrize("stop_after_calls", [1, 4, 9, 13])
def test_an_interrupted_stack_resumes_from_its_checkpoint_bit_for_bit(tmp_path, stop_after_calls):
    """request_stop after a chosen number of steps (mid-epoch, at an epoch's end, with a
    member already done), a checkpoint on disk, a new StackTrainer from it, and the members
    end as the uninterrupted stack's members do."""
    from numbamlp.trainer import TrainingInterrupted

    X, y = data(n=70, seed=5)
    configs = mixed_configs("cpu", dtype="float32")
    straight = StackTrainer(configs)
    straight.fit(X, y)
    stack = StackTrainer(configs)
    calls = [0]

    def build_and_count(n_features, n_classes, build=stack.build):
        build(n_features, n_classes)
        step = stack.plan.step

        def counted(*args, **kwargs):
            calls[0] += 1
            if calls[0] == stop_after_calls:
                stack.request_stop()
            return step(*args, **kwargs)
        stack.plan.step = counted

    stack.build = build_and_count
    with pytest.raises(TrainingInterrupted):
        stack.fit(X, y)
    stack.save_checkpoint(tmp_path / "stack")
    resumed = StackTrainer.from_checkpoint(tmp_path / "stack")
    resumed.fit(X, y, warm_start=True)
    for m in range(len(configs)):
        assert_same(resumed.models[m].flat_params, straight.models[m].flat_params, "cpu", f"member {m}")
        assert resumed.results[m]["status"] == straight.results[m]["status"]
        assert [h["loss"] for h in resumed.histories[m]] == [h["loss"] for h in straight.histories[m]]


def test_a_member_with_zero_epochs_trains_none():
    X, y = data(n=40)
    stack = StackTrainer([{"epochs": 0, "seed": 1}, {"epochs": 2, "seed": 2}])

    class Seen:
        calls = []

        def on_epoch_end(self, epoch, metrics):
            self.calls.append((metrics["member"], epoch, metrics["epoch"]))

    stack.fit(X, y, callbacks=[Seen()])
    assert Seen.calls == [(1, 1, 1), (1, 2, 2)]  # each member's epochs, named by member
    assert "member" not in stack.histories[1][0]  # the history holds the trainer's own metrics
    assert [r["epochs_run"] for r in stack.results] == [0, 2]
    assert np.array_equal(stack.models[0].flat_params, Trainer({"epochs": 0, "seed": 1}).build(6, 3).flat_params)


def test_a_cancelled_member_stops_after_the_step_and_the_others_go_on():
    """cancel_member from a step hook (as the service's cancel watcher calls it): the member
    stops at once, frozen, status "cancelled"; every other member ends as it would alone."""
    X, y = data()
    configs = mixed_configs("cpu")[:3]
    stack = StackTrainer(configs)
    steps = []

    def hook():
        steps.append(len(steps))
        if len(steps) == 9:  # in epoch 2 (96 training rows at batch 16: 6 steps an epoch)
            stack.cancel_member(1)

    stack.add_step_hook(hook)
    stack.fit(X, y)
    assert [r["status"] for r in stack.results] == ["done", "cancelled", "stopped early"]
    assert stack.results[1]["epochs_run"] == 1  # its second epoch never ended
    for m in (0, 2):
        trainer, _ = alone(configs[m], X, y)
        assert_same(stack.models[m].flat_params, trainer.model.flat_params, "cpu", f"member {m}")


@pytest.mark.parametrize("members", [1, 2])
def test_a_cancelled_member_of_a_stack_of_any_size_takes_no_step_after_it(members):
    """A stack of one (a service job alone in its stack) steps its member through the loop's
    M = 1 path: a cancel from a step hook stops it there too, after the step under way.
    (Found in review, 2026-12-07: that path once stepped on to the epoch's end.)"""
    X, y = data()
    configs = [{"seed": m, "epochs": 3, "batch_size": 16, "model": {"hidden": [8]}} for m in range(members)]
    stack = StackTrainer(configs)
    steps = []

    def hook():
        steps.append(len(steps))
        if len(steps) == 2:
            stack.cancel_member(0)

    stack.add_step_hook(hook)
    stack.fit(X, y)
    assert stack.results[0]["status"] == "cancelled"
    assert stack.trainers[0].optimizer.step_count == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_stacked_scores_are_each_members_scores_bit_for_bit(dtype, activation):
    """The stack scores its members' validation rows together (model.stacked_scores: one GEMM
    per layer for all); each member's slice must be the scores its trainer computes alone,
    across the SCORING_ROWS cut too, or a sweep's val_loss would differ from train's."""
    from numbamlp.model import SCORING_ROWS, stacked_scores

    rng = np.random.default_rng(5)
    X = rng.normal(size=(SCORING_ROWS + 37, 6)).astype(dtype)
    configs = [{"model": {"hidden": [16, 8], "activation": activation}, "dtype": dtype, "seed": s} for s in range(3)]
    stack = StackTrainer(configs)
    stack.build(6, 4)
    params = stack.plan.host.params
    params[...] = rng.normal(scale=0.5, size=params.shape)  # (weights a fit could have)
    S = stacked_scores(params, stack.trainers[0].model.layers, activation, X)
    for m, trainer in enumerate(stack.trainers):
        assert np.array_equal(S[m], trainer.scores(X)), f"member {m}"


def test_a_stack_scores_shared_validation_rows_as_each_trainer_would():
    X, y = data()
    X_val, y_val = data(40, seed=1)
    configs = [{"epochs": 3, "model": {"hidden": [8]}, "seed": s, "optimizer": {"lr": 0.05 * (s + 1)}}
               for s in range(3)]
    configs[1]["early_stopping"] = {"metric": "val_roc_auc"}  # (a member that ranks its rows every epoch)
    stack = StackTrainer(configs)
    stack.fit(X, y, X_val, y_val)
    for m, config in enumerate(configs):
        trainer, _ = alone(config, X, y, X_val, y_val)
        validation = [{k: v for k, v in h.items() if k.startswith("val_")} for h in stack.histories[m]]
        assert validation == [{k: v for k, v in h.items() if k.startswith("val_")} for h in trainer.history]
        assert {"val_loss", "val_accuracy", "val_balanced_accuracy"} < set(validation[0])  # (the bits it gets alone)
        # the ranking metrics only where early stopping watches one (RANKING_METRICS)
        assert ({"val_roc_auc", "val_average_precision"} <= set(validation[0])) == (m == 1)


def test_scores_cut_the_rows_alike_whatever_the_batch_size():
    """Trainer.scores went through its workspace's capacity, the batch size when that passed
    SCORING_ROWS, while stacked_scores and MLP.scores cut at SCORING_ROWS: all three now share
    model.scores_in_chunks."""
    from numbamlp.model import SCORING_ROWS, stacked_scores

    rng = np.random.default_rng(6)
    X = rng.normal(size=(3 * SCORING_ROWS + 5, 6)).astype(np.float32)
    stack = StackTrainer([{"model": {"hidden": [16]}, "batch_size": 2 * SCORING_ROWS, "seed": s} for s in range(2)])
    stack.build(6, 3)
    stack.plan.host.params[...] = rng.normal(scale=0.5, size=stack.plan.host.params.shape)
    S = stacked_scores(stack.plan.host.params, stack.trainers[0].model.layers, "relu", X)
    for m, trainer in enumerate(stack.trainers):
        assert np.array_equal(S[m], trainer.scores(X)) and np.array_equal(S[m], trainer.model.scores(X, "numpy"))


# ---------------------------------------------------------------- a stack's refusals, cancels, checkpoints, divergence
def test_a_warm_stack_refuses_other_features_by_name():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    stack = StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}])
    stack.fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features but the model expects 3"):
        stack.fit(X[:, :2], y, warm_start=True)


def test_stack_cancels_are_checked_and_belong_to_one_fit():
    """Reported 2026-11-30 by a new user (third look); fixed in b418d6f."""
    stack = StackTrainer([{**ONE_EPOCH, "seed": s} for s in range(3)])
    for bad in (3, -1, "1", 1.5, True):
        with pytest.raises(ValueError, match=r"member must be a member's index, 0..2"):
            stack.cancel_member(bad)
    stack.cancel_member(1)
    stack.fit(X, y)
    assert [r["status"] for r in stack.results] == ["done", "cancelled", "done"]
    stack.fit(X, y)  # from scratch: every member trains again
    assert [r["status"] for r in stack.results] == ["done", "done", "done"]


def test_a_stack_checkpoint_before_fit_is_refused_and_a_fitted_stack_pickles(tmp_path):
    """Reported 2026-11-30 by a new user (third look); fixed in b418d6f."""
    import pickle

    stack = StackTrainer([{**ONE_EPOCH, "seed": s} for s in range(2)])
    with pytest.raises(ValueError, match="nothing to checkpoint yet"):
        stack.save_checkpoint(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    stack.fit(X, y)
    copy = pickle.loads(pickle.dumps(stack))
    assert np.array_equal(copy.step(X[:8], y[:8]), stack.step(X[:8], y[:8]))
    assert all(np.array_equal(a.flat_params, b.flat_params) for a, b in zip(copy.models, stack.models))


def test_a_stack_member_whose_weights_blow_up_is_diverged_as_a_trainer_raises():
    """Reported 2026-11-30 by a new user (third look); fixed in d87f2fb."""
    from numbamlp.trainer import TrainingDiverged

    X_big = blowing_up()
    bad = {"task": "regression", "epochs": 2, "batch_size": 32, "dtype": "float64", "model": {"hidden": [8]},
           "optimizer": {"name": "sgd", "lr": 10.0}}
    good = {**bad, "optimizer": {"name": "sgd", "lr": 1e-4}}
    with pytest.raises(TrainingDiverged, match="scores that are not finite"):
        Trainer(bad).fit(X_big, X_big[:, 0])
    stack = StackTrainer([good, bad])
    stack.fit(X_big, X_big[:, 0])
    assert [r["status"] for r in stack.results] == ["done", "diverged"]


def test_a_stack_whose_new_data_is_refused_keeps_what_it_learned():
    """Reported 2026-11-30 by a new user (third look); fixed in 1b210a4."""
    stack = StackTrainer([{"epochs": 3, "batch_size": 8, "model": {"hidden": [6]}}])
    stack.fit(X, y)
    before = stack.trainers[0].model.flat_params.copy()
    with pytest.raises(ValueError, match="X_val has 2 features"):
        stack.fit(X, y, X_val=X[:, :2], y_val=y)
    assert stack.trainers[0].epoch == 3
    np.testing.assert_array_equal(stack.trainers[0].model.flat_params, before)
    stack.fit(X, y, warm_start=False)  # (and it still trains)
    assert stack.trainers[0].epoch == 3


# ---------------------------------------------------------------- a stack whose slots are refilled (issue 28)
# A search's trials of one stack key share a running stack: when one is pruned or ends, the
# next takes its slot at the next epoch boundary (StackTrainer.open_fit, StackFit).  Every
# member still trains exactly as Trainer(config).fit alone, for the epochs it trains, bit for
# bit: its weights, optimizer state and history.
def stopped_alone(config, epochs, X, y, X_val=None, y_val=None):
    """Trainer(config).fit stopped by request_stop at the end of epoch ``epochs``: what a
    member released as "pruned" then holds (its weights as they are; the learning rate of a
    schedule over all its config's epochs, which a fit of ``epochs`` epochs would not have)."""
    trainer = Trainer(config)

    class StopThen:
        def on_epoch_end(self, epoch, metrics):
            if epoch == epochs:
                trainer.request_stop("pruned")

    with pytest.raises(TrainingInterrupted):
        trainer.fit(X, y, X_val, y_val, callbacks=[StopThen()])
    return trainer


def assert_left_as_alone(left, trainer):
    """A released member (StackFit.release's dict) holds the bits ``trainer`` holds: weights,
    optimizer state and step count, history (but its seconds), epochs."""
    np.testing.assert_array_equal(left["model"].flat_params, trainer.model.flat_params)
    for name, state in trainer.optimizer.state.items():
        np.testing.assert_array_equal(left["trainer"].optimizer.state[name], state)
    assert left["trainer"].optimizer.step_count == trainer.optimizer.step_count
    assert left["epochs"] == left["result"]["epochs_run"] == trainer.epoch

    def without_seconds(history):
        return [{key: value for key, value in metrics.items() if key != "seconds"} for metrics in history]

    assert without_seconds(left["history"]) == without_seconds(trainer.history)


@pytest.mark.parametrize(("dtype", "optimizer"), [("float64", "adam"), ("float64", "momentum"), ("float32", "sgd")])
def test_members_seated_in_freed_slots_train_as_they_would_alone(dtype, optimizer):
    X, y = data(n=150)
    X_val, y_val = data(n=45, seed=1)  # (one object for all: scored together, newcomers included)
    lr = 0.01 if optimizer == "adam" else 0.05
    base = {"dtype": dtype, "batch_size": 16, "model": {"hidden": [7]}, "optimizer": {"name": optimizer, "lr": lr}}
    configs = {  # slot 0: pruned after 3 of its 10 epochs, then joiner; slot 1: stopping, then late; slot 2: steady
        "pruned": {**base, "seed": 0, "epochs": 10, "schedule": {"name": "cosine"}, "early_stopping": {"patience": 20}},
        "joiner": {**base, "seed": 3, "epochs": 5,
                   "optimizer": {"name": optimizer, "lr": 2 * lr, "weight_decay": 1e-3}},
        "stopping": {**base, "seed": 1, "epochs": 40, "early_stopping": {"patience": 2}},
        "late": {**base, "seed": 4, "epochs": 4, "early_stopping": {"patience": 1}},
        "steady": {**base, "seed": 2, "epochs": 9},
    }
    holding = ["pruned", "stopping", "steady"]  # each slot's member, seated or the last to leave it
    fit = StackTrainer([configs[name] for name in holding]).open_fit(X, y, X_val, y_val)
    left, seated_at, epoch = {}, {}, 0
    while fit.running():
        fit.run_epoch()
        epoch += 1
        if epoch == 3:
            left["pruned"] = fit.release(0, "pruned")
            fit.seat(0, configs["joiner"])
            holding[0] = "joiner"
        for slot in fit.ended():
            left[holding[slot]] = fit.release(slot)
            if holding[slot] == "stopping":
                fit.seat(slot, configs["late"])
                holding[slot], seated_at["late"] = "late", epoch
        assert fit.vacant() == [slot for slot, name in enumerate(holding) if name in left]
    assert fit.close() == [] and fit.vacant() == [0, 1, 2] and set(left) == set(configs)
    assert [r["status"] for r in fit.stack.results] == [left[name]["status"] for name in holding]
    assert left["stopping"]["status"] == "stopped early" and seated_at["late"] > 3
    assert left["pruned"]["status"] == left["pruned"]["result"]["status"] == "pruned"
    assert_left_as_alone(left["pruned"], stopped_alone(configs["pruned"], 3, X, y, X_val, y_val))
    for name in ("joiner", "stopping", "late", "steady"):
        trainer, status = alone(configs[name], X, y, X_val, y_val)
        assert left[name]["status"] == status, name
        assert_left_as_alone(left[name], trainer)


def test_a_refilled_stack_stopped_and_restored_from_its_checkpoint_goes_on_bit_for_bit(tmp_path):
    """The service's stacks take queued jobs into freed slots and are paused mid-epoch:
    open_fit(warm_start=True) on a restored checkpoint goes on with the seated newcomer, a
    member that had ended and left is ``ended`` again (its slot was vacant), and each trains
    as it would alone."""
    X, y = data(n=150)
    X_val, y_val = data(n=45, seed=1)
    base = {"batch_size": 16, "model": {"hidden": [7]}, "optimizer": {"name": "adam", "lr": 0.01}}
    short, long, joiner = ({**base, "seed": 0, "epochs": 2}, {**base, "seed": 1, "epochs": 7},
                           {**base, "seed": 2, "epochs": 5, "early_stopping": {"patience": 2}})
    stack = StackTrainer([short, long, {**short, "seed": 3}])
    fit = stack.open_fit(X, y, X_val, y_val)
    fit.run_epoch()
    fit.run_epoch()
    assert fit.ended() == [0, 2]
    fit.release(0)
    fit.release(2)  # (left vacant)
    fit.seat(0, joiner)
    fit.run_epoch()
    steps = []
    stack.add_step_hook(lambda: steps.append(1) if len(steps) < 4 else stack.request_stop("paused"))
    with pytest.raises(TrainingInterrupted):
        fit.run_epoch()  # (stopped mid-epoch)
    fit.close()
    stack.save_checkpoint(tmp_path / "stack")

    restored = StackTrainer.from_checkpoint(tmp_path / "stack")
    fit = restored.open_fit(X, y, X_val, y_val, warm_start=True)
    assert fit.running() == [0, 1] and fit.ended() == [2] and fit.vacant() == []
    assert fit.release(2)["status"] == "done"
    left = {}
    while fit.running():
        fit.run_epoch()
        for slot in fit.ended():
            left[slot] = fit.release(slot)
    fit.close()
    for slot, config in ((0, joiner), (1, long)):
        trainer, status = alone(config, X, y, X_val, y_val)
        assert left[slot]["status"] == status
        assert_left_as_alone(left[slot], trainer)


def test_a_released_member_keeps_its_weights_and_optimizer_state_while_its_slot_trains_on():
    X, y = data()
    base = {"batch_size": 16, "model": {"hidden": [7]}, "optimizer": {"name": "adam", "lr": 0.01}}
    fit = StackTrainer([{**base, "seed": 0, "epochs": 6}, {**base, "seed": 1, "epochs": 6}]).open_fit(X, y)
    fit.run_epoch()
    fit.run_epoch()
    left = fit.release(1, "pruned")
    model, optimizer = left["model"], left["trainer"].optimizer
    kept = model.flat_params.copy(), {name: state.copy() for name, state in optimizer.state.items()}
    fit.seat(1, {**base, "seed": 2, "epochs": 3})
    while fit.running():
        fit.run_epoch()
    fit.close()
    host = fit.stack.plan.host
    for array in (model.flat_params, *optimizer.state.values()):
        assert not any(np.shares_memory(array, rows) for rows in (host.params, host.grads, host.state_a, host.state_b))
    assert not np.array_equal(host.params[1], kept[0])  # (the newcomer trained in the slot's rows)
    np.testing.assert_array_equal(model.flat_params, kept[0])
    for name, state in optimizer.state.items():
        np.testing.assert_array_equal(state, kept[1][name])
    assert optimizer.step_count == 2 * 8  # (two epochs of 8 batches)
    assert_left_as_alone(left, stopped_alone({**base, "seed": 1, "epochs": 6}, 2, X, y))


def test_a_refilled_stack_refuses_what_does_not_fit_its_slots():
    X, y = data()
    base = {"batch_size": 16, "model": {"hidden": [7]}, "epochs": 3}
    fit = StackTrainer([{**base, "seed": 0}, {**base, "seed": 1}]).open_fit(X, y)
    with pytest.raises(ValueError, match="slot 0 holds a member: release it first"):
        fit.seat(0, base)
    with pytest.raises(ValueError, match="still training: give the status it leaves with"):
        fit.release(0)
    with pytest.raises(ValueError, match="a status other than 'training'"):
        fit.release(0, "training")
    fit.release(0, "pruned")
    with pytest.raises(ValueError, match="slot 0 is vacant"):
        fit.release(0, "pruned")
    with pytest.raises(ValueError, match=r"model.hidden differs \(member 0: \[8\]; member 1: \[7\]\)"):
        fit.seat(0, {**base, "model": {"hidden": [8]}})
    with pytest.raises(ValueError, match="batch_size differs"):
        fit.seat(0, {**base, "batch_size": 8})
    with pytest.raises(ValueError, match="early_stopping.metric"):  # (val_f1 is for two classes: refused by its data)
        fit.seat(0, {**base, "early_stopping": {"patience": 2, "metric": "val_f1"}})
    with pytest.raises(ValueError, match=r"slot must be a slot's index, 0..1, got 2"):
        fit.seat(2, base)
    assert fit.vacant() == [0] and fit.running() == [1]  # (what was refused changed nothing)
    fit.seat(0, {**base, "seed": 2})
    while fit.running():
        fit.run_epoch()
    with pytest.raises(ValueError, match=r"has ended already \(done\): release it with status None"):
        fit.release(0, "pruned")
    assert [left["status"] for left in fit.close()] == ["done", "done"]


@pytest.mark.parametrize("slots", [1, 3])
def test_slots_vacant_from_the_start_are_filled_as_trials_come(slots):
    """The search's way: a stack of copies of the first trial's config, every slot but the
    first released before any epoch, the others seated as trials come.  A stack of one
    (which steps as a Trainer's loop does) is refilled alike."""
    X, y = data()
    X_val, y_val = data(n=45, seed=1)
    base = {"batch_size": 16, "model": {"hidden": [7]}, "optimizer": {"name": "momentum", "lr": 0.05}}
    first = {**base, "seed": 0, "epochs": 3}
    waiting = [{**base, "seed": seed, "epochs": 1 + seed} for seed in (1, 2, 3)]
    fit = StackTrainer([first] * slots).open_fit(X, y, X_val, y_val)
    for slot in range(1, slots):
        assert fit.release(slot, "vacant")["epochs"] == 0
    left = []
    while fit.running():
        fit.run_epoch()
        for slot in fit.ended():
            left.append(fit.release(slot))
        for slot in fit.vacant():
            if waiting:
                fit.seat(slot, waiting.pop(0))
    assert fit.close() == [] and not waiting and len(left) == 4
    for member in left:
        trainer, status = alone(member["trainer"].config, X, y, X_val, y_val)
        assert member["status"] == status == "done"
        assert_left_as_alone(member, trainer)


def test_an_open_fit_holds_its_threads_until_it_closes():
    import numba

    before = numba.get_num_threads()
    fit = StackTrainer([{**ONE_EPOCH, "epochs": 2, "threads": 1}]).open_fit(X, y)
    fit.run_epoch()
    assert numba.get_num_threads() == 1  # (between epochs too, as fit holds them while it runs)
    fit.run_epoch()
    fit.close()
    assert numba.get_num_threads() == before


def test_a_closed_fit_refuses_more_epochs_and_seats():
    X, y = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
    config = {"epochs": 2, "model": {"hidden": [4]}, "batch_size": 8}
    fit = StackTrainer([config, config]).open_fit(X, y)
    fit.release(1, "vacant")
    fit.run_epoch()
    assert fit.close() and fit.close() == []
    for call in (fit.run_epoch, lambda: fit.seat(1, config), lambda: fit.release(0, "pruned")):
        with pytest.raises(ValueError, match="this fit has ended"):
            call()
