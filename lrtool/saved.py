"""Saved results as `plot` and `compare` see them, and what `--set` may still change there.

A find.json keeps the raw loss of every step, so the smoothing and the suggestion method can
be chosen again without running anything: `lrtool plot find.json --set find.suggest=valley`
or `--set find.smoothing=0.9`. Every other key says how the run was made; changing it needs a
new run.
"""

from __future__ import annotations

import math
from typing import Any

from .config import apply_overrides, validate
from .errors import ConfigError

REDRAW_KEYS = ("find.suggest", "find.smoothing")


def _dotted(raw: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in raw.items():
        path = f"{prefix}{key}"
        keys += _dotted(value, path + ".") if isinstance(value, dict) else [path]
    return keys


def redraw_settings(overrides: list[str] | None) -> dict[str, Any]:
    """The `find:` settings given by `--set` on plot/compare, validated as in a YAML file."""
    if not overrides:
        return {}
    raw = apply_overrides({}, overrides)
    keys = _dotted(raw)
    for key in keys:
        if key not in REDRAW_KEYS:
            raise ConfigError(
                f"--set {key}: a saved result is redrawn with another {' or '.join(REDRAW_KEYS)} "
                "only; the other keys say how the run was made, so change them in a new run "
                "(lrtool find/train EXP --set ...)."
            )
    exp = validate(raw, source="--set")
    return {key.split(".", 1)[1]: getattr(exp.find, key.split(".", 1)[1]) for key in keys}


def resuggested(data: dict[str, Any], settings: dict[str, Any], source: str) -> dict[str, Any]:
    """A saved find/refind result, re-smoothed and re-suggested with `settings`."""
    if not settings:
        return data
    if data.get("kind") == "verify" or "epochs" in data:
        raise ConfigError(
            f"--set {', '.join('find.' + k for k in settings)} redraws LR range tests "
            f"(find.json, refind.json); {source} is not one."
        )
    from .finder import smooth
    from .suggest import suggest_all

    history = dict(data["history"])
    suggestions = dict(data.get("suggestions") or {})
    if "smoothing" in settings:
        # A NaN loss is saved as null: smooth it as NaN (the curve ends there).
        losses = [math.nan if v is None else v for v in history["loss"]]
        history["smoothed_loss"] = smooth(losses, settings["smoothing"])
        suggestions = suggest_all(history["lr"], history["smoothed_loss"], history["loss"])
    method = settings.get("suggest", data.get("suggestion_method"))
    return {
        **data,
        "history": history,
        "suggestions": suggestions,
        "suggestion_method": method,
        "suggested_lr": suggestions.get(method),
    }
