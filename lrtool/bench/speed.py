"""`python -m lrtool.bench speed`: time per step of the sweep and of training against a plain
PyTorch loop doing the same forward/backward/step on the same batches (best of several repeats).

Speed targets are met here, measured, never in timed tests.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..build import build
from ..config import validate
from ..finder import find_lr

# --- speed --------------------------------------------------------------------------------


def _plain_find_loop(built: Any, steps: int) -> float:
    """The baseline: forward, backward, step on the same batches, with nothing recorded."""
    from ..finder import cycle

    model, opt, loss_fn = built.model, built.optimizer, built.loss_fn
    model.train()
    batches = cycle(built.train_data)  # the same data path the sweep reads
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    _sync(built.device)
    return (time.perf_counter() - start) / steps


def _plain_train_loop(built: Any, epochs: int, lr_max: float) -> float:
    """Baseline for training: the same OneCycleLR, no recording, no evaluation."""
    model, opt, loss_fn = built.model, built.optimizer, built.loss_fn
    steps_per_epoch = len(built.train_data)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr_max, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        built.train_data.set_epoch(epoch)
        for x, y in built.train_data:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
    _sync(built.device)
    return (time.perf_counter() - start) / (epochs * steps_per_epoch)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


SPEED_TASKS: dict[str, dict[str, Any]] = {
    "digits-mlp": {
        "model": {"name": "mlp", "args": {"in_features": 64, "hidden": [128], "num_classes": 10}},
        "data": {"name": "sklearn.digits", "batch_size": 64},
    },
    "fake32-cnn": {
        "model": {"name": "cnn", "args": {"in_channels": 3, "num_classes": 10, "width": 32}},
        "data": {
            "name": "torchvision.FakeData",
            "args": {"size": 2048, "image_size": [3, 32, 32], "num_classes": 10},
            "batch_size": 128,
        },
    },
}


def speed(device: str, repeats: int, steps: int) -> None:
    from ..run import train_built
    from ..runtime import resolve_device

    resolve_device(device)  # an absent device is said before the table's header is printed
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(f"best of {repeats} repeats; find: {steps} steps; train: 2 epochs")
    print(f"{'task':<12} {'what':<6} {'plain ms/step':>14} {'lrtool ms/step':>15} {'overhead':>9}")
    for name, spec in SPEED_TASKS.items():
        exp = validate(
            {"device": device, **spec, "optimizer": {"name": "sgd", "args": {"momentum": 0.9}}}
        )
        for what in ("find", "train"):
            plain, ours = [], []
            for _ in range(repeats):
                built = build(exp)
                if what == "find":
                    plain.append(_plain_find_loop(built, steps))
                    built = build(exp)
                    result = find_lr(
                        built.model,
                        built.train_data,
                        built.optimizer,
                        built.loss_fn,
                        start_lr=1e-5,
                        end_lr=1e-2,
                        num_steps=steps,
                        diverge_factor=1e9,
                    )
                    ours.append(result.elapsed_s / result.steps)
                else:
                    plain.append(_plain_train_loop(built, 2, 0.05))
                    built = build(exp)
                    start = time.perf_counter()
                    result = train_built(built, 0.05, epochs=2, evaluate=False)
                    ours.append((time.perf_counter() - start) / len(result.history["step"]))
            p, o = min(plain), min(ours)
            print(
                f"{name:<12} {what:<6} {p * 1e3:>14.3f} {o * 1e3:>15.3f} {100 * (o / p - 1):>8.1f}%"
            )
