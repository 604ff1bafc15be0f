from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lrtool.build import build
from lrtool.config import validate
from lrtool.data import Batches
from lrtool.errors import ConfigError
from lrtool.finder import Snapshot, diverged, find_lr, smooth, sweep_rates

CPU = torch.device("cpu")


def tiny(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Batches(TensorDataset(x, y), batch_size=8, device=CPU, shuffle=True, seed=seed)


def model_and_opt(opt="sgd"):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2)
    )
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer


def test_sweep_rates_exact():
    assert sweep_rates(1e-4, 1.0, 5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert sweep_rates(0.1, 0.5, 5, "linear") == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(ConfigError, match="start_lr"):
        sweep_rates(1.0, 0.1, 5)


def test_smooth_is_bias_corrected_ema():
    # With bias correction the first value is the raw loss, not (1 - beta) * loss.
    assert smooth([2.0, 4.0], 0.5) == pytest.approx([2.0, (0.25 * 2 + 0.5 * 4) / 0.75])
    assert smooth([3.0] * 10, 0.98) == pytest.approx([3.0] * 10)


def test_records_the_exact_lr_sequence_and_completes():
    model, opt = model_and_opt()
    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        start_lr=1e-5,
        end_lr=1e-2,
        num_steps=10,
        diverge_factor=1e9,
        extend_decades=0,  # the planned sweep only (a flat one goes on past end_lr: below)
    )
    assert result.stop_reason == "completed" and result.steps == 10
    assert result.lr == pytest.approx(list(np.geomspace(1e-5, 1e-2, 10)))
    assert result.smoothed_loss == pytest.approx(smooth(result.loss, 0.98))


def test_linear_mode():
    model, opt = model_and_opt()
    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        start_lr=0.01,
        end_lr=0.1,
        num_steps=4,
        mode="linear",
    )
    assert result.lr == pytest.approx([0.01, 0.04, 0.07, 0.1])


def test_stops_early_when_the_loss_diverges():
    model, opt = model_and_opt()
    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        start_lr=1e-4,
        end_lr=1e4,
        num_steps=80,
        smoothing=0.5,
    )
    assert result.stop_reason in ("diverged", "nan")
    assert result.steps < 80
    if result.stop_reason == "diverged":
        best = min(result.smoothed_loss)
        assert result.smoothed_loss[-1] > 4 * best
        assert all(
            s <= 4 * min(result.smoothed_loss[: i + 1])
            for i, s in enumerate(result.smoothed_loss[:-1])
        )


def test_nan_loss_ends_the_sweep():
    model, opt = model_and_opt()
    calls = {"n": 0}

    def loss_fn(out, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] == 6 else loss

    result = find_lr(model, tiny(), opt, loss_fn, num_steps=20)
    assert result.stop_reason == "nan"
    assert result.steps == 5  # the NaN step itself is not recorded
    assert all(np.isfinite(result.loss))


def test_model_optimizer_and_rngs_restored_bit_exactly():
    model, opt = model_and_opt()
    data = tiny()
    # Warm the optimizer so it has momentum buffers worth restoring.
    for x, y in data:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = {i: s["momentum_buffer"].clone() for i, s in enumerate(opt.state.values())}
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    model.eval()
    result = find_lr(
        model, data, opt, nn.functional.cross_entropy, start_lr=1e-3, end_lr=10, num_steps=30
    )
    assert result.steps > 5
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for i, state in enumerate(opt.state.values()):
        assert torch.equal(state["momentum_buffer"], opt_before[i])
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1]) and random.getstate() == rng[2]
    assert not model.training  # the mode is restored too


def test_snapshot_on_disk_restores_and_cleans_up():
    model, opt = model_and_opt("adam")
    before = [p.clone() for p in model.parameters()]
    snap = Snapshot(model, opt, where="disk")
    assert snap.path is not None and snap.path.exists()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    snap.restore()
    snap.close()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert not snap.path.exists()


def test_find_then_train_in_one_process_is_unaffected():
    def train_once(run_find):
        model, opt = model_and_opt()
        data = tiny()
        if run_find:
            find_lr(model, data, opt, nn.functional.cross_entropy, num_steps=15)
        torch.manual_seed(1)
        for x, y in data:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(train_once(False), train_once(True), strict=True):
        assert torch.equal(a, b)


def test_short_dataset_is_cycled():
    data = tiny(n=16)  # 2 batches per epoch
    model, opt = model_and_opt()
    result = find_lr(
        model,
        data,
        opt,
        nn.functional.cross_entropy,
        start_lr=1e-5,
        end_lr=1e-3,
        num_steps=7,
        extend_decades=0,
    )
    assert result.steps == 7


def test_a_flat_sweep_goes_on_past_end_lr_at_the_same_pace():
    """Rates too low to move the loss: the sweep continues 3 decades beyond end_lr, a step
    per third of a decade as before, and says so; extend_decades=0 and a linear sweep stop."""
    model, opt = model_and_opt()
    kwargs = dict(start_lr=1e-9, end_lr=1e-8, num_steps=4, diverge_factor=1e9)
    result = find_lr(model, tiny(), opt, nn.functional.cross_entropy, **kwargs)
    assert result.lr == pytest.approx(list(np.geomspace(1e-9, 1e-5, 13)))
    assert result.stop_reason == "completed" and result.extended_to == pytest.approx(1e-5)
    assert "went on to 1e-05" in result.warning
    plain = find_lr(model, tiny(), opt, nn.functional.cross_entropy, **kwargs, extend_decades=0)
    assert plain.steps == 4 and plain.extended_to is None
    linear = find_lr(model, tiny(), opt, nn.functional.cross_entropy, **kwargs, mode="linear")
    assert linear.steps == 4 and linear.extended_to is None


def test_a_sweep_that_learned_does_not_go_on():
    model, opt = model_and_opt()
    result = find_lr(
        model, tiny(), opt, nn.functional.cross_entropy, start_lr=1e-4, end_lr=1.0, num_steps=30
    )
    assert result.extended_to is None and result.lr[-1] <= 1.0 + 1e-12


def test_group_ratios_kept_while_sweeping():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.01},
            {"params": model[2].parameters(), "lr": 0.1},
        ]
    )
    seen = []

    def loss_fn(out, y):
        seen.append([g["lr"] for g in opt.param_groups])
        return nn.functional.cross_entropy(out, y)

    find_lr(model, tiny(), opt, loss_fn, start_lr=1e-3, end_lr=1e-1, num_steps=3)
    assert seen == [
        pytest.approx([1e-4, 1e-3]),
        pytest.approx([1e-3, 1e-2]),
        pytest.approx([1e-2, 1e-1]),
    ]
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]


def test_grad_accum_uses_several_batches_per_step():
    batches_seen = []

    def loss_fn(out, y):
        batches_seen.append(len(y))
        return nn.functional.cross_entropy(out, y)

    model, opt = model_and_opt()
    result = find_lr(model, tiny(), opt, loss_fn, num_steps=5, grad_accum=3)
    assert result.steps == 5 and len(batches_seen) == 15


def test_val_loss_mode_records_the_fixed_validation_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # no BatchNorm stats
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    val = tiny(n=32, seed=9)
    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        val_data=val,
        val_loss=True,
        val_batches=2,
        start_lr=1e-6,
        end_lr=1e-5,
        num_steps=3,
    )
    # At tiny rates the model barely moves: the recorded loss is the eval-mode loss of the
    # first two validation batches.
    model.eval()
    with torch.no_grad():
        batches = list(val)[:2]
        expected = sum(nn.functional.cross_entropy(model(x), y) for x, y in batches) / 2
    assert result.loss[0] == pytest.approx(float(expected), rel=1e-3)
    with pytest.raises(ConfigError, match="val_loss"):
        find_lr(model, tiny(), opt, nn.functional.cross_entropy, val_loss=True)


def test_keyboard_interrupt_returns_partial_history_and_restores():
    model, opt = model_and_opt()
    before = [p.clone() for p in model.parameters()]

    def on_step(step, lr, loss):
        if step == 4:
            raise KeyboardInterrupt

    result = find_lr(model, tiny(), opt, nn.functional.cross_entropy, num_steps=20, on_step=on_step)
    assert result.stop_reason == "interrupted"
    assert result.steps == 4
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))


def test_precision_bf16_runs_on_cpu():
    model, opt = model_and_opt()
    result = find_lr(model, tiny(), opt, nn.functional.cross_entropy, num_steps=5, precision="bf16")
    assert result.steps == 5 and all(np.isfinite(result.loss))


def test_digits_suggestion_trains_to_95_percent():
    """The whole point: train at the default suggestion and get a good model."""
    from lrtool.run import train_built

    exp = validate(
        {
            "device": "cpu",
            "optimizer": {"name": "sgd", "args": {"momentum": 0.9, "weight_decay": 5e-4}},
            "find": {"start_lr": 1e-5},
        }
    )
    built = build(exp)
    result = find_lr(
        built.model, built.train_data, built.optimizer, built.loss_fn, start_lr=1e-5, num_steps=100
    )
    assert result.stop_reason == "diverged"
    assert min(result.smoothed_loss) < 0.8 * result.loss[0]  # it really learned
    assert 1e-4 < result.suggested_lr < result.lr[-1] / 3  # well before the blow-up
    trained = train_built(built, result.suggested_lr)
    assert trained.final["accuracy"] >= 0.95


def test_public_api_works_with_a_plain_dataloader():
    """Notebook use: no YAML, a torch DataLoader, the top-level functions."""
    from torch.utils.data import DataLoader

    from lrtool import find_lr as api_find_lr
    from lrtool import fit_one_cycle

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] - x[:, 2] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    found = api_find_lr(
        model, loader, opt, nn.functional.cross_entropy, start_lr=1e-4, end_lr=10, num_steps=60
    )
    assert found.suggested_lr is not None
    trained = fit_one_cycle(
        model,
        loader,
        loader,
        opt,
        nn.functional.cross_entropy,
        found.suggested_lr,
        epochs=3,
        metrics={"accuracy": lambda o, t: (o.argmax(1) == t).float().sum()},
    )
    assert trained.final["accuracy"] > 0.9


def test_a_sweep_that_ends_too_early_says_so():
    exp = validate({"device": "cpu", "optimizer": {"name": "sgd", "args": {"momentum": 0.9}}})
    built = build(exp)
    # Digits learns steadily up to 3e-2: the curve has not turned up when the sweep ends.
    result = find_lr(
        built.model,
        built.train_data,
        built.optimizer,
        built.loss_fn,
        start_lr=1e-4,
        end_lr=3e-2,
        num_steps=60,
    )
    assert result.stop_reason == "completed"
    assert result.suggested_lr is not None
    assert "still falling at end_lr" in result.warning


def test_the_extension_of_a_sweep_over_a_sliver_of_a_decade_is_capped():
    model, opt = model_and_opt()
    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        start_lr=1e-6,
        end_lr=1.00001e-6,
        num_steps=20,
        diverge_factor=1e9,
    )
    assert result.steps == 20 + 1000  # 3 decades would be millions of steps at this pace


def test_the_extension_goes_its_decades_when_the_cap_allows():
    """One decade in 20 rates (19 steps of 10**(1/19)), 3 decades more: 57 steps, under the
    cap (1000)."""
    model, opt = model_and_opt()
    result = find_lr(
        model, tiny(), opt, nn.functional.cross_entropy,
        start_lr=1e-9, end_lr=1e-8, num_steps=20, diverge_factor=1e9,
    )  # fmt: skip
    assert result.steps == 20 + 57
    assert result.extended_to == pytest.approx(1e-5, rel=1e-6)


def test_ctrl_c_in_the_extension_still_records_how_far_it_went():
    model, opt = model_and_opt()

    def stop_at(step, lr, loss):
        if step == 9:
            raise KeyboardInterrupt

    result = find_lr(
        model,
        tiny(),
        opt,
        nn.functional.cross_entropy,
        start_lr=1e-9,
        end_lr=1e-8,
        num_steps=4,
        diverge_factor=1e9,
        on_step=stop_at,
        sync_every=1,
    )
    assert result.stop_reason == "interrupted" and result.lr[-1] > 1e-8
    assert result.extended_to == pytest.approx(result.lr[-1])


def test_divergence_of_a_positive_loss_is_fastais_ratio():
    assert diverged(4.01, 1.0, 2.3, 4.0) and not diverged(3.99, 1.0, 2.3, 4.0)


def test_divergence_of_a_loss_at_or_below_zero_is_a_rise_against_its_scale():
    # A loss shifted by -5: it starts at -2.7 and falls to -4.5. A ratio would call every
    # value "above 4 x -4.5 = -18"; the rise must exceed 3 x max(4.5, 1.8) = 13.5.
    assert not diverged(-4.4, -4.5, -2.7, 4.0)
    assert not diverged(8.9, -4.5, -2.7, 4.0)
    assert diverged(9.1, -4.5, -2.7, 4.0)
    # A loss that crossed zero: its fall from the start (2.0) is the scale.
    assert not diverged(5.0, -0.1, 1.9, 4.0) and diverged(6.0, -0.1, 1.9, 4.0)


def test_a_loss_below_zero_sweeps_on_and_gets_a_suggestion():
    """A loss with an offset (cross-entropy - 5) must not stop at its first step."""
    model, opt = model_and_opt()

    def shifted(output, target):
        return nn.functional.cross_entropy(output, target) - 5.0

    result = find_lr(model, tiny(), opt, shifted, start_lr=1e-4, end_lr=10, num_steps=60)
    assert result.steps > 30, result.stop_reason
    assert result.suggested_lr is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"smoothing": 1.0}, "find.smoothing"),
        ({"grad_accum": 0}, "find.grad_accum"),
        ({"precision": "fp64"}, "find.precision"),
        ({"diverge_factor": 0.5}, "find.diverge_factor"),
        ({"clip_grad_norm": -1.0}, "find.clip_grad_norm"),
        ({"val_loss": True, "val_data": [], "val_batches": 2}, "yields no batches"),
    ],
)
def test_find_lr_refuses_what_the_schema_refuses(kwargs, message):
    import torch

    from lrtool.errors import ConfigError
    from lrtool.finder import find_lr

    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=message):
        find_lr(model, batches, optimizer, torch.nn.functional.cross_entropy, num_steps=5, **kwargs)


def test_one_shot_iterators_are_refused_by_find_lr_and_fit_one_cycle():
    import torch

    from lrtool.errors import ConfigError
    from lrtool.finder import find_lr
    from lrtool.train import fit_one_cycle

    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    loss = torch.nn.functional.cross_entropy

    def once():
        yield from batches

    with pytest.raises(ConfigError, match="one-shot iterator"):
        find_lr(model, once(), torch.optim.SGD(model.parameters(), lr=0.1), loss, num_steps=5)
    with pytest.raises(ConfigError, match="train_data is a one-shot iterator"):
        fit_one_cycle(model, once(), None, torch.optim.SGD(model.parameters()), loss, 0.1)
    with pytest.raises(ConfigError, match="val_data is a one-shot iterator"):
        fit_one_cycle(model, batches, once(), torch.optim.SGD(model.parameters()), loss, 0.1)


def test_find_lr_takes_endless_streams_and_numpy_settings():
    import itertools

    import numpy as np
    import torch

    from lrtool.finder import find_lr

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    result = find_lr(
        model,
        itertools.cycle(batches),  # never runs out: one pass is all the sweep needs
        torch.optim.SGD(model.parameters(), lr=0.1),
        torch.nn.functional.cross_entropy,
        num_steps=10,
        smoothing=np.float32(0.9),
        grad_accum=np.int64(1),
    )
    assert len(result.lr) > 0


def test_signals_the_process_ignores_stay_ignored_while_results_are_saved():
    import signal

    from lrtool.history import deferred_interrupts, first_interrupt_only

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for block in (deferred_interrupts, first_interrupt_only):
            with block():
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGINT)  # a background job's Ctrl-C: ignored
    finally:
        signal.signal(signal.SIGINT, before)
