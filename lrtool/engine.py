"""The step loop the finder and the one-cycle trainer share.

Both take built objects and run optimizer steps the same way: on the model's device (or the
one given), in the run's precision (an fp16 gradient scaler on cuda), gradient accumulation
and clipping through `runtime.forward_backward` / `runtime.optimizer_step`, the step's loss
left on the device and read with the others every `sync_every` steps, the first non-finite
one reported. What each does with a read loss (smoothing and divergence for the finder,
history and epochs for the trainer) stays with it. `evaluate` is the trainer's validation
pass, with the same device, precision and one-transfer read.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from .errors import ConfigError
from .runtime import (
    as_pair,
    autocast,
    forward_backward,
    grad_scaler,
    optimizer_step,
    read_floats,
    to_device,
)

Info = TypeVar("Info")


def check_reiterable(data: Any, what: str, *, counted: bool = False) -> None:
    """Data read more than once (the sweep cycles through it, each epoch goes over it again)
    cannot be a one-shot iterator: its second pass would be empty, and a run would stop or
    report None without a word. `counted`: the length is needed too (epochs, schedules)."""
    if data is None:
        return
    one_shot = isinstance(data, Iterator)
    if one_shot or (counted and not hasattr(data, "__len__")):
        kind = "a one-shot iterator (a generator?)" if one_shot else "without a length"
        raise ConfigError(
            f"{what} is {kind} ({type(data).__name__}): it is read more than once, "
            "each pass from the start. Give a list of batches, a DataLoader or lrtool's "
            "Batches."
        )


def loop_device(
    model: nn.Module,
    device: torch.device | str | None,
    optimizer: torch.optim.Optimizer | None = None,
) -> torch.device:
    """The device given, else the one the model's parameters are on (or, for a wrapper that
    holds none itself, the optimizer's)."""
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    if first is None and optimizer is not None:
        first = next((p for group in optimizer.param_groups for p in group["params"]), None)
    if first is None:
        raise ConfigError(
            "the model has no parameters and the optimizer none either: nothing to train. "
            "Give the optimizer the parameters of the model that forward uses, or device=."
        )
    return first.device


def default_sync_every(device: torch.device, sync_every: int | None) -> int:
    """Steps between loss reads: each read syncs the host with an accelerator, so on cuda
    ten losses are read at once; elsewhere reading costs nothing and every step is read."""
    return sync_every or (10 if device.type == "cuda" else 1)


class PendingLosses(Generic[Info]):
    """Step losses still on the device, each with what the caller wants back (step, rate...)."""

    def __init__(self, sync_every: int) -> None:
        self.sync_every = sync_every
        self._items: list[tuple[Info, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, info: Info, loss: torch.Tensor) -> None:
        self._items.append((info, loss))

    def due(self) -> bool:
        """True once `sync_every` losses wait: time to read them."""
        return len(self._items) >= self.sync_every

    def read(self) -> tuple[list[tuple[Info, float]], tuple[Info, float] | None]:
        """Read every pending loss in one transfer and forget them.

        Returns the finite losses in step order up to the first non-finite one, and that one
        (or None): steps after a NaN are not worth recording.
        """
        items, self._items = self._items, []
        if not items:
            return [], None
        finite: list[tuple[Info, float]] = []
        for (info, _), value in zip(items, read_floats([loss for _, loss in items]), strict=True):
            if not math.isfinite(value):
                return finite, (info, value)
            finite.append((info, value))
        return finite, None

    def read_after_interrupt(self) -> tuple[list[tuple[Info, float]], tuple[Info, float] | None]:
        """`read` after Ctrl-C: the steps finished before it still belong in the history, but
        a step cut mid-way may hold a half-computed value; then keep what came before it."""
        try:
            return self.read()
        except Exception:
            self._items = []
            return [], None


def _needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """LBFGS and its kind: `step(closure)` with no default."""
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


class StepLoop(Generic[Info]):
    """One optimizer step at a time, as the finder and the trainer both take them."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., torch.Tensor],
        *,
        precision: str = "fp32",
        clip_grad_norm: float | None = None,
        device: torch.device | str | None = None,
        sync_every: int | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if _needs_closure(optimizer):
            raise ConfigError(
                f"{type(optimizer).__name__} cannot be used with lrtool: its step needs a closure "
                "that re-evaluates the loss several times, while the range test and one-cycle "
                "training take one step per mini-batch. Use SGD, Adam or AdamW."
            )
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.precision, self.clip_grad_norm, self.reduce = precision, clip_grad_norm, reduce
        self.device = loop_device(model, device, optimizer)
        self.scaler = grad_scaler(precision, self.device)
        self.pending: PendingLosses[Info] = PendingLosses(
            default_sync_every(self.device, sync_every)
        )

    def backward(self, batches: Iterator[Any], micro_batches: int) -> torch.Tensor:
        """Fresh gradients over `micro_batches` batches; the mean loss, left on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        return forward_backward(
            self.model,
            batches,
            self.loss_fn,
            micro_batches,
            self.precision,
            self.device,
            self.scaler,
        )

    def step(self) -> None:
        """Clip (when asked) and step the optimizer, through the fp16 scaler if there is one."""
        optimizer_step(self.optimizer, self.scaler, self.clip_grad_norm)

    def record(self, info: Info, loss: torch.Tensor) -> None:
        """Keep the step's loss (averaged across processes when `reduce` is given) for the
        next read."""
        self.pending.add(info, self.reduce(loss) if self.reduce is not None else loss)


# --- evaluation ---------------------------------------------------------------------------


def samples_in(inputs: Any, targets: Any) -> int:
    """How many samples a batch holds, to weigh its mean loss: the targets' leading dimension
    (1 for a 0-d target: an unbatched sample, from a DataLoader with batch_size=None); for
    targets that are no tensor (a (value, weight) pair, a dict, a list of per-sample
    sequences), the inputs' leading dimension, else the targets' length."""
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0]) if targets.ndim else 1
    if isinstance(inputs, torch.Tensor) and inputs.ndim:
        return int(inputs.shape[0])
    return len(targets) if hasattr(targets, "__len__") else 1


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
    *,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float | None]:
    """One pass in eval mode: the mean loss (weighted by batch size) and each metric.

    Metrics return a per-batch sum, so each value is sum / samples. With `reduce` (a mean
    across processes) sums and counts are reduced before dividing, which gives the global
    mean. The values are read in one transfer at the end.
    """
    metrics = metrics or {}
    device = loop_device(model, device)
    # Sums in float64: a float32 sum of finite batch losses can overflow (a regression on
    # targets near 1e18) and report inf for a finite mean. MPS has no float64.
    wide = torch.float32 if device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), device=device, dtype=wide)
    sums = {name: torch.zeros((), device=device, dtype=wide) for name in metrics}
    count = 0
    was_training = model.training
    model.eval()
    try:
        for batch in data:
            x, y = as_pair(to_device(batch, device))
            size = samples_in(x, y)
            if size == 0:
                continue  # an empty shard (fewer validation samples than processes): 0/0
            with autocast(precision, device):
                output = model(x)
                loss = loss_fn(output, y)
            loss_sum += loss.to(wide) * size
            count += size
            if metrics and not isinstance(output, torch.Tensor):
                raise ConfigError(
                    f"metrics ({', '.join(metrics)}) take the model's output as one tensor, "
                    f"but the model returned a {type(output).__name__}: leave the metrics out, "
                    "or return the logits as a tensor."
                )
            for name, fn in metrics.items():
                sums[name] += fn(output.float(), y).to(wide)
    finally:
        model.train(was_training)
    total = torch.tensor(float(count), device=device, dtype=wide)
    if reduce is not None:
        loss_sum, total = reduce(loss_sum), reduce(total)
        sums = {name: reduce(value) for name, value in sums.items()}
    values = torch.stack([loss_sum, total, *sums.values()]).tolist()
    if values[1] == 0:
        return {"val_loss": None, **{name: None for name in metrics}}
    return {
        "val_loss": values[0] / values[1],
        **{name: v / values[1] for name, v in zip(metrics, values[2:], strict=True)},
    }
