"""What a run executes on: the device, mixed precision, seeding and RNG state."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DeviceError


def resolve_device(spec: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device: {spec!r} was asked for but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}). Use device: auto or cpu (--device cpu)."
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device: {spec!r} was asked for but only {torch.cuda.device_count()} CUDA "
                "device(s) exist."
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device: {spec!r} was asked for but MPS is not available here.")
    return device


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast for bf16/fp16; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 on cuda needs loss scaling so small gradients do not underflow; bf16 does not."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG a run touches, so a find can leave them as it found them."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a tensor, or a tuple/list/dict of them, to `device` (no copy when already there)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def as_pair(batch: Any) -> tuple[Any, Any]:
    """A batch as (inputs, targets), or a ConfigError saying what came instead: a dict batch
    was unpacked into its keys, a triple failed to unpack, in the words of neither."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        got = f"a dict with keys {', '.join(map(repr, list(batch)[:6]))}"
    elif isinstance(batch, (tuple, list)):
        got = f"a {type(batch).__name__} of {len(batch)}"
    else:
        got = f"a {type(batch).__name__}"
    raise ConfigError(
        f"the data must yield (inputs, targets) pairs, one per batch; a batch came as {got}. "
        "Give it as pairs (a DataLoader whose collate_fn returns (inputs, targets), or a list "
        "[(b['x'], b['y']) for b in batches]); the inputs and the targets may each be a tuple "
        "or dict of tensors."
    )


def forward_backward(
    model: torch.nn.Module,
    batches: Iterator[Any],
    loss_fn: Any,
    micro_batches: int,
    precision: str,
    device: torch.device,
    scaler: torch.amp.GradScaler | None,
) -> torch.Tensor:
    """Forward and backward over `micro_batches` batches (gradient accumulation).

    Returns the mean loss, detached and left on the device (reading it would sync). The
    single-batch case does no extra tensor arithmetic: on small models every op shows.
    """
    total: torch.Tensor | None = None
    for _ in range(micro_batches):
        x, y = as_pair(to_device(next(batches), device))
        with autocast(precision, device):
            loss = loss_fn(model(x), y)
        if micro_batches > 1:
            loss = loss / micro_batches  # the mean over the step's batches, as one big batch
        (scaler.scale(loss) if scaler else loss).backward()
        part = loss.detach()
        total = part if total is None else total + part
    assert total is not None
    return total


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    clip_grad_norm: float | None,
) -> None:
    """Clip (after unscaling fp16 gradients), then step through the scaler if there is one."""
    if clip_grad_norm is not None:
        if scaler:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def read_floats(values: list[torch.Tensor]) -> list[float]:
    """Scalar tensors to floats in one transfer (one host sync on an accelerator)."""
    if len(values) == 1:
        return [values[0].item()]
    return torch.stack([v.float() for v in values]).tolist()
