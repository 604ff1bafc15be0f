"""The LR range test: raise the rate over mini-batches, record the loss, stop when it blows up.

Leslie Smith, "Cyclical Learning Rates for Training Neural Networks" (2015), as popularised by
fastai's `lr_find`. The model, the optimizer and every RNG are left exactly as they were.
"""

from __future__ import annotations

import copy
import math
import numbers
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .engine import StepLoop
from .errors import ConfigError
from .history import FindResult
from .runtime import as_pair, autocast, rng_state, set_rng_state, to_device
from .suggest import (  # noqa: F401  (smooth: re-exported, the public name of old)
    DEFAULT_METHOD,
    SUGGESTERS,
    Smoother,
    learned_nothing_visible,
    smooth,
    still_falling,
    suggest_all,
    view_curve,
    why_no_suggestion,
)

# Above this many bytes of weights and optimizer state, the snapshot goes to disk instead of
# doubling the model in memory.
SNAPSHOT_MEMORY_LIMIT = 512 * 1024**2


def sweep_rates(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The rate at each step: geometric (exp) or arithmetic (linear) from start to end."""
    rates_given = all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (start_lr, end_lr)
    )
    if not rates_given or not 0 < start_lr < end_lr < math.inf:
        raise ConfigError(
            f"find: start_lr and end_lr must be numbers with 0 < start_lr < end_lr, end_lr "
            f"finite (got {start_lr!r} and {end_lr!r})."
        )
    if not isinstance(num_steps, numbers.Integral) or isinstance(num_steps, bool):
        raise ConfigError(f"find.num_steps must be a whole number (got {num_steps!r}).")
    if num_steps < 2:
        raise ConfigError(f"find.num_steps must be at least 2 (got {num_steps}).")
    if mode == "exp":
        return np.geomspace(start_lr, end_lr, num_steps)
    if mode == "linear":
        return np.linspace(start_lr, end_lr, num_steps)
    raise ConfigError(f"find.mode must be exp or linear (got {mode!r}).")


class Snapshot:
    """A copy of the model's and the optimizer's state, restored bit for bit: the state dicts,
    the buffers a state dict leaves out (non-persistent ones), the gradients the parameters
    held, and each submodule's train/eval mode (a BatchNorm the user froze in eval stays so).

    Small states are cloned to host memory (never doubling accelerator memory); large ones are
    written to a temporary file.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, where: str = "auto"):
        self.model, self.optimizer = model, optimizer
        self.modes = [module.training for module in model.modules()]
        kept = model.state_dict()
        # Parameters the optimizer steps that the model does not hold (a wrapper that calls
        # another model): theirs too, or the sweep's steps would stay in them.
        own = {id(p) for p in model.parameters()}
        self.extra = [
            p for group in optimizer.param_groups for p in group["params"] if id(p) not in own
        ]
        state = {
            "model": kept,
            "optimizer": optimizer.state_dict(),
            "buffers": {n: b for n, b in model.named_buffers() if n not in kept},
            "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
            "extra": [p.detach() for p in self.extra],
            "extra_grads": [p.grad for p in self.extra],
        }
        size = sum(
            t.numel() * t.element_size() for t in _tensors(state) if isinstance(t, torch.Tensor)
        )
        self.on_disk = where == "disk" or (where == "auto" and size > SNAPSHOT_MEMORY_LIMIT)
        self.path: Path | None = None
        if self.on_disk:
            handle = tempfile.NamedTemporaryFile(
                prefix="lrtool-snapshot-", suffix=".pt", delete=False
            )
            handle.close()
            self.path = Path(handle.name)
            torch.save(state, self.path)
            self.state = None
        else:
            self.state = copy.deepcopy(_to_cpu(state))

    def restore(self) -> None:
        if self.path is not None:
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                # Only an optimizer of the user's whose state holds objects other than
                # tensors and plain values gets here; the file is the one __init__ wrote a
                # moment ago (mkstemp: private to this user), so a full load trusts nothing new.
                state = torch.load(self.path, map_location="cpu", weights_only=False)
        else:
            state = self.state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for name, value in state["buffers"].items():
                owner_name, _, leaf = name.rpartition(".")
                owner = self.model.get_submodule(owner_name)
                current = owner._buffers[leaf]
                if current is not None and current.shape == value.shape:
                    current.copy_(value)
                else:  # a cache the forward pass resized: put the old one back whole
                    where = current.device if current is not None else value.device
                    owner._buffers[leaf] = value.to(where, copy=True)
            for param, value in zip(self.extra, state["extra"], strict=True):
                param.copy_(value)
        for name, param in self.model.named_parameters():
            grad = state["grads"].get(name)
            param.grad = None if grad is None else grad.to(param.device, copy=True)
        for param, grad in zip(self.extra, state["extra_grads"], strict=True):
            param.grad = None if grad is None else grad.to(param.device, copy=True)
        for module, training in zip(self.model.modules(), self.modes, strict=True):
            module.training = training

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _tensors(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    else:
        yield obj


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def cycle(data: Iterable[Any]) -> Iterator[Any]:
    """Batches forever: a dataset with fewer batches than the sweep is replayed, reshuffled."""
    epoch = getattr(data, "epoch", 0)
    passes = 0
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty and passes:
            # An endless stream never gets here; a one-shot iterator does, once it ran out.
            raise ConfigError(
                "the training data ran out and yields nothing on a second pass (a one-shot "
                "iterator, such as a generator?): give a list of batches, a DataLoader or "
                "lrtool's Batches, or fewer find.num_steps."
            )
        if empty:
            raise ConfigError("the training data yields no batches.")
        passes += 1
        epoch += 1
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)


def _check_settings(
    *,
    smoothing: float,
    diverge_factor: float,
    extend_decades: float,
    val_batches: int,
    grad_accum: int,
    precision: str,
    clip_grad_norm: float | None,
) -> None:
    """What the schema refuses in a file, refused for a caller of find_lr too, in its keys."""

    def number(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    def whole(value: Any) -> bool:  # numpy's integers too
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    problems = []
    if not number(smoothing) or not 0 <= smoothing < 1:
        problems.append(f"find.smoothing must be at least 0 and below 1 (got {smoothing!r})")
    if not number(diverge_factor) or not diverge_factor > 1:
        problems.append(f"find.diverge_factor must be above 1 (got {diverge_factor!r})")
    if not number(extend_decades) or not 0 <= extend_decades < math.inf:
        problems.append(f"find.extend_decades must be 0 or more (got {extend_decades!r})")
    if not whole(val_batches) or val_batches < 1:
        problems.append(f"find.val_batches must be a whole number >= 1 (got {val_batches!r})")
    if not whole(grad_accum) or grad_accum < 1:
        problems.append(f"find.grad_accum must be a whole number >= 1 (got {grad_accum!r})")
    if precision not in ("fp32", "bf16", "fp16"):
        problems.append(f"find.precision must be fp32, bf16 or fp16 (got {precision!r})")
    if clip_grad_norm is not None and (not number(clip_grad_norm) or not clip_grad_norm > 0):
        problems.append(f"find.clip_grad_norm must be above 0 or None (got {clip_grad_norm!r})")
    if problems:
        raise ConfigError("; ".join(problems) + ".")


def _group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's rate relative to the last (the head); the sweep keeps these ratios."""
    rates = [g["lr"] for g in optimizer.param_groups]
    head = rates[-1]
    # An optimizer built with lr=0 (or none) holds no ratio: every group sweeps alike.
    return [r / head for r in rates] if head else [1.0] * len(rates)


# Long in its keyword arguments and their documentation; the body is setup, the step loop
# and the restore that must wrap it.
def find_lr(
    model: nn.Module,
    train_data: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    extend_decades: float = 3.0,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    suggest: str = DEFAULT_METHOD,
    val_data: Iterable[Any] | None = None,
    val_loss: bool = False,
    val_batches: int = 4,
    grad_accum: int = 1,
    precision: str = "fp32",
    clip_grad_norm: float | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    sync_every: int | None = None,
    snapshot: str = "auto",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
) -> FindResult:
    """Run an LR range test and return its history and suggestions.

    `train_data` yields (inputs, targets) batches (an lrtool `Batches`, a DataLoader, a list).
    The rate of every optimizer group is set at each step, keeping the groups' current ratios.
    On cuda the losses stay on the device and are read every `sync_every` steps (default 10),
    so the divergence test may stop up to `sync_every - 1` steps late; those extra steps are
    dropped from the history. Ctrl-C ends the sweep early with stop reason `interrupted`.
    `reduce` averages a loss across processes (data-parallel runs). An exponential sweep
    whose loss neither fell nor blew up by `end_lr` goes on at the same pace for up to
    `extend_decades` more decades, until it blows up (`extended_to` in the result).
    """
    if suggest not in SUGGESTERS:
        raise ConfigError(
            f"find.suggest: unknown method {suggest!r}; choose one of {', '.join(SUGGESTERS)}."
        )
    if val_loss and val_data is None:
        raise ConfigError("find.val_loss: true needs validation data.")
    _check_settings(
        smoothing=smoothing,
        diverge_factor=diverge_factor,
        extend_decades=extend_decades,
        val_batches=val_batches,
        grad_accum=grad_accum,
        precision=precision,
        clip_grad_norm=clip_grad_norm,
    )
    rates = sweep_rates(start_lr, end_lr, num_steps, mode)
    loop: StepLoop[float] = StepLoop(
        model,
        optimizer,
        loss_fn,
        precision=precision,
        clip_grad_norm=clip_grad_norm,
        device=device,
        sync_every=sync_every,
        reduce=reduce,
    )
    device = loop.device
    ratios = _group_ratios(optimizer)
    fixed_val = (
        [to_device(b, device) for _, b in zip(range(val_batches), val_data, strict=False)]
        if val_loss
        else []
    )
    if val_loss and not fixed_val:
        raise ConfigError(
            "find.val_loss: true, but the validation data yields no batches: the loss "
            "recorded would be 0 at every step. Give validation data, or val_loss: false."
        )

    saved = Snapshot(model, optimizer, snapshot)
    rngs = rng_state()
    # The data order is state too: put back where a set_epoch data source was (a DataLoader's
    # sampler or lrtool's Batches); an `epoch` of the user's own without set_epoch is theirs.
    data_epoch = getattr(train_data, "epoch", None) if hasattr(train_data, "set_epoch") else None
    curve = _Curve(smoothing, diverge_factor, on_step)
    stop_reason = "completed"
    started = time.perf_counter()

    batches = cycle(train_data)

    def sweep(planned: Sequence[float]) -> str | None:
        """Step through `planned` rates; the stop reason if the curve met one."""
        for step, lr in enumerate(planned):
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = float(lr) * ratio
            record = loop.backward(batches, grad_accum)
            loop.step()
            if val_loss:
                record = _fixed_loss(model, fixed_val, loss_fn, precision, device)
            loop.record(float(lr), record)
            if loop.pending.due() or step == len(planned) - 1:
                reason = curve.take(loop.pending.read())
                if reason:
                    return reason
        return None

    extended_to = None
    try:
        model.train()
        stop_reason = sweep(rates) or "completed"
        beyond = _beyond(rates, mode, extend_decades)
        if stop_reason == "completed" and beyond.size and _flat(curve.lrs, curve.losses):
            # Nothing to read yet: no fall, no blow-up. The model took every rate swept, so
            # the cliff lies higher; go on at the same pace until the loss blows up.
            stop_reason = sweep(beyond) or "completed"
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        curve.take(loop.pending.read_after_interrupt())
    finally:
        saved.restore()  # weights, buffers, gradients and every submodule's mode
        saved.close()
        set_rng_state(rngs)
        if data_epoch is not None:
            train_data.set_epoch(data_epoch)

    lrs, losses, smoothed = curve.lrs, curve.losses, curve.smoothed
    if lrs and lrs[-1] > float(rates[-1]) * (1 + 1e-9):  # went on past end_lr (even if cut)
        extended_to = lrs[-1]
    suggestions = suggest_all(lrs, smoothed, losses)
    suggested = suggestions.get(suggest)
    return FindResult(
        suggested_lr=suggested,
        suggestion_method=suggest,
        suggestions=suggestions,
        history={"lr": lrs, "loss": losses, "smoothed_loss": smoothed},
        stop_reason=stop_reason,
        steps=len(lrs),
        seed=seed,
        device=str(device),
        elapsed_s=round(time.perf_counter() - started, 3),
        warning=_warning(suggest, suggested, stop_reason, lrs, losses, end_lr, extended_to),
        extended_to=extended_to,
    )


EXTENSION_STEPS_FACTOR = 10


def _beyond(rates: np.ndarray, mode: str, decades: float) -> np.ndarray:
    """The rates past the end of an exponential sweep, at its pace, for `decades` decades."""
    if mode != "exp" or decades <= 0 or rates.size < 2:
        return np.array([])
    ratio = float(rates[-1] / rates[-2])
    # At most EXTENSION_STEPS_FACTOR x the steps the sweep planned (1000 at least): a sweep
    # over a sliver of a decade would otherwise plan millions.
    cap = max(EXTENSION_STEPS_FACTOR * rates.size, 1000)
    count = min(int(round(decades / math.log10(ratio))), cap)
    return rates[-1] * ratio ** np.arange(1, count + 1)


def _flat(lrs: list[float], losses: list[float]) -> bool:
    """Neither a clear fall nor a blow-up (nor a rise from the very start, whose rates lie
    below the sweep): the curve holds nothing a rule could read, and higher rates may."""
    view = view_curve(lrs, losses)
    if isinstance(view, str):
        return False
    return view.learned_at is None and view.cliff is None and not view.rose_at_once


def diverged(smoothed: float, best: float, first: float, factor: float) -> bool:
    """Has the sweep blown up? fastai's test: the smoothed loss above `factor` x its best.

    A ratio means nothing once the best is zero or negative (a loss with an offset, a
    log-likelihood that passes zero): any value is then above factor x best, and the sweep
    would stop at its first step. There the rise above the best must exceed (factor - 1) x
    the larger of |best| and how far the loss fell from its `first` smoothed value, which is
    the same test for a positive best in the first form.
    """
    if best > 0:
        return smoothed > factor * best
    scale = max(abs(best), first - best)
    return scale > 0 and smoothed - best > (factor - 1) * scale


class _Curve:
    """The sweep's curve so far: each loss read, smoothed, checked for divergence."""

    def __init__(
        self,
        smoothing: float,
        diverge_factor: float,
        on_step: Callable[[int, float, float], None] | None,
    ) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.smoother = Smoother(smoothing)
        self.diverge_factor, self.on_step = diverge_factor, on_step

    def take(
        self, read: tuple[list[tuple[float, float]], tuple[float, float] | None]
    ) -> str | None:
        """Record the losses read (`PendingLosses.read`); a stop reason if one is met."""
        finite, not_finite = read
        for lr, value in finite:
            self.lrs.append(lr)
            self.losses.append(value)
            self.smoothed.append(self.smoother.update(value))
            if self.on_step is not None:
                self.on_step(len(self.lrs), lr, self.smoothed[-1])
            if diverged(
                self.smoothed[-1], self.smoother.best, self.smoothed[0], self.diverge_factor
            ):
                return "diverged"
        return "nan" if not_finite is not None else None


def _warning(
    suggest: str,
    suggested: float | None,
    stop_reason: str,
    lrs: list[float],
    losses: list[float],
    end_lr: float | None = None,
    extended_to: float | None = None,
) -> str | None:
    """Why there is no suggestion, or why the one made may be too low; else None."""
    went_on = (
        f"the loss stayed flat up to find.end_lr {end_lr:.3g}, so the sweep went on to "
        f"{extended_to:.3g}; "
        if extended_to is not None and end_lr is not None
        else ""
    )
    if suggested is None and stop_reason == "nan" and lrs:
        # The NaN step is not in the history: the curve alone would read as one that never
        # blew up, and advise a higher end_lr.
        return went_on + (
            f"the loss became NaN or infinite just after rate {lrs[-1]:.3g}, before the curve "
            "showed a clear fall or rise to read a rate from. Sweep again with more steps "
            "(find.num_steps), from a lower find.start_lr, or in fp32 (find.precision: fp16 "
            "overflows near 65,504), or clip gradients (find.clip_grad_norm)."
        )
    if suggested is None:
        return went_on + (
            why_no_suggestion(lrs, losses)
            or (f"the {suggest} method found no sensible rate on this curve.")
        )
    if learned_nothing_visible(lrs, losses):
        return went_on + (
            "the loss never clearly fell before it blew up, so the curve has no minimum to "
            f"read; the {suggest} rate comes from where the loss doubled (robust_minimum: 1/30 "
            "of that rate) and is less certain than usual. Check it with `lrtool verify`, or "
            "sweep again with more steps (find.num_steps) or a larger batch (data.batch_size)."
        )
    if stop_reason == "completed" and still_falling(lrs, losses):
        return went_on + (
            f"the loss was still falling at end_lr {lrs[-1]:.2g}: the minimum may lie beyond "
            "the sweep, so the suggestion may be too low. Raise find.end_lr, or check the rate "
            "with `lrtool verify` (a loss that cannot blow up, such as l1 or smooth_l1, may "
            "fall past the best rate)."
        )
    return went_on.rstrip("; ") + "." if went_on else None


@torch.no_grad()
def _fixed_loss(
    model: nn.Module,
    batches: list[Any],
    loss_fn: Callable[..., torch.Tensor],
    precision: str,
    device: torch.device,
) -> torch.Tensor:
    """Mean loss on the same validation batches at every step (Smith's variant).

    Unlike `engine.evaluate`, the result stays on the device: reading it every step would
    sync the host with the accelerator at every step of the sweep.
    """
    model.eval()
    total = torch.zeros((), device=device)
    for batch in batches:
        x, y = as_pair(batch)
        with autocast(precision, device):
            total += loss_fn(model(x), y).float()
    model.train()
    return total / max(len(batches), 1)
