"""Saved results as `plot` and `compare` see them, and what `--set` may still change there.

A find.json keeps the raw loss of every step, so the smoothing and the suggestion method can
be chosen again without running anything: `lrtool plot find.json --set find.suggest=valley`
or `--set find.smoothing=0.9`. Every other key says how the run was made; changing it needs a
new run.
"""

from __future__ import annotations

import math
import statistics
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

    method = settings.get("suggest", data.get("suggestion_method"))

    def redone(record: dict[str, Any]) -> dict[str, Any]:
        history = dict(record["history"])
        suggestions = dict(record.get("suggestions") or {})
        if "smoothing" in settings:
            # A NaN loss is saved as null: smooth it as NaN (the curve ends there).
            losses = [math.nan if v is None else v for v in history["loss"]]
            history["smoothed_loss"] = smooth(losses, settings["smoothing"])
            suggestions = suggest_all(history["lr"], history["smoothed_loss"], history["loss"])
        return {**record, "history": history, "suggestions": suggestions}

    if not data.get("seeds"):
        one = redone(data)
        return {**one, "suggestion_method": method, "suggested_lr": one["suggestions"].get(method)}
    # --seeds: each seed is re-suggested and the consensus taken again, as the run did; the
    # seed Ctrl-C cut short (stop_reason "interrupted") counts for none of it.
    from .suggest import consensus

    seeds = [
        rec if rec.get("stop_reason") == "interrupted" else redone(rec) for rec in data["seeds"]
    ]
    finished = [rec for rec in seeds if rec.get("stop_reason") != "interrupted"]
    for rec in finished:
        rec["suggested_lr"] = rec["suggestions"].get(method)
    names = dict.fromkeys(name for rec in finished for name in rec["suggestions"])
    suggestions = {
        name: consensus([rec["suggestions"].get(name) for rec in finished])[0] for name in names
    }
    consensus_lr, spread = consensus([rec["suggested_lr"] for rec in finished])
    history = dict(data["history"])
    if "smoothing" in settings and finished:
        # The drawn curve is the per-step median of the seeds' curves, as the run drew it.
        steps = min(len(rec["history"]["smoothed_loss"]) for rec in finished)
        history["smoothed_loss"] = [
            statistics.median(rec["history"]["smoothed_loss"][i] for rec in finished)
            for i in range(min(steps, len(history["smoothed_loss"])))
        ]
    return {
        **data,
        "seeds": seeds,
        "history": history,
        "suggestions": suggestions,
        "suggestion_method": method,
        "suggested_lr": consensus_lr,
        "consensus_lr": consensus_lr,
        "spread": spread,
    }
