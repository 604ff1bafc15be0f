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

from .errors import ConfigError, DeviceError

# What the user can do about a broken launch environment (what every message below ends with).
LAUNCH_HINT = "Launch with torchrun, or unset WORLD_SIZE, RANK and LOCAL_RANK."


def _env_count(name: str) -> int | None:
    """A whole number >= 0 from the environment variable `name`; None when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"the environment variable {name} is {os.environ[name]!r}, but torchrun sets it to "
            f"a whole number (0, 1, ...). {LAUNCH_HINT}"
        )
    return value


def launch_settings() -> tuple[int, int]:
    """(world size, rank) from torchrun's environment, checked before any work or folder.

    Without torchrun (WORLD_SIZE unset or 1) it is (1, 0). A variable that is not a number,
    a rank outside the world, or a WORLD_SIZE > 1 without the rest of what torchrun sets
    (RANK, MASTER_ADDR, MASTER_PORT) is a ConfigError: the process group could only fail
    later, with torch's words.
    """
    world, rank = _env_count("WORLD_SIZE"), _env_count("RANK")
    _env_count("LOCAL_RANK")  # read by local_device: a bad one is refused here, up front
    if world == 0:
        raise ConfigError(f"the environment variable WORLD_SIZE is 0: at least 1. {LAUNCH_HINT}")
    if world is None or world == 1:
        if rank:
            raise ConfigError(
                f"the environment variable RANK is {rank}, but WORLD_SIZE is "
                f"{'unset' if world is None else 1}: a single process is rank 0. {LAUNCH_HINT}"
            )
        return 1, 0
    missing = [n for n in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
    if missing:
        raise ConfigError(
            f"the environment variable WORLD_SIZE is {world}, which asks for {world} processes, "
            f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set, as "
            f"torchrun sets them. {LAUNCH_HINT}"
        )
    assert rank is not None  # RANK is set: not missing
    if rank >= world:
        raise ConfigError(
            f"the environment variable RANK is {rank}, but WORLD_SIZE is {world}: ranks run "
            f"from 0 to {world - 1}. {LAUNCH_HINT}"
        )
    return world, rank


def launched() -> bool:
    """True when torchrun (or another launcher) started several processes."""
    return launch_settings()[0] > 1


def launched_rank() -> int:
    """This process's rank under torchrun, before the process group exists (0 without)."""
    return launch_settings()[1]


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
    local = _env_count("LOCAL_RANK") or 0
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
