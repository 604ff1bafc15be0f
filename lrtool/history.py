"""Result objects and their files: JSON and CSV, always written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"lrtool": __version__, "torch": torch.__version__}


@dataclass
class FindResult:
    """The outcome of one LR range test; `to_dict()` is find.json."""

    suggested_lr: float | None
    suggestion_method: str
    suggestions: dict[str, float | None]
    history: dict[str, list[float]]  # lr, loss, smoothed_loss: column arrays, one per step
    stop_reason: str
    steps: int
    seed: int | None
    device: str
    elapsed_s: float
    warning: str | None = None
    config: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    kind: str = "find"
    world_size: int = 1
    effective_batch_size: int | None = None
    # Multi-seed finds only (`--seeds`): each seed's outcome and history, and their consensus.
    seeds: list[dict[str, Any]] | None = None
    consensus_lr: float | None = None
    spread: float | None = None

    @property
    def lr(self) -> list[float]:
        return self.history["lr"]

    @property
    def loss(self) -> list[float]:
        return self.history["loss"]

    @property
    def smoothed_loss(self) -> list[float]:
        return self.history["smoothed_loss"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.seeds is None:
            for key in ("seeds", "consensus_lr", "spread"):
                data.pop(key)
        return data

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        h = self.history
        rows = [
            [i, lr, loss, sm]
            for i, (lr, loss, sm) in enumerate(
                zip(h["lr"], h["loss"], h["smoothed_loss"], strict=True)
            )
        ]
        return ["step", "lr", "loss", "smoothed_loss"], rows


# --- atomic files -------------------------------------------------------------------------


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: write null instead, so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    return write_text_atomic(path, to_json(data))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a saved find/train/verify JSON file, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"History file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}).") from None
    if not isinstance(data, dict) or ("history" not in data and data.get("kind") != "verify"):
        raise ConfigError(
            f"{path} is not an lrtool history (find.json, refind.json or train.json) nor a "
            "verify.json: it has no 'history' field."
        )
    return data


def history_kind(data: dict[str, Any]) -> str:
    """'find' (find and refind curves: loss against lr), 'train' (loss against step) or
    'verify' (a metric against candidate rates)."""
    if data.get("kind") == "verify":
        return "verify"
    if "epochs" in data:
        return "train"
    return "find"


def save_find(folder: str | Path, result: FindResult, exp: Any, stem: str = "find") -> Path:
    """Write `<stem>.json`, `<stem>.csv` and `config.yaml` into `folder`."""
    from .config import dump_yaml

    folder = Path(folder)
    write_json(folder / f"{stem}.json", result.to_dict())
    write_csv(folder / f"{stem}.csv", *result.csv_rows())
    write_text_atomic(folder / "config.yaml", dump_yaml(exp))
    return folder


def write_torch_atomic(path: str | Path, obj: Any) -> Path:
    """torch.save through a temp file in the same folder and a rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: the previous file stays whole
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_train(folder: str | Path, result: Any, exp: Any, model: Any = None) -> Path:
    """Write train.json, train.csv, epochs.csv, config.yaml and model.pt into `folder`."""
    from .config import dump_yaml

    folder = Path(folder)
    write_json(folder / "train.json", result.to_dict())
    write_csv(folder / "train.csv", *result.csv_rows())
    write_csv(folder / "epochs.csv", *result.epoch_rows())
    write_text_atomic(folder / "config.yaml", dump_yaml(exp))
    if model is not None:
        write_torch_atomic(folder / "model.pt", model.state_dict())
    return folder
