"""Smoke runs for CI on CPU: does the experiment build, learn and stay finite?

A smoke run forces the CPU and fp32, keeps a few batches of the data, runs a handful of steps,
and fails with one line saying why when the experiment is broken: it does not build, a loss is
NaN/inf, the loss cannot change (frozen graph, zero rate, detached output), parameters receive
no gradient, or it takes too long.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .build import Built
from .config import Experiment
from .errors import LossCannotTrain, LrtoolError, RunFailed, listed
from .finder import Snapshot
from .models import is_weights_name, weights_available
from .runtime import autocast, preserved_rng

FIND_STEPS = 10
# Smoke batches hold at most this many samples: the model and the input shapes stay real, but
# a 224-pixel resnet on 2 CPU cores must smoke in seconds, not minutes.
SMOKE_BATCH_SIZE = 8

# What a torchvision dataset looks like, so a missing one can be stood in for by FakeData.
_IMAGE_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "MNIST": ((1, 28, 28), 10),
    "FashionMNIST": ((1, 28, 28), 10),
    "KMNIST": ((1, 28, 28), 10),
    "QMNIST": ((1, 28, 28), 10),
    "CIFAR10": ((3, 32, 32), 10),
    "CIFAR100": ((3, 32, 32), 100),
    "SVHN": ((3, 32, 32), 10),
    "STL10": ((3, 96, 96), 10),
}


class SmokeFailed(RunFailed):
    """A smoke check failed: exit 1 with one line saying why."""


def smoke_experiment(exp: Experiment, batches: int) -> tuple[Experiment, str | None]:
    """The experiment as a smoke run sees it: CPU, fp32, and a stand-in for absent data."""
    updates: dict[str, Any] = {
        "device": "cpu",
        "find": exp.find.model_copy(update={"num_steps": FIND_STEPS, "precision": "fp32"}),
        "train": exp.train.model_copy(update={**_smoke_cycles(exp), "precision": "fp32"}),
    }
    note = None
    # A few batches: worker processes would cost more to start than they save.
    data = exp.data.model_copy(
        update={"num_workers": 0, "batch_size": min(exp.data.batch_size, SMOKE_BATCH_SIZE)}
    )
    updates["data"] = data
    if data.name.startswith("torchvision.") and not _torchvision_files_present(exp):
        cls = data.name.removeprefix("torchvision.")
        shape, classes = _IMAGE_SHAPES.get(cls, ((3, 224, 224), 10))
        classes = int(exp.model.args.get("num_classes", classes))
        size = data.args.get("resize")
        if size and cls not in _IMAGE_SHAPES:
            shape = (3, size, size) if isinstance(size, int) else (3, *size)
        kept = {k: v for k, v in data.args.items() if k in ("resize", "normalize")}
        fake_args = {
            "size": data.batch_size * (batches + 1) * 2,
            "image_size": list(shape),
            "num_classes": classes,
            **kept,
        }
        updates["data"] = data.model_copy(
            update={"name": "torchvision.FakeData", "args": fake_args}
        )
        note = f"{cls} absent: FakeData {tuple(shape)} x {classes} classes stood in"
    weights = exp.model.weights
    if weights and is_weights_name(weights) and not weights_available(exp.model.name, weights):
        # As with absent data: CI machines are offline, and the smoke run checks that the
        # experiment runs, not what the pretrained weights know.
        updates["model"] = exp.model.model_copy(update={"weights": None})
        skipped = f"weights {weights} not cached: random initial weights stood in"
        note = f"{note}; {skipped}" if note else skipped
    return exp.model_copy(update=updates), note


def _smoke_cycles(exp: Experiment) -> dict[str, int]:
    """One epoch (one frozen epoch first under freeze_epochs); a run of cycles keeps two
    cycles, so the smoke run also passes through a re-find and the change of rates."""
    freeze = min(exp.train.freeze_epochs, 1)
    if exp.train.cycles == 1:
        return {"epochs": 1, "freeze_epochs": freeze, "cycles": 1}
    # Cycle 1 is the frozen epoch when there is one; else two unfrozen cycles of one epoch.
    return {"epochs": 1 if freeze else 2, "freeze_epochs": freeze, "cycles": 2}


def _torchvision_files_present(exp: Experiment) -> bool:
    """Try to open the dataset without downloading anything. A dataset that takes no
    `download` (ImageFolder: the user's own files) is opened as it is; an unknown name counts
    as present, so the real build says what is wrong with it."""
    import inspect

    import torchvision

    from .data import load_splits

    cls = getattr(torchvision.datasets, exp.data.name.removeprefix("torchvision."), None)
    if not inspect.isclass(cls):
        return True
    takes_download = "download" in inspect.signature(cls).parameters
    args = {**exp.data.args, **({"download": False} if takes_download else {})}
    try:
        load_splits(
            exp.data.name,
            args,
            val_fraction=exp.data.val_fraction,
            seed=exp.seed,
            index_targets=None,
        )
    except LrtoolError as err:
        # Absent only when torchvision found nothing to read: a truncated or corrupt file is
        # the user's to fix, so the real build runs and says what is wrong (CI must go red).
        said = str(err).lower()
        if not any(words in said for words in ("not found", "does not exist", "not present")):
            return True
        own = getattr(cls, "base_folder", None)  # CIFAR's one word for absent and corrupt
        root = exp.data.args.get("root")
        return bool(isinstance(own, str) and root and (Path(str(root)) / own).exists())
    return True


def limit_data(built: Built, batches: int) -> None:
    """A small deterministic subset: the first batches of the training and validation data."""
    built.train_data.limit(batches)
    built.val_data.limit(batches)


def check_gradients(built: Built) -> None:
    """Every trainable parameter must get a gradient from the loss on the smoke batches."""
    model, loss_fn = built.model, built.loss_fn
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise SmokeFailed("no parameter requires a gradient: the whole model is frozen.")
    reached: set[str] = set()
    saved = Snapshot(model, built.optimizer, "memory")
    try:
        with preserved_rng():
            model.train()
            for x, y in built.train_data:
                model.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                if not loss.requires_grad:
                    raise SmokeFailed(
                        "the loss has no gradient: the model's output is detached from its "
                        "parameters (a .detach(), torch.no_grad() or .item() in forward?)."
                    )
                loss.backward()
                reached |= {n for n, p in trainable.items() if p.grad is not None}
                if len(reached) == len(trainable):
                    break  # more batches cannot add to it: 224-pixel resnets smoke faster
    finally:
        model.zero_grad(set_to_none=True)
        saved.restore()
        saved.close()
    missing = [name for name in trainable if name not in reached]
    if missing:
        raise SmokeFailed(
            f"{len(missing)} parameter(s) never received a gradient: {listed(missing)}. They "
            "are not used in forward, or sit behind a detach/no_grad; set requires_grad=False "
            "if intended."
        )


def check_learning(built: Built, lr: float, steps: int = 3) -> None:
    """A few steps on one batch must change its loss; the model is restored afterwards."""
    model, optimizer, loss_fn = built.model, built.optimizer, built.loss_fn
    x, y = next(iter(built.train_data))
    saved = Snapshot(model, optimizer, "memory")
    rates = [g["lr"] for g in optimizer.param_groups]
    try:
        with preserved_rng():
            model.eval()  # no dropout noise: any change comes from the weights
            with torch.no_grad():
                before = loss_fn(model(x), y).item()
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = lr
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                with autocast("fp32", built.device):
                    loss_fn(model(x), y).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                after = loss_fn(model(x), y).item()
    finally:
        saved.restore()
        saved.close()
        for group, rate in zip(optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
    if not (torch.isfinite(torch.tensor(before)) and torch.isfinite(torch.tensor(after))):
        raise SmokeFailed(f"the loss is not finite (before {before}, after {after} at lr {lr:g}).")
    if after == before:
        raise SmokeFailed(
            f"the loss did not change after {steps} steps at lr {lr:g} on one batch "
            f"(stuck at {before:.6g}): a frozen graph, a zero learning rate or a detached output?"
        )


def check_losses(losses: list[float], what: str) -> None:
    if len(losses) > 1 and max(losses) == min(losses):
        raise SmokeFailed(
            f"the {what} loss did not change at all over {len(losses)} steps "
            f"(stuck at {losses[0]:.6g}): a frozen graph, a zero rate or a constant output?"
        )


MAX_TIMEOUT_S = 365 * 24 * 3600.0


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise SmokeFailed once `seconds` have passed (main thread on Unix; elsewhere a no-op)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    # No limit: 0 or less, or longer than a timer can count (a year is no smoke run anyway).
    if not usable or not 0 < seconds < MAX_TIMEOUT_S:
        yield
        return

    message = f"the smoke run took longer than --smoke-timeout {seconds:g} s."
    expired = []

    def expire(signum: int, frame: Any) -> None:
        expired.append(True)
        raise SmokeFailed(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The alarm can land where Python swallows exceptions (a finalizer, an import lock's
    # cleanup: "Exception ignored in ..."), and the run then carries on to the end. It still
    # took too long.
    if expired:
        raise SmokeFailed(message)


def summary(ok: bool, command: str, detail: str, elapsed: float, note: str | None) -> str:
    """The one line CI logs can grep for."""
    extra = f"; {note}" if note else ""
    if ok:
        return f"lrtool smoke: ok ({command}, {detail}, {elapsed:.1f} s{extra})"
    return f"lrtool smoke: FAILED ({command}: {detail}{extra})"


def temp_out(out: Path | None) -> Path:
    import tempfile

    return out if out is not None else Path(tempfile.mkdtemp(prefix="lrtool-smoke-"))


def run_smoke(
    command: str,
    exp: Experiment,
    batches: int,
    timeout: float,
    learning_rate: float,
    body: Any,
) -> tuple[str, Any]:
    """Build the smoke experiment, run the checks and `body(built)`, return (summary, result).

    `body` runs the command on the built components and returns (detail, losses, result).
    Raises SmokeFailed / LrtoolError saying what is wrong, with the note on stand-ins (absent
    data, uncached weights) as its `smoke_note`; `summary` makes the FAILED line of both. Any
    other exception (the user's own code) passes through. The CLI's error boundary prints the
    error paragraph, then the FAILED line.
    """
    import time

    from .build import build
    from .probe import check_training, probe

    started = time.perf_counter()
    smoke_exp, note = smoke_experiment(exp, batches)
    try:
        with deadline(timeout):
            built = build(smoke_exp)
            if command != "find":
                check_training(built)  # on the whole epoch, before it is cut
            limit_data(built, batches)
            try:
                probe(built)  # a model that does not fit its data, said in the experiment's keys
            except LossCannotTrain as err:
                raise SmokeFailed(str(err)) from None  # a failed check: exit 1, as documented
            check_gradients(built)
            check_learning(built, learning_rate)
            detail, losses, result = body(built)
            check_losses(losses, command)
    except LrtoolError as err:
        err.smoke_note = note  # the FAILED line ends with it (cli.fail)
        raise
    return summary(True, command, detail, time.perf_counter() - started, note), result
