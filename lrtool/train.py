"""One-cycle training: per-group peak rates, an optional frozen warm-up, checkpoints, resume.

Leslie Smith, "Super-Convergence" (2017) and "A disciplined approach to neural network
hyper-parameters" (2018), as popularised by fastai's `fit_one_cycle` and `fine_tune`. The
schedule itself is torch's `OneCycleLR`, set up in `schedule.py`; the frozen groups' helpers
are in `freezing.py` and `TrainResult` in `results.py` (all still importable from here). This
module decides what the schedule runs over.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from .checkpoint import (  # noqa: F401  (CHECKPOINT_NAME: re-exported, its old home)
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    check_resume,
    load_checkpoint,
    native_rng,
    portable_rng,
    save_checkpoint,
)
from .config import LR_MAX_FORMS, RateSlice, lr_max_value
from .engine import StepLoop, check_reiterable, evaluate, loop_device
from .errors import ConfigError, RunFailed
from .freezing import (  # noqa: F401  (NORM_TYPES: re-exported, its old home)
    NORM_TYPES,
    frozen,
    last_group_only,
    norm_parameters,
    nothing_to_freeze,
)
from .results import TrainResult
from .runtime import rng_state, seed_everything, set_rng_state
from .schedule import _momentum, momentum_key, one_cycle_scheduler, steps_per_epoch

LR_MAX_KEY = "train.lr_max"
PRECISIONS = ("fp32", "bf16", "fp16")


# --- peak rates per group -----------------------------------------------------------------


def parse_lr_max(value: float | str | Sequence[float | str], n_groups: int) -> list[float]:
    """The peak rate of every parameter group, earliest group first, the head last.

    The syntax is the experiment file's (`config.lr_max_value`, which the schema applies
    at load); here it is expanded to one rate per group:
    - a number, or a string such as "3e-3": the same rate for every group;
    - a list: one rate per group;
    - "LOW:HIGH": geometric spread from LOW (first group) to HIGH (last), fastai's
      `slice(low, high)`;
    - ":HIGH": HIGH for the last group and HIGH/10 for the others, fastai's `slice(high)`.

    "auto" is not a rate: the caller runs the finder and passes its suggestion.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be at least 1, got {n_groups}")
    try:
        parsed = lr_max_value(value)
    except ValueError as err:
        raise ConfigError(f"{LR_MAX_KEY}: {err}.") from None
    if parsed == "auto":
        raise ConfigError(
            f"{LR_MAX_KEY}: 'auto' must be resolved before training starts (run the finder and "
            "pass its suggested rate); fit_one_cycle takes numbers."
        )
    if parsed is None:
        raise ConfigError(f"{LR_MAX_KEY}: expected {LR_MAX_FORMS}; got None.")
    if isinstance(parsed, RateSlice):
        if parsed.low is None:
            return [parsed.high / 10] * (n_groups - 1) + [parsed.high]
        if n_groups == 1:
            return [parsed.high]
        return [float(r) for r in np.geomspace(parsed.low, parsed.high, n_groups)]
    if isinstance(parsed, list):
        if len(parsed) != n_groups:
            raise ConfigError(
                f"{LR_MAX_KEY}: expected {LR_MAX_FORMS}; got {value!r} ({len(parsed)} rates "
                f"for {n_groups} parameter groups)."
            )
        return parsed
    return [parsed] * n_groups


# --- the loop -----------------------------------------------------------------------------


@dataclass
class _Progress:
    """What a run has recorded so far: the checkpoint saves it, the result reports it."""

    step: int = 0  # optimizer steps taken, all phases
    epochs_done: int = 0
    history: dict[str, list[Any] | None] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    peak_lr: float = -math.inf
    group_lrs_at_peak: list[float] | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class _Phase:
    name: str  # "frozen" (head only) or "main"
    first_epoch: int  # 0-based, counted across phases
    epochs: int
    lr_max: list[float]  # the peak of each group the phase trains

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs

    @property
    def is_frozen(self) -> bool:
        return self.name == "frozen"


def _check_settings(
    *,
    epochs: int,
    freeze_epochs: int,
    n_groups: int,
    grad_accum: int,
    pct_start: float,
    div_factor: float,
    final_div_factor: float,
    moms: Sequence[float],
    anneal: str,
    precision: str,
    clip_grad_norm: float | None,
    eval_every: str | int,
) -> None:
    def whole(value: Any) -> bool:  # numpy's integers too
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def number(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    if not whole(epochs) or epochs < 1:
        raise ConfigError(f"train.epochs must be a whole number >= 1 (got {epochs!r}).")
    if not whole(freeze_epochs) or freeze_epochs < 0:
        raise ConfigError(
            f"train.freeze_epochs must be a whole number >= 0 (got {freeze_epochs!r})."
        )
    frozen_nothing = nothing_to_freeze(freeze_epochs, n_groups)
    if frozen_nothing:
        raise ConfigError(frozen_nothing)
    if not whole(grad_accum) or grad_accum < 1:
        raise ConfigError(f"train.grad_accum must be a whole number >= 1 (got {grad_accum!r}).")
    if not number(pct_start) or not 0 < pct_start < 1:
        raise ConfigError(f"train.pct_start must be between 0 and 1 (got {pct_start!r}).")
    if (
        not (number(div_factor) and number(final_div_factor))
        or not 0 < div_factor < math.inf
        or not 0 < final_div_factor < math.inf
    ):
        raise ConfigError(
            "train.div_factor and train.final_div_factor must be positive "
            f"(got {div_factor!r} and {final_div_factor!r})."
        )
    if len(moms) != 3 or moms[0] != moms[2]:
        raise ConfigError(
            "train.moms: expected three values (start, at the peak rate, end) whose first and "
            "last are equal, because torch's OneCycleLR cycles momentum from one value to "
            f"another and back; got {tuple(moms)!r}."
        )
    if anneal not in ("cos", "linear"):
        raise ConfigError(f"train.anneal must be cos or linear (got {anneal!r}).")
    if precision not in PRECISIONS:
        raise ConfigError(
            f"train.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})."
        )
    if clip_grad_norm is not None and (not number(clip_grad_norm) or not clip_grad_norm > 0):
        raise ConfigError(f"train.clip_grad_norm must be positive (got {clip_grad_norm!r}).")
    if eval_every != "epoch" and (not whole(eval_every) or eval_every < 1):
        raise ConfigError(
            f"train.eval_every must be 'epoch' or a number of optimizer steps >= 1 "
            f"(got {eval_every!r})."
        )


# Long only in its keyword arguments and their documentation: the work is OneCycleTrainer's.
def fit_one_cycle(
    model: nn.Module,
    train_data: Iterable[Any],
    val_data: Iterable[Any] | None,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    lr_max: float | Sequence[float] | str,
    *,
    epochs: int = 5,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e5,
    moms: Sequence[float] = (0.95, 0.85, 0.95),
    anneal: str = "cos",
    freeze_epochs: int = 0,
    grad_accum: int = 1,
    precision: str = "fp32",
    clip_grad_norm: float | None = None,
    eval_every: str | int = "epoch",
    train_bn: bool = True,
    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
    device: torch.device | str | None = None,
    seed: int | None = 0,
    on_step: Callable[[int, float, float | None], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    config: dict[str, Any] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sync_every: int | None = None,
) -> TrainResult:
    """Train with the one-cycle policy and return the history, epoch records and final metrics.

    `train_data` yields (inputs, targets) batches and has a `len()` (an lrtool `Batches`, a
    DataLoader, a list); its `set_epoch(e)` is called before every epoch when it has one, so
    a resumed run sees the same order. `lr_max` is one peak rate or one per optimizer group
    (see `parse_lr_max`). One optimizer step takes `grad_accum` batches (the last step of an
    epoch takes what is left), so an epoch is ceil(batches / grad_accum) steps.

    Phases:
    1) `freeze_epochs` > 0 (fastai's fine_tune): a one-cycle over those epochs for the last
       group (the head) at its lr_max. The other groups get no gradients and are hidden from
       the optimizer, so their parameters stay bit-identical even with weight decay, except
       their normalisation layers (BatchNorm, InstanceNorm, LayerNorm) under `train_bn`
       (default, as fastai's `train_bn=True`): their weights and biases train with the head's
       settings. With `train_bn` False they stay frozen too. Either way the model stays in
       train mode, so BatchNorm's running mean and variance adapt to the new data.
    2) The main one-cycle over `epochs` epochs for every group.

    Stops: a non-finite training loss ends the run with stop_reason "nan" (`nan_step`,
    `nan_lr`); Ctrl-C ends it with "interrupted". Either way the history up to then is kept
    and nothing is raised. On cuda the losses stay on the device and are read every
    `sync_every` steps (default 10; 1 elsewhere), so a NaN may be noticed a few steps late.

    `on_step(step, lr, loss)` is called as losses are read (loss None for the non-finite
    one); `on_epoch(record)` after each epoch. With `checkpoint` (a folder), checkpoint.pt is
    replaced atomically after every completed epoch; `resume` (that file) continues from the
    epoch after it and, on CPU, ends bit-identical to an uninterrupted run. `config` (the
    resolved experiment, plain data) is stored in the checkpoint so that a resume can be
    checked against the run it continues. `seed` seeds every RNG at the start of a fresh run
    (not on resume, where the saved states are restored). `reduce` averages a tensor across
    processes (data-parallel runs).

    Ctrl-C with a checkpoint puts the model back to the last checkpoint's weights, the point
    `resume` continues from, and `final` is the last evaluation up to it: the weights and
    `final` then describe the same model. Interrupted before the first checkpoint, `final`
    is empty (every value None).
    """
    return OneCycleTrainer(
        model,
        train_data,
        val_data,
        optimizer,
        loss_fn,
        lr_max,
        epochs=epochs,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        moms=moms,
        anneal=anneal,
        freeze_epochs=freeze_epochs,
        grad_accum=grad_accum,
        precision=precision,
        clip_grad_norm=clip_grad_norm,
        eval_every=eval_every,
        train_bn=train_bn,
        metrics=metrics,
        device=device,
        seed=seed,
        on_step=on_step,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
        resume=resume,
        config=config,
        reduce=reduce,
        sync_every=sync_every,
    ).run()


def _check_checkpoint_folder(checkpoint: str | Path | None, resume: str | Path | None) -> None:
    """A new run must not replace another run's checkpoint (only a resume continues one)."""
    if checkpoint is None:
        return
    existing = Path(checkpoint) / CHECKPOINT_NAME
    if not existing.exists():
        return
    if resume is not None:
        given = Path(resume)
        given = given / CHECKPOINT_NAME if given.is_dir() else given
        if given.resolve() == existing.resolve():
            return
    raise ConfigError(
        f"checkpoint: {checkpoint} already holds another run's {CHECKPOINT_NAME}, which this "
        f"run would replace. Give an empty folder, or resume={str(existing)!r} to continue "
        "that run."
    )


class OneCycleTrainer:
    """One run of `fit_one_cycle`: its settings and progress as attributes, a method per part.

    Build it with `fit_one_cycle`'s arguments (which see), then `run()` once. Building
    checks the settings, and restores a checkpoint (`resume`) or seeds every RNG (`seed`).
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Iterable[Any],
        val_data: Iterable[Any] | None,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., torch.Tensor],
        lr_max: float | Sequence[float] | str,
        *,
        epochs: int = 5,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e5,
        moms: Sequence[float] = (0.95, 0.85, 0.95),
        anneal: str = "cos",
        freeze_epochs: int = 0,
        grad_accum: int = 1,
        precision: str = "fp32",
        clip_grad_norm: float | None = None,
        eval_every: str | int = "epoch",
        train_bn: bool = True,
        metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
        device: torch.device | str | None = None,
        seed: int | None = 0,
        on_step: Callable[[int, float, float | None], None] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
        config: dict[str, Any] | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sync_every: int | None = None,
    ) -> None:
        # fit_one_cycle's arguments, checked, then kept as the attributes the methods share.
        self.started = time.perf_counter()
        check_reiterable(train_data, "train_data", counted=True)
        check_reiterable(val_data, "val_data")
        _check_checkpoint_folder(checkpoint, resume)
        self.device = loop_device(model, device, optimizer)
        n_groups = len(optimizer.param_groups)
        self.rates = parse_lr_max(lr_max, n_groups)
        _check_settings(
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            n_groups=n_groups,
            grad_accum=grad_accum,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            moms=moms,
            anneal=anneal,
            precision=precision,
            clip_grad_norm=clip_grad_norm,
            eval_every=eval_every,
        )
        # Plain Python numbers from here on (numpy's pass the checks; OneCycleLR wants int).
        epochs, freeze_epochs, grad_accum = int(epochs), int(freeze_epochs), int(grad_accum)
        pct_start, div_factor = float(pct_start), float(div_factor)
        final_div_factor = float(final_div_factor)
        if eval_every != "epoch":
            eval_every = int(eval_every)
        self.n_batches = len(train_data)  # type: ignore[arg-type]
        if self.n_batches == 0:
            raise ConfigError("the training data yields no batches.")
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.optimizer, self.loss_fn = optimizer, loss_fn
        self.schedule = {
            "pct_start": pct_start,
            "div_factor": div_factor,
            "final_div_factor": final_div_factor,
            "moms": moms,
            "anneal": anneal,
        }
        self.grad_accum, self.precision, self.eval_every = grad_accum, precision, eval_every
        self.metrics = dict(metrics or {})
        self.seed, self.on_step, self.on_epoch = seed, on_step, on_epoch
        self.checkpoint, self.config, self.reduce = checkpoint, config, reduce
        self.steps_per_epoch = steps_per_epoch(self.n_batches, grad_accum)
        self.loop: StepLoop[tuple[int, float, float | None]] = StepLoop(
            model,
            optimizer,
            loss_fn,
            precision=precision,
            clip_grad_norm=clip_grad_norm,
            device=self.device,
            sync_every=sync_every,
            reduce=reduce,
        )
        self.scaler = self.loop.scaler
        self.mom_key = momentum_key(optimizer)
        self.total_epochs = freeze_epochs + epochs
        self.phases = [_Phase("main", freeze_epochs, epochs, self.rates)]
        if freeze_epochs:
            self.phases.insert(0, _Phase("frozen", 0, freeze_epochs, self.rates[-1:]))
        self.settings = {
            "lr_max": self.rates,
            "epochs": epochs,
            "freeze_epochs": freeze_epochs,
            **{**self.schedule, "moms": list(moms)},
            "grad_accum": grad_accum,
            "steps_per_epoch": self.steps_per_epoch,
            "groups": n_groups,
        }
        self.stop_reason = "completed"
        self.nan_step: int | None = None
        self.nan_lr: float | None = None
        self._restore_or_seed(resume, seed)
        self.trained_norms = norm_parameters(model, optimizer) if train_bn and freeze_epochs else []

    def _restore_or_seed(self, resume: str | Path | None, seed: int | None) -> None:
        """Progress from the checkpoint `resume` names (weights, scaler, RNGs, data order),
        or a fresh start with every RNG seeded."""
        self.progress = _Progress(
            history={"step": [], "lr": [], "momentum": [] if self.mom_key else None, "loss": []}
        )
        self.saved: dict[str, Any] | None = None  # the checkpoint, until its phase starts
        self.last_checkpoint: Path | None = None  # the file Ctrl-C rolls the model back to
        if resume is not None:
            saved = self.saved = load_checkpoint(resume)
            self.last_checkpoint = Path(resume)
            check_resume(saved["settings"], self.settings, resume)
            self.model.load_state_dict(saved["model"])
            if self.scaler is not None and saved["scaler"] is not None:
                self.scaler.load_state_dict(saved["scaler"])
            self.progress = _Progress(**saved["progress"])
            set_rng_state(native_rng(saved["rng"]))
            if hasattr(self.train_data, "set_epoch") and saved["data_epoch"] is not None:
                self.train_data.set_epoch(saved["data_epoch"])
        elif seed is not None:
            seed_everything(seed)
        self.elapsed_before = self.progress.elapsed_s
        self.history = self.progress.history

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train every phase (or what is left of them after `resume`); the result."""
        model, optimizer, progress = self.model, self.optimizer, self.progress
        was_training = model.training
        try:
            model.train()
            for phase in self.phases:
                if progress.epochs_done >= phase.end_epoch:
                    continue  # finished before the checkpoint we resume from
                with self._frozen(phase):
                    scheduler = self._start_phase(phase)
                    for epoch in range(
                        max(phase.first_epoch, progress.epochs_done), phase.end_epoch
                    ):
                        if self._run_epoch(epoch, phase, scheduler):
                            self.stop_reason = "nan"
                            break
                if self.stop_reason != "completed":
                    break
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            self._flush(quiet=True)  # steps finished before Ctrl-C still belong in the history
        finally:
            model.train(was_training)
            optimizer.zero_grad(set_to_none=True)
        return self._result()

    def _frozen(self, phase: _Phase) -> contextlib.AbstractContextManager[None]:
        """During the frozen phase, no gradients to any group but the head (and norms)."""
        if phase.is_frozen:
            return frozen(self.optimizer, self.trained_norms)
        return contextlib.nullcontext()

    def _view(self, phase: _Phase) -> contextlib.AbstractContextManager[None]:
        """During the frozen phase, the optimizer and the scheduler see the head's group only."""
        if phase.is_frozen:
            return last_group_only(self.optimizer, self.trained_norms)
        return contextlib.nullcontext()

    def _start_phase(self, phase: _Phase) -> OneCycleLR:
        """The phase's schedule; on resume, optimizer and schedule as the checkpoint left them."""
        saved = self.saved
        if saved is not None and saved["phase"] != phase.name:
            # The checkpoint closed the previous phase: its optimizer state carries over, as
            # in an uninterrupted run, and this phase's schedule starts afresh.
            self.optimizer.load_state_dict(saved["optimizer"])
            saved = self.saved = None
        with self._view(phase):
            scheduler = one_cycle_scheduler(
                self.optimizer, phase.lr_max, phase.epochs * self.steps_per_epoch, **self.schedule
            )
        if saved is not None:
            # Building the scheduler reset every rate and momentum: the saved ones are the truth.
            self.optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            self.saved = None
        return scheduler

    def _run_epoch(self, epoch: int, phase: _Phase, scheduler: OneCycleLR) -> bool:
        """One pass over the training data; True when a NaN loss stops the run."""
        epoch_started = time.perf_counter()
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        first = len(self.history["loss"])
        batches = iter(self.train_data)
        eval_every, pending = self.eval_every, self.loop.pending
        for s in range(self.steps_per_epoch):
            micro_batches = min(self.grad_accum, self.n_batches - s * self.grad_accum)
            self._train_step(batches, micro_batches, phase, scheduler)
            if pending.due() and self._flush():
                return True
            if eval_every != "epoch" and self.progress.step % eval_every == 0:
                if self._flush():
                    return True
                self._evaluate_now(epoch)
        if self._flush():
            return True
        last_epoch = epoch + 1 == self.total_epochs
        if eval_every == "epoch" or (last_epoch and self.progress.step % eval_every != 0):
            self._evaluate_now(epoch)
        self._end_epoch(epoch, phase, scheduler, first, epoch_started)
        return False

    def _train_step(
        self, batches: Iterator[Any], micro_batches: int, phase: _Phase, scheduler: OneCycleLR
    ) -> None:
        progress, optimizer = self.progress, self.optimizer
        try:
            loss = self.loop.backward(batches, micro_batches)
        except StopIteration:
            raise RunFailed(
                f"the training data yielded fewer batches than its length ({self.n_batches})."
            ) from None
        head = optimizer.param_groups[-1]
        lr = float(head["lr"])
        if not phase.is_frozen and lr > progress.peak_lr:
            progress.peak_lr = lr
            progress.group_lrs_at_peak = [float(g["lr"]) for g in optimizer.param_groups]
        momentum = _momentum(head, self.mom_key)
        with self._view(phase):
            self.loop.step()
            scheduler.step()
        progress.step += 1
        self.loop.record((progress.step, lr, momentum), loss)

    def _flush(self, quiet: bool = False) -> bool:
        """Read the pending step losses in one transfer; True once one is not finite.

        `quiet` (after Ctrl-C): record them without telling `on_step`.
        """
        pending = self.loop.pending
        finite, not_finite = pending.read_after_interrupt() if quiet else pending.read()
        tell = self.on_step if not quiet else None
        history = self.history
        for (step, lr, momentum), loss in finite:
            history["step"].append(step)
            history["lr"].append(lr)
            if history["momentum"] is not None:
                history["momentum"].append(momentum)
            history["loss"].append(loss)
            if tell is not None:
                tell(step, lr, loss)
        if not_finite is None:
            return False
        (self.nan_step, self.nan_lr, _), _ = not_finite
        if tell is not None:
            tell(self.nan_step, self.nan_lr, None)
        return True

    def _evaluate_now(self, epoch: int) -> None:
        if self.val_data is None:
            return
        values = self._validate()
        self.progress.evals.append({"step": self.progress.step, "epoch": epoch + 1, **values})

    def _validate(self) -> dict[str, float]:
        return evaluate(
            self.model,
            self.val_data,
            self.loss_fn,
            self.metrics,
            precision=self.precision,
            device=self.device,
            reduce=self.reduce,
        )

    def _end_epoch(
        self, epoch: int, phase: _Phase, scheduler: OneCycleLR, first: int, epoch_started: float
    ) -> None:
        """The epoch's record (losses from index `first` on), the checkpoint, `on_epoch`."""
        progress = self.progress
        latest = progress.evals[-1] if progress.evals else {}
        if latest.get("epoch") != epoch + 1:
            latest = {}  # no evaluation fell in this epoch
        losses = self.history["loss"][first:]
        record = {
            "epoch": epoch + 1,
            "phase": phase.name,
            "train_loss": sum(losses) / len(losses),
            "val_loss": latest.get("val_loss"),
            **{name: latest.get(name) for name in self.metrics},
            "seconds": round(time.perf_counter() - epoch_started, 3),
        }
        progress.epochs.append(record)
        progress.epochs_done = epoch + 1
        if self.checkpoint is not None:
            self._save(phase, scheduler)
        if self.on_epoch is not None:
            self.on_epoch(record)

    def _save(self, phase: _Phase, scheduler: OneCycleLR) -> None:
        progress = self.progress
        progress.elapsed_s = round(self.elapsed_before + time.perf_counter() - self.started, 3)
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": progress.epochs_done,
            "phase": phase.name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "progress": asdict(progress),
            "rng": portable_rng(rng_state()),
            "data_epoch": getattr(self.train_data, "epoch", None),
            "settings": self.settings,
            "config": self.config,
        }
        self.last_checkpoint = save_checkpoint(self.checkpoint, state)

    def _result(self) -> TrainResult:
        evals, epochs = self.progress.evals, self.progress.epochs
        if self.stop_reason == "interrupted" and self.checkpoint is not None:
            # The weights of a half-finished epoch are no use to anyone: go back to the ones
            # the checkpoint holds (those `--resume` continues from) and report their
            # evaluation.
            kept_step = kept_epoch = 0
            if self.last_checkpoint is not None:
                state = load_checkpoint(self.last_checkpoint)
                self.model.load_state_dict(state["model"])
                kept_step, kept_epoch = state["progress"]["step"], state["epoch"]
            evals = [e for e in evals if e["step"] <= kept_step]
            # Ctrl-C while an epoch's checkpoint was written: that epoch's record describes
            # weights that were not kept.
            epochs = [e for e in epochs if e["epoch"] <= kept_epoch]
            # With eval_every in steps the last evaluation may predate the checkpoint: then
            # evaluate the weights kept, so `final` describes model.pt (one process only: a
            # lone collective after Ctrl-C could hang the others).
            stale = not evals or evals[-1]["step"] != kept_step
            if kept_step and stale and self.val_data is not None and self.reduce is None:
                evals.append({"step": kept_step, "epoch": state["epoch"], **self._validate()})
        final_eval = evals[-1] if evals else {}
        rates = self.rates
        return TrainResult(
            lr_max=rates[0] if len(set(rates)) == 1 else rates,
            epochs=epochs,
            final={name: final_eval.get(name) for name in ("val_loss", *self.metrics)},
            history=self.history,
            stop_reason=self.stop_reason,
            seed=self.seed,
            device=str(self.device),
            elapsed_s=round(self.elapsed_before + time.perf_counter() - self.started, 3),
            group_names=[str(g.get("name", i)) for i, g in enumerate(self.optimizer.param_groups)],
            group_lrs_at_peak=self.progress.group_lrs_at_peak,
            evals=evals,
            nan_step=self.nan_step,
            nan_lr=self.nan_lr,
        )
