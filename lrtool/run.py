"""Runs of a whole experiment: build it, hand the objects to the engine, gather the results.

This is the layer between the CLI and the engine: it knows Experiments, but neither parses
options nor draws anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .build import Built
from .config import Experiment, resolved
from .errors import ConfigError
from .finder import find_lr
from .history import FindResult
from .probe import checked_build
from .suggest import consensus
from .train import TrainResult

# Above this max/min ratio of the seeds' suggestions, the suggestion is called unstable.
UNSTABLE_SPREAD = 3.0


def parse_seeds(text: str | None, default: int) -> list[int]:
    """`--seeds 3` means seeds 0, 1, 2 (offset by the experiment's seed); `0,3,7` means those."""
    if text is None:
        return [default]
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            seeds = [default + i for i in range(count)]
    except ValueError:
        raise ConfigError(
            f"--seeds expects a count (3) or a comma-separated list (0,3,7), got {text!r}."
        ) from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {text!r}.")
    return seeds


def sweep_middle(exp: Experiment) -> float:
    """The geometric middle of the sweep: the stand-in rate when there is no suggestion."""
    return (exp.find.start_lr * exp.find.end_lr) ** 0.5


def find_settings(exp: Experiment) -> dict[str, Any]:
    """The `find:` section as keyword arguments for `find_lr`."""
    return exp.find.model_dump()


def find_built(
    built: Built,
    on_step: Callable[[int, float, float], None] | None = None,
    **overrides: Any,
) -> FindResult:
    """Run the finder on built components with the experiment's `find:` settings."""
    exp = built.experiment
    settings = {**find_settings(exp), **overrides}
    result = find_lr(
        built.model,
        built.train_data,
        built.optimizer,
        built.loss_fn,
        val_data=built.val_data,
        device=built.device,
        seed=exp.seed,
        on_step=on_step,
        reduce=built.extras.get("reduce"),
        **settings,
    )
    result.config = resolved(exp)
    result.world_size = built.world_size
    result.effective_batch_size = exp.data.batch_size * built.world_size * exp.find.grad_accum
    return result


def run_find(
    exp: Experiment,
    seeds: list[int] | None = None,
    progress: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> FindResult:
    """One sweep per seed; with several, the suggestion is their consensus.

    `progress(label)` is a context manager yielding the `on_step` callback of one sweep (the
    CLI passes a rich progress bar); it is entered once per seed.
    """
    results: list[FindResult] = []
    for seed in seeds or [exp.seed]:
        run_exp = exp.model_copy(update={"seed": seed})
        built = checked_build(run_exp)
        label = f"find (seed {seed})" if len(seeds or []) > 1 else "find"
        with progress(label) if progress else nullcontext() as on_step:
            result = find_built(built, on_step)
        results.append(result)
        if result.stop_reason == "interrupted":
            break
    if len(results) == 1 and len(seeds or []) <= 1:
        return results[0]
    return combine_seeds(results, exp)


def median_curve(results: list[FindResult]) -> dict[str, list[float]]:
    """Per-step median across seeds, up to the step where the first seed stopped.

    All seeds sweep the same rates, so step i has the same lr in every history.
    """
    steps = min(r.steps for r in results)
    return {
        "lr": results[0].lr[:steps],
        "loss": [statistics.median(r.loss[i] for r in results) for i in range(steps)],
        "smoothed_loss": [
            statistics.median(r.smoothed_loss[i] for r in results) for i in range(steps)
        ],
    }


def combine_seeds(results: list[FindResult], exp: Experiment) -> FindResult:
    method = results[0].suggestion_method
    consensus_lr, spread = consensus([r.suggested_lr for r in results])
    suggestions = {
        name: consensus([r.suggestions.get(name) for r in results])[0]
        for name in results[0].suggestions
    }
    warnings = []
    if consensus_lr is None:
        warnings.append("no seed gave a suggestion: " + (results[0].warning or ""))
    elif spread is not None and spread > UNSTABLE_SPREAD:
        warnings.append(
            f"the suggestion is unstable across seeds: the largest is {spread:.1f}x the smallest "
            f"(above {UNSTABLE_SPREAD:g}x). Try more steps (find.num_steps), a larger batch "
            "(data.batch_size) or the validation loss (find.val_loss: true)."
        )
    interrupted = any(r.stop_reason == "interrupted" for r in results)
    combined = FindResult(
        suggested_lr=consensus_lr,
        suggestion_method=method,
        suggestions=suggestions,
        history=median_curve(results),
        stop_reason="interrupted" if interrupted else results[0].stop_reason,
        steps=min(r.steps for r in results),
        seed=exp.seed,
        device=results[0].device,
        elapsed_s=round(sum(r.elapsed_s for r in results), 3),
        warning=" ".join(warnings) or None,
        config=resolved(exp),
        world_size=results[0].world_size,
        effective_batch_size=results[0].effective_batch_size,
    )
    combined.seeds = [
        {
            "seed": r.seed,
            "suggested_lr": r.suggested_lr,
            "suggestions": r.suggestions,
            "stop_reason": r.stop_reason,
            "steps": r.steps,
            "history": r.history,
        }
        for r in results
    ]
    combined.consensus_lr = consensus_lr
    combined.spread = spread
    return combined


def train_settings(exp: Experiment) -> dict[str, Any]:
    """The `train:` section as keyword arguments for `fit_one_cycle` (lr_max apart)."""
    settings = exp.train.model_dump()
    settings.pop("lr_max")
    return settings


def train_built(
    built: Built,
    lr_max: float | list[float] | str,
    *,
    evaluate: bool = True,
    **overrides: Any,
) -> TrainResult:
    """One-cycle training of built components with the experiment's `train:` settings."""
    from .train import fit_one_cycle

    exp = built.experiment
    settings = {**train_settings(exp), **overrides}
    result = fit_one_cycle(
        built.model,
        built.train_data,
        built.val_data if evaluate else None,
        built.optimizer,
        built.loss_fn,
        lr_max,
        metrics=built.metrics,
        device=built.device,
        seed=exp.seed,
        reduce=built.extras.get("reduce"),
        **settings,
    )
    result.config = resolved(exp)
    result.world_size = built.world_size
    result.effective_batch_size = (
        exp.data.batch_size * built.world_size * settings.get("grad_accum", 1)
    )
    return result
