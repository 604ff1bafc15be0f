"""Every result lrtool saves, in one place: the three types, their files, reading them back.

    FindResult    find.json / refind.json / refind-<k>.json, and their .csv (and config.yaml)
    TrainResult   train.json, train.csv, epochs.csv, model.pt (and config.yaml)
    VerifyResult  verify.json

Each is a dataclass whose `to_dict()` is its JSON. `save(folder, result, exp)` writes a
result's files, all through the one atomic writer (`write_atomic`); `read(path)` gives the
object back from its JSON. The types are defined beside the code that fills them (`history`,
`train`, `verify`) and gathered here, so that code keeps importing nothing above it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .history import (
    FindResult,
    history_kind,
    read_json,
    save_find,
    save_train,
    write_atomic,
    write_csv,
    write_json,
    write_text_atomic,
)
from .train import TrainResult
from .verify import Round, VerifyResult

Result = FindResult | TrainResult | VerifyResult

__all__ = [
    "FindResult",
    "Result",
    "TrainResult",
    "VerifyResult",
    "read",
    "save",
    "to_dict",
    "write_atomic",
    "write_csv",
    "write_json",
    "write_text_atomic",
]


def to_dict(result: Result) -> dict[str, Any]:
    """The result as its JSON file holds it."""
    return result.to_dict()


def save(
    folder: str | Path,
    result: Result,
    exp: Any = None,
    model: Any = None,
    *,
    stem: str | None = None,
) -> Path:
    """Write the result's files into `folder` (a refind is saved as refind.*); returns it.

    `exp` (the Experiment) adds config.yaml to a find or train; `model` adds model.pt to a
    train. `stem` names a find's files (default its kind: find or refind; the re-finds between
    cycles are refind-2, refind-3...).
    """
    folder = Path(folder)
    if isinstance(result, FindResult):
        if exp is None:
            raise ConfigError("save: a find result needs its experiment, for config.yaml.")
        return save_find(folder, result, exp, stem=stem or result.kind)
    if isinstance(result, TrainResult):
        if exp is None:
            raise ConfigError("save: a train result needs its experiment, for config.yaml.")
        return save_train(folder, result, exp, model)
    write_json(folder / "verify.json", result.to_dict())
    return folder


def read(path: str | Path) -> Result:
    """The result a saved find.json, refind.json, train.json or verify.json holds.

    Keys the type does not know (a newer lrtool's, or --json's "folder") are left out.
    """
    data = read_json(path)
    cls: type[Any] = {"find": FindResult, "train": TrainResult, "verify": VerifyResult}[
        history_kind(data)
    ]
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    if cls is VerifyResult:
        values["schedule"] = [Round(**r) for r in values.get("schedule") or []]
    try:
        return cls(**values)
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"{path} is not a whole {cls.__name__} ({err}).") from None
