"""The benchmark's run cache: one small JSON file per run, so a rerun trains only what is new.

A run is identified by the SHA-256 of the canonical JSON of its key: the task's experiment (as
written in `tasks.py`, not the resolved one, so a field added to the schema with a default
does not throw the cache away), the seed, the kind of run, the learning rate rounded to 6
significant digits (the rate the run actually trains at), anything else the kind depends on,
and CACHE_VERSION. Bump CACHE_VERSION when a change to lrtool changes what a cached run
would give (a default of `train:` or `find:`, the trainer, the data path).

Files live at `<folder>/<task>/<kind>-<hash>.json` and hold {"key": ..., "result": ...}.
They are written to a temporary file and renamed over (os.replace), so Ctrl-C or a killed
worker never leaves half a file; a file that cannot be read counts as missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..history import publish

CACHE_VERSION = 1
DEFAULT_CACHE = ".bench-cache"

KINDS = ("train", "find", "verify")


def rate_key(lr: float) -> float:
    """A learning rate rounded to 6 significant digits: how rates are keyed and trained."""
    return float(f"{float(lr):.6g}")


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is stored as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_key(
    experiment: dict[str, Any],
    seed: int,
    kind: str,
    lr: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What identifies one run (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "version": CACHE_VERSION,
        "kind": kind,
        "experiment": experiment,
        "seed": seed,
        "lr": None if lr is None else rate_key(lr),
        "extra": extra or {},
    }


class Cache:
    """Run results on disk, one JSON file per run."""

    def __init__(self, folder: str | Path = DEFAULT_CACHE) -> None:
        self.folder = Path(folder)

    def path(self, task: str, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(canonical(key).encode()).hexdigest()
        return self.folder / task / f"{key['kind']}-{digest[:32]}.json"

    def get(self, task: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The cached result of the run, or None when it has not been run (or is unreadable)."""
        try:
            stored = json.loads(self.path(task, key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        # The file's own key must match: a truncated hash can collide, however unlikely.
        if not isinstance(stored, dict) or canonical(stored.get("key")) != canonical(key):
            return None
        return stored.get("result")

    def put(self, task: str, key: dict[str, Any], result: dict[str, Any]) -> Path:
        """Store a result atomically: a temporary file in the same folder, then os.replace."""
        path = self.path(task, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": key, "result": finite_or_none(result)}, allow_nan=False)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            publish(tmp, path)  # with the umask's mode: a team can share the cache
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
