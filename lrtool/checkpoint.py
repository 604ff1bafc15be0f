"""Training checkpoints: checkpoint.pt written atomically, read back safely, checked on resume.

`fit_one_cycle` writes one after every completed epoch; `resume` continues from it. The RNG
states go in as tensors (`portable_rng`) so that `torch.load(weights_only=True)` reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .history import write_torch_atomic
from .models import read_torch_file

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write `folder/checkpoint.pt` atomically: a Ctrl-C mid-write keeps the previous one."""
    return write_torch_atomic(Path(folder) / CHECKPOINT_NAME, state)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint.pt written by `fit_one_cycle` (tensors and plain data only)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(
            f"resume: checkpoint {path} does not exist. --resume takes the folder of a train "
            f"run stopped after at least one completed epoch, or its {CHECKPOINT_NAME}."
        )
    state = read_torch_file(
        path,
        "--resume",
        "checkpoint",
        f"Give the folder of an interrupted train run, or its {CHECKPOINT_NAME}.",
    )
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"resume: {path} is not an lrtool training checkpoint (format {CHECKPOINT_FORMAT})."
        )
    return state


def portable_rng(state: dict[str, Any]) -> dict[str, Any]:
    """numpy's state holds an ndarray, which torch.load(weights_only=True) refuses: a tensor."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    return {
        **state,
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }


def native_rng(state: dict[str, Any]) -> dict[str, Any]:
    """`portable_rng` undone: numpy's key back to the ndarray `np.random.set_state` takes."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    return {**state, "numpy": (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)}


def check_resume(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """The schedule must be the one the checkpoint was cut from, or resuming means nothing."""
    labels = {
        "lr_max": "the peak rate of each group (train.lr_max)",
        "groups": "the number of parameter groups",
        "steps_per_epoch": "optimizer steps per epoch (batches / train.grad_accum)",
    }
    for key, value in current.items():
        if saved.get(key) != value:
            what = labels.get(key, f"train.{key}")
            raise ConfigError(
                f"resume: {path} was written with {what} = {saved.get(key)!r}, this run has "
                f"{value!r}. Resume with the settings of the interrupted run, or start afresh."
            )
