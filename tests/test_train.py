"""One-cycle training: rate parsing, the schedule, freezing, checkpoints, resume, stops."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lrtool import workflows
from lrtool.build import Built, build, make_optimizer
from lrtool.config import validate
from lrtool.data import Batches
from lrtool.errors import ConfigError
from lrtool.history import to_json
from lrtool.models import load_weights, parameter_groups
from lrtool.schedule import steps_per_epoch
from lrtool.train import (
    CHECKPOINT_NAME,
    TrainResult,
    fit_one_cycle,
    frozen,
    parse_lr_max,
)

CPU = torch.device("cpu")


# --- fixtures -----------------------------------------------------------------------------


def tensor_batches(n: int = 64, batch_size: int = 8, scale: float = 1.0) -> Batches:
    """Random 4-feature, 3-class data: 64 samples in batches of 8 are 8 steps per epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g) * scale
    y = torch.randint(0, 3, (n,), generator=g)
    return Batches(TensorDataset(x, y), batch_size=batch_size, device=CPU, shuffle=True)


def three_groups(
    optimizer: str = "sgd", batch_norm: bool = False, **args: float
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A 3-layer net whose layers are three parameter groups (earliest first)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(4, 8)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(8))
    model = nn.Sequential(
        nn.Sequential(*layers, nn.ReLU()),
        nn.Sequential(nn.Linear(8, 8), nn.ReLU()),
        nn.Linear(8, 3),
    )
    return model, make_optimizer(optimizer, args, parameter_groups(model))


def fit(model: nn.Module, opt: torch.optim.Optimizer, lr_max: object, **kw: object) -> TrainResult:
    data = tensor_batches()
    return fit_one_cycle(model, data, None, opt, nn.CrossEntropyLoss(), lr_max, **kw)


def digits(**train: object) -> Built:
    exp = validate(
        {
            "seed": 0,
            "device": "cpu",
            "model": {
                "name": "mlp",
                "args": {"in_features": 64, "hidden": [32], "num_classes": 10, "dropout": 0.1},
            },
            "data": {"name": "sklearn.digits", "batch_size": 64},
            "optimizer": {"name": "sgd", "args": {"momentum": 0.9, "weight_decay": 5e-4}},
            "train": train,
        }
    )
    return build(exp)


def fit_built(built: Built, **kw: object) -> TrainResult:
    t = built.experiment.train
    settings = dict(
        epochs=t.epochs,
        freeze_epochs=t.freeze_epochs,
        pct_start=t.pct_start,
        metrics=built.metrics,
        device=built.device,
        seed=built.experiment.seed,
    )
    return fit_one_cycle(
        built.model,
        built.train_data,
        built.val_data,
        built.optimizer,
        built.loss_fn,
        t.lr_max if t.lr_max is not None else 0.1,
        **{**settings, **kw},
    )


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def interrupt_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise KeyboardInterrupt

    return on_epoch


# --- parse_lr_max -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "n", "expected"),
    [
        (0.01, 3, [0.01, 0.01, 0.01]),
        (1, 1, [1.0]),
        ("3e-3", 2, [3e-3, 3e-3]),
        (" 0.5 ", 1, [0.5]),
        ([1e-4, 1e-3, 1e-2], 3, [1e-4, 1e-3, 1e-2]),
        (["1e-4", 2e-3], 2, [1e-4, 2e-3]),
        ("1e-4:1e-2", 3, [1e-4, 1e-3, 1e-2]),
        ("1e-5:1e-3", 2, [1e-5, 1e-3]),
        ("1e-6:1e-2", 5, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]),
        ("1e-4:1e-2", 1, [1e-2]),
        (":1e-2", 3, [1e-3, 1e-3, 1e-2]),
        (":0.3", 1, [0.3]),
    ],
)
def test_parse_lr_max_forms(value: object, n: int, expected: list[float]) -> None:
    assert parse_lr_max(value, n) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "n", "detail"),
    [
        ("fast", 2, "'fast'"),
        (-0.1, 1, "-0.1"),
        (0, 1, "got 0"),
        (float("nan"), 1, "nan"),
        (True, 1, "True"),
        ([0.1, 0.2], 3, "2 rates for 3 parameter groups"),
        ([0.1, "x"], 2, "'x'"),
        ("1e-3:", 2, "'1e-3:'"),
        ("a:1e-2", 2, "'a:1e-2'"),
        ("1e-4:1e-3:1e-2", 3, "'1e-4:1e-3:1e-2'"),
        ("1e-2:1e-4", 3, "LOW is above HIGH"),
        (None, 1, "None"),
    ],
)
def test_parse_lr_max_errors_say_what_was_expected_and_what_came(
    value: object, n: int, detail: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_lr_max(value, n)
    message = str(err.value)
    # The engine names the experiment key, never a CLI flag.
    assert message.startswith("train.lr_max: expected a positive number")
    assert "'LOW:HIGH' or ':HIGH'" in message
    assert detail in message


def test_parse_lr_max_auto_is_for_the_caller() -> None:
    with pytest.raises(ConfigError, match="'auto' must be resolved"):
        parse_lr_max("auto", 2)


# --- the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lr_max", "expected"),
    [
        (0.1, [0.1, 0.1, 0.1]),
        ("1e-4:1e-2", [1e-4, 1e-3, 1e-2]),
        (":0.1", [0.01, 0.01, 0.1]),
        ([0.2, 0.02, 0.002], [0.2, 0.02, 0.002]),
    ],
)
def test_group_rates_at_the_peak_step(lr_max: object, expected: list[float]) -> None:
    model, opt = three_groups("sgd", momentum=0.9)
    result = fit(model, opt, lr_max, epochs=1)  # 8 steps, the peak at step 2
    assert result.group_lrs_at_peak == pytest.approx(expected, rel=1e-12)
    assert result.group_names == ["0", "1", "2"]
    assert result.lr_max == (0.1 if lr_max == 0.1 else pytest.approx(expected))


@pytest.mark.parametrize(("optimizer", "args"), [("sgd", {"momentum": 0.9}), ("adam", {})])
def test_schedule_shape_and_momentum_move_opposite(optimizer: str, args: dict) -> None:
    model, opt = three_groups(optimizer, **args)
    result = fit(
        model,
        opt,
        0.1,
        epochs=2,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e4,
        moms=(0.95, 0.85, 0.95),
    )
    h = result.history
    total = 16
    assert h["step"] == list(range(1, total + 1))
    lr, mom = h["lr"], h["momentum"]
    assert lr[0] == pytest.approx(0.1 / 25)
    peak = lr.index(max(lr))
    assert h["step"][peak] == round(0.25 * total) == 4
    assert lr[peak] == pytest.approx(0.1, rel=1e-12)
    assert lr[-1] == pytest.approx(0.1 / 25 / 1e4)
    assert all(a < b for a, b in zip(lr[:peak], lr[1 : peak + 1], strict=True))  # warm-up rises
    assert all(a > b for a, b in zip(lr[peak:-1], lr[peak + 1 :], strict=True))  # annealing falls
    assert mom[0] == pytest.approx(0.95)
    assert mom.index(min(mom)) == peak
    assert mom[peak] == pytest.approx(0.85)
    assert mom[-1] == pytest.approx(0.95)
    assert result.stop_reason == "completed"
    # The optimizer really ran with those momenta (beta1 for Adam).
    group = opt.param_groups[-1]
    assert (group["betas"][0] if optimizer == "adam" else group["momentum"]) > 0.9


def test_linear_anneal_and_an_optimizer_without_momentum() -> None:
    model, opt = three_groups("adagrad")
    result = fit(model, opt, 0.1, epochs=1, anneal="linear")  # warm-up: steps 1-2
    lr = result.history["lr"]
    assert lr[:3] == pytest.approx([0.004, 0.1, 0.1 - (0.1 - 0.004 / 1e5) / 6])
    assert result.history["momentum"] is None
    header, rows = result.csv_rows()
    assert header == ["step", "lr", "momentum", "loss"]
    assert rows[0][:3] == [1, pytest.approx(0.004), None]


def test_one_step_warm_up_runs_at_the_peak() -> None:
    # pct_start x steps == 1 makes torch's OneCycleLR divide by zero; the first step is the peak.
    model, opt = three_groups("sgd", momentum=0.9)
    result = fit(model, opt, 0.1, epochs=1, pct_start=0.125)
    assert result.history["lr"][0] == pytest.approx(0.1)


def test_grad_accum_takes_ceil_of_batches_per_step() -> None:
    model, opt = three_groups("sgd", momentum=0.9)
    result = fit(model, opt, 0.1, epochs=2, grad_accum=3)  # 8 batches -> steps of 3, 3, 2
    assert result.history["step"] == list(range(1, 7))
    assert len(result.epochs) == 2


def test_steps_per_epoch_is_one_count_for_the_trainer_and_the_workflows() -> None:
    assert [steps_per_epoch(n, 3) for n in (1, 3, 4, 8, 9)] == [1, 1, 2, 3, 3]
    assert steps_per_epoch(8) == 8
    model, opt = three_groups("sgd", momentum=0.9)
    result = fit(model, opt, 0.1, epochs=2, grad_accum=3)  # 8 batches an epoch
    assert len(result.history["step"]) == 2 * steps_per_epoch(8, 3)
    built = digits(grad_accum=4)
    n = len(built.train_data)
    assert workflows.steps_per_epoch(built) == steps_per_epoch(n, 4) == math.ceil(n / 4)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"moms": (0.95, 0.85, 0.9)}, r"train.moms: .*first and last are equal"),
        ({"pct_start": 1.0}, "train.pct_start"),
        ({"grad_accum": 0}, "train.grad_accum"),
        ({"eval_every": 0}, "train.eval_every"),
        ({"precision": "fp8"}, "train.precision"),
        ({"epochs": 0}, "train.epochs"),
    ],
)
def test_bad_settings_name_their_key(kw: dict, match: str) -> None:
    model, opt = three_groups("sgd", momentum=0.9)
    with pytest.raises(ConfigError, match=match):
        fit(model, opt, 0.1, **kw)


# --- freezing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "args"),
    [("sgd", {"momentum": 0.9, "weight_decay": 0.1}), ("adamw", {"weight_decay": 0.1})],
)
def test_frozen_groups_stay_bit_identical_then_train(optimizer: str, args: dict) -> None:
    model, opt = three_groups(optimizer, batch_norm=True, **args)
    groups = [list(g["params"]) for g in opt.param_groups]
    before = [[p.detach().clone() for p in g] for g in groups]
    running_mean = model[0][1].running_mean.clone()
    after_frozen: list[list[torch.Tensor]] = []

    def on_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            after_frozen.extend([p.detach().clone() for p in g] for g in groups)
            assert not any(p.requires_grad for g in groups[:-1] for p in g)

    # train_bn: false freezes BatchNorm's weights too (the default trains them: test_finetune).
    result = fit(model, opt, 0.05, epochs=1, freeze_epochs=1, on_epoch=on_epoch, train_bn=False)
    assert [r["phase"] for r in result.epochs] == ["frozen", "main"]
    for b, f in zip(
        before[:-1], after_frozen[:-1], strict=True
    ):  # body, BatchNorm weights included
        assert all(torch.equal(x, y) for x, y in zip(b, f, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(before[-1], after_frozen[-1], strict=True))
    # Documented: BatchNorm in a frozen group keeps updating its running statistics.
    assert not torch.equal(running_mean, model[0][1].running_mean)
    # After unfreezing every group trains, and the flags are back.
    for b, g in zip(before[:-1], groups[:-1], strict=True):
        assert not any(torch.equal(x, p) for x, p in zip(b, g, strict=True))
    assert all(p.requires_grad for g in groups for p in g)
    # The frozen epoch cycled the head alone; the main cycle peaks every group.
    assert result.history["lr"][1] == pytest.approx(0.05)
    assert result.group_lrs_at_peak == pytest.approx([0.05, 0.05, 0.05])


def test_frozen_restores_flags_it_found() -> None:
    model, opt = three_groups("sgd")
    first = opt.param_groups[0]["params"][0]
    first.requires_grad_(False)  # frozen by the user: it stays frozen afterwards
    with frozen(opt):
        assert not any(p.requires_grad for g in opt.param_groups[:-1] for p in g["params"])
        assert all(p.requires_grad for p in opt.param_groups[-1]["params"])
    assert not first.requires_grad
    assert opt.param_groups[1]["params"][0].requires_grad


def test_freezing_a_single_group_is_an_error() -> None:
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="single group"):
        fit(model, opt, 0.1, freeze_epochs=1)


# --- checkpoints and resume ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("freeze", "stop_after"),
    [(0, 1), (1, 1), (1, 2), (2, 1)],
    ids=["main", "phase-boundary", "mid-main", "mid-frozen"],
)
def test_resume_is_bit_identical(tmp_path: Path, freeze: int, stop_after: int) -> None:
    epochs = 3 - freeze
    whole = digits()
    reference = fit_built(whole, epochs=epochs, freeze_epochs=freeze)

    first = digits()
    stopped = fit_built(
        first,
        epochs=epochs,
        freeze_epochs=freeze,
        checkpoint=tmp_path,
        on_epoch=interrupt_after(stop_after),
    )
    assert stopped.stop_reason == "interrupted"
    assert len(stopped.epochs) == stop_after

    torch.manual_seed(123)  # a fresh process would start from other RNG states
    second = digits()
    resumed = fit_built(
        second,
        epochs=epochs,
        freeze_epochs=freeze,
        checkpoint=tmp_path,
        resume=tmp_path / CHECKPOINT_NAME,
    )
    assert resumed.stop_reason == "completed"
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert resumed.history == reference.history
    assert [r["train_loss"] for r in resumed.epochs] == [r["train_loss"] for r in reference.epochs]
    assert resumed.final == reference.final
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["epoch"] == 3


def test_ctrl_c_mid_epoch_keeps_last_complete_checkpoint(tmp_path: Path) -> None:
    built = digits()
    steps_per_epoch = len(built.train_data)

    def on_step(step: int, lr: float, loss: float | None) -> None:
        if step == steps_per_epoch + 3:
            raise KeyboardInterrupt

    result = fit_built(built, epochs=3, checkpoint=tmp_path, on_step=on_step)
    assert result.stop_reason == "interrupted"
    assert len(result.epochs) == 1
    assert len(result.history["loss"]) >= steps_per_epoch + 2  # the partial epoch is kept
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["epoch"] == 1 and saved["phase"] == "main"
    assert len(saved["progress"]["history"]["loss"]) == steps_per_epoch
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temp file left


def test_checkpoint_loads_as_model_weights(tmp_path: Path) -> None:
    built = digits()
    fit_built(built, epochs=1, checkpoint=tmp_path)
    other = digits()
    load_weights(other.model, str(tmp_path / CHECKPOINT_NAME))
    for a, b in zip(built.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    fit_built(digits(), epochs=2, checkpoint=tmp_path, on_epoch=interrupt_after(1))
    with pytest.raises(ConfigError, match=r"train.epochs = 2, this run has 3"):
        fit_built(digits(), epochs=3, resume=tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ConfigError, match="does not exist"):
        fit_built(digits(), epochs=2, resume=tmp_path / "nothing.pt")


# --- stops --------------------------------------------------------------------------------


@pytest.mark.parametrize("sync_every", [1, 4])
def test_nan_loss_stops_with_the_step_and_rate(sync_every: int) -> None:
    calls = 0

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        loss = nn.functional.cross_entropy(output, target)
        return loss * math.nan if calls == 3 else loss

    seen: list[tuple[int, float | None]] = []
    model, opt = three_groups("sgd", momentum=0.9)
    result = fit_one_cycle(
        model,
        tensor_batches(),
        None,
        opt,
        loss_fn,
        0.1,
        epochs=2,
        sync_every=sync_every,
        on_step=lambda step, lr, loss: seen.append((step, loss)),
    )
    assert result.stop_reason == "nan"
    assert result.nan_step == 3
    # Step 3 of a 4-step cosine warm-up from 0.004 to 0.1: 0.1 - 0.096 * (cos(2pi/3) + 1) / 2.
    assert result.nan_lr == pytest.approx(0.076)
    assert result.history["step"] == [1, 2]
    assert result.epochs == []
    assert seen[-1] == (3, None)
    assert "NaN" not in to_json(result.to_dict())


def test_huge_rate_on_unscaled_data_stops_with_nan() -> None:
    model, opt = three_groups("sgd", momentum=0.9)
    data = tensor_batches(scale=1e4)
    result = fit_one_cycle(model, data, None, opt, nn.CrossEntropyLoss(), 1e6, epochs=2)
    assert result.stop_reason == "nan"
    assert result.nan_step is not None and result.nan_lr is not None
    assert len(result.history["loss"]) == result.nan_step - 1


# --- evaluation and results ---------------------------------------------------------------


def test_eval_every_steps_and_the_final_evaluation() -> None:
    built = digits()
    steps = len(built.train_data)  # 22 per epoch
    result = fit_built(built, epochs=2, eval_every=10)
    assert [e["step"] for e in result.evals] == [10, 20, 30, 40, 2 * steps]
    assert result.epochs[0]["val_loss"] == result.evals[1]["val_loss"]  # step 20: epoch 1
    assert result.final == {k: result.evals[-1][k] for k in ("val_loss", "accuracy")}


def test_reduce_sees_step_losses_and_evaluation_sums() -> None:
    built = digits()
    seen: list[torch.Tensor] = []

    def reduce(t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return t

    result = fit_built(built, epochs=1, reduce=reduce)
    # One per step, then val loss sum, count and the accuracy sum.
    assert len(seen) == len(built.train_data) + 3
    assert seen[-2].item() == built.val_data.num_samples
    assert result.final["accuracy"] == pytest.approx(seen[-1].item() / seen[-2].item())


def test_digits_mlp_learns_and_the_result_is_train_json() -> None:
    built = digits()
    result = fit_built(built, epochs=5)
    assert result.stop_reason == "completed"
    assert result.final["accuracy"] > 0.9
    assert [r["epoch"] for r in result.epochs] == [1, 2, 3, 4, 5]
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]
    data = result.to_dict()
    assert {
        "lr_max",
        "epochs",
        "final",
        "history",
        "stop_reason",
        "nan_step",
        "nan_lr",
        "seed",
        "device",
        "elapsed_s",
        "config",
        "versions",
        "kind",
        "world_size",
        "effective_batch_size",
        "group_lrs_at_peak",
    } <= set(data)
    assert data["kind"] == "train" and data["device"] == "cpu"
    to_json(data)
    header, rows = result.epoch_rows()
    assert header == ["epoch", "phase", "train_loss", "val_loss", "accuracy", "seconds"]
    assert len(rows) == 5 and rows[-1][4] == result.final["accuracy"]
