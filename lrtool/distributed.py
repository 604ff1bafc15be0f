"""Data-parallel runs under `torchrun`: PyTorch's own process group and DistributedDataParallel.

Without torchrun's environment (WORLD_SIZE unset or 1) nothing here does anything: one process,
no process group. Under torchrun every rank builds the same model from the same seed, takes
its shard of the data, and averages its losses with the others, so the sweep, its early stop
and its suggestion are identical on every rank. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from .errors import DeviceError


def launched() -> bool:
    """True when torchrun (or another launcher) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(spec: str) -> torch.device:
    """Each rank one device: cuda:LOCAL_RANK when CUDA is asked for or available, else CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device: {spec!r} was asked for under torchrun, but there is no GPU.")
    if local >= torch.cuda.device_count():
        raise DeviceError(
            f"LOCAL_RANK {local} has no GPU: this node has {torch.cuda.device_count()}. "
            "Use --nproc-per-node at most the number of GPUs."
        )
    return torch.device("cuda", local)


def init(device_spec: str) -> torch.device | None:
    """Join torchrun's process group (nccl on cuda, gloo on cpu); None when not launched."""
    if not launched():
        return None
    device = local_device(device_spec)
    if not active():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (a sum for counts is mean x world size)."""
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def reducer() -> Callable[[torch.Tensor], torch.Tensor] | None:
    return reduce_mean if active() and world_size() > 1 else None


def wrap(model: nn.Module, device: torch.device, unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around the model, one device per rank."""
    if not active():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=unused_parameters
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP: what model.pt saves, so it loads without torchrun."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
