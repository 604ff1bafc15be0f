"""Runs of a whole experiment: build it, hand the objects to the engine, gather the results.

This is the layer between the CLI and the engine: it knows Experiments, but neither parses
options nor draws anything.
"""

from __future__ import annotations

import numbers
import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike

from .build import Built
from .config import MAX_SEED, Experiment, resolved
from .errors import ConfigError, listed
from .finder import find_lr
from .history import LOCK_NAME, RUN_FILES, FindResult
from .probe import checked_build
from .results import TrainResult
from .suggest import MIN_POINTS, centered_curve, consensus
from .train import CHECKPOINT_NAME, load_checkpoint

# Above this max/min ratio of the seeds' suggestions, the suggestion is called unstable.
UNSTABLE_SPREAD = 3.0


# Range tests one `--seeds N` may ask for: each is a sweep, so more is a typo, not a plan.
MAX_SEED_COUNT = 10_000


def parse_seeds(text: str | None, default: int) -> list[int]:
    """`--seeds 3` means seeds 0, 1, 2 (offset by the experiment's seed); `0,3,7` means those."""
    if text is None:
        return [default]
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",")]  # "0,,2" is a typo: int("") refuses
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            # Checked before a list of `count` seeds exists (4 billion would fill the memory).
            if count > MAX_SEED_COUNT:
                raise ConfigError(
                    f"seeds (--seeds): {count:,} range tests is more than the {MAX_SEED_COUNT:,} "
                    "lrtool runs in one command; ask for fewer."
                )
            if default + count - 1 > MAX_SEED:
                raise ConfigError(
                    f"seeds (--seeds): {count:,} seeds from the experiment's seed {default:,} "
                    f"would run past {MAX_SEED:,}, the largest seed; ask for at most "
                    f"{MAX_SEED - default + 1:,}, or list the seeds (0,3,7)."
                )
            seeds = [default + i for i in range(count)]
    except ValueError:
        raise ConfigError(
            f"seeds (--seeds) expects a count (3) or a comma-separated list (0,3,7), got {text!r}."
        ) from None
    return check_seeds(seeds, repr(text))


def check_seeds(seeds: Any, given: str | None = None) -> list[int]:
    """Seeds as a list of distinct whole numbers in the experiment's seed range, or a
    ConfigError: what `--seeds` allows, for a list given in Python too."""
    given = given or repr(seeds)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ConfigError(f"seeds: expected a non-empty list of whole numbers, got {given}.")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"seeds: every seed must be a whole number, got {given}.")
    seeds = [int(s) for s in seeds]  # numpy's integers too
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds (--seeds) lists a seed twice: {given}.")
    outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if outside:
        raise ConfigError(
            f"seeds (--seeds): every seed must be from 0 to {MAX_SEED:,} (the experiment's seed "
            f"range), got {outside[0]} in {given}."
        )
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
        reduce=built.reduce,
        **settings,
    )
    result.config = resolved(exp)
    result.world_size = built.world_size
    result.effective_batch_size = built.batch_size * built.world_size * exp.find.grad_accum
    return result


def run_find(
    exp: Experiment,
    seeds: list[int] | None = None,
    progress: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> FindResult:
    """One sweep per seed; with several, the suggestion is their consensus.

    `progress(label)` is a context manager yielding the `on_step` callback of one sweep (the
    CLI passes a rich progress bar); it is entered once per seed.

    Ctrl-C keeps what finished: the result has stop reason "interrupted", every finished seed
    with its history, and a consensus over the finished seeds only. A Ctrl-C before any sweep
    recorded a step is raised again (there is nothing to keep).
    """
    seeds = seeds or [exp.seed]
    finished: list[FindResult] = []
    cut: FindResult | None = None  # the seed Ctrl-C stopped midway, if it recorded steps
    interrupted = False
    try:
        for seed in seeds:
            built = checked_build(exp.model_copy(update={"seed": seed}), training=False)
            label = f"find (seed {seed})" if len(seeds) > 1 else "find"
            with progress(label) if progress else nullcontext() as on_step:
                result = find_built(built, on_step)
            if result.stop_reason == "interrupted":
                cut, interrupted = result, True
                break
            finished.append(result)
    except KeyboardInterrupt:  # between sweeps: building a model, opening a progress bar
        interrupted = True
    if len(seeds) == 1:
        if cut is None and not finished:
            raise KeyboardInterrupt
        return cut or finished[0]
    if not finished and cut is None:
        raise KeyboardInterrupt
    return combine_seeds(finished, exp, cut=cut, interrupted=interrupted, requested=len(seeds))


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


def _curve_end(finished: list[FindResult]) -> str:
    """The median curve stops where the shortest sweep did: that sweep's stop reason (a
    diverged one before a completed one of the same length)."""
    shortest = min(finished, key=lambda r: (len(r.history["lr"]), r.stop_reason == "completed"))
    return shortest.stop_reason


def combine_seeds(
    finished: list[FindResult],
    exp: Experiment,
    *,
    cut: FindResult | None = None,
    interrupted: bool = False,
    requested: int | None = None,
) -> FindResult:
    """The consensus of the seeds that finished; `cut` (a sweep Ctrl-C stopped) is listed in
    `seeds` with its partial history but counts for neither the consensus nor the curve."""
    requested = requested or len(finished) + (cut is not None)
    first = finished[0] if finished else cut
    assert first is not None, "combine_seeds needs at least one result"
    consensus_lr, spread = consensus([r.suggested_lr for r in finished])
    suggestions = {
        name: consensus([r.suggestions.get(name) for r in finished])[0]
        for name in first.suggestions
    }
    warnings = []
    if interrupted and finished:
        warnings.append(
            f"interrupted: {len(finished)} of {requested} seeds finished; the consensus and "
            "the curve are theirs."
        )
    elif interrupted and cut is not None:
        warnings.append(
            f"interrupted before any of the {requested} seeds finished: no consensus; the "
            f"curve is seed {cut.seed}'s sweep, cut after {cut.steps} steps."
        )
    if consensus_lr is None and finished:
        warnings.append("no seed gave a suggestion: " + (finished[0].warning or ""))
    elif spread is not None and spread > UNSTABLE_SPREAD:
        warnings.append(
            f"the suggestion is unstable across seeds: the largest is {spread:.1f}x the smallest "
            f"(above {UNSTABLE_SPREAD:g}x). Try more steps (find.num_steps), a larger batch "
            "(data.batch_size) or the validation loss (find.val_loss: true)."
        )
    if consensus_lr is not None:
        # What a seed's own sweep warned of (still falling at end_lr, read from a cliff) is
        # as true of the consensus it joined.
        warned = [r.warning for r in finished if r.warning]
        if warned:
            texts = " / ".join(dict.fromkeys(warned))
            warnings.append(f"{len(warned)} of {len(finished)} seeds warned: {texts}")
    went_on = [r for r in finished if r.extended_to is not None]
    if went_on:
        warnings.append(
            f"{len(went_on)} of {len(finished)} seeds stayed flat up to find.end_lr and went on "
            f"(to {max(r.extended_to for r in went_on):.3g} at most); each seed's own history "
            "is in seeds, the median curve stops where the shortest sweep did."
        )
    # The median curve of the finished seeds; a cut seed's steps would shorten it to its own.
    curve = median_curve(finished) if finished else dict(first.history)
    everyone = [*finished, *([cut] if cut is not None else [])]
    combined = FindResult(
        suggested_lr=consensus_lr,
        suggestion_method=first.suggestion_method,
        suggestions=suggestions,
        history=curve,
        stop_reason="interrupted" if interrupted else _curve_end(finished or [first]),
        steps=len(curve["lr"]),
        seed=exp.seed,
        device=first.device,
        elapsed_s=round(sum(r.elapsed_s for r in everyone), 3),
        warning=" ".join(warnings) or None,
        config=resolved(exp),
        world_size=first.world_size,
        effective_batch_size=first.effective_batch_size,
    )
    combined.seeds = [
        {
            "seed": r.seed,
            "suggested_lr": r.suggested_lr,
            "suggestions": r.suggestions,
            "stop_reason": r.stop_reason,
            "steps": r.steps,
            "extended_to": r.extended_to,
            "history": r.history,
        }
        for r in everyone
    ]
    combined.extended_to = max((r.extended_to for r in went_on), default=None)
    combined.consensus_lr = consensus_lr
    combined.spread = spread
    combined.seeds_finished = len(finished)
    combined.seeds_requested = requested
    return combined


def train_settings(exp: Experiment) -> dict[str, Any]:
    """The `train:` section as keyword arguments for `fit_one_cycle` (lr_max apart)."""
    settings = exp.train.model_dump()
    for key in ("lr_max", "cycles", "group_ratio"):  # the workflow's, not one cycle's
        settings.pop(key)
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
    # A later cycle (lrtool.cycles) continues the RNGs (seed None) and the data's epochs.
    seed = settings.pop("seed", exp.seed)
    train_data = settings.pop("train_data", built.train_data)
    result = fit_one_cycle(
        built.model,
        train_data,
        built.val_data if evaluate else None,
        built.optimizer,
        built.loss_fn,
        lr_max,
        metrics=built.metrics,
        device=built.device,
        seed=seed,
        reduce=built.reduce,
        config=resolved(exp),
        **settings,
    )
    result.config = resolved(exp)
    result.world_size = built.world_size
    result.effective_batch_size = (
        built.batch_size * built.world_size * settings.get("grad_accum", 1)
    )
    return result


# --- resuming -----------------------------------------------------------------------------

# Keys a resumed run may change: they name or place the run, choose the hardware, or only
# decide what is evaluated and when (the finder does not run on resume); none changes what the
# weights become. train.lr_max is checked as the rates themselves, by the trainer.
RESUME_FREE_KEYS = ("name", "output_dir", "device", "find", "train.eval_every", "train.lr_max")
UNSET = "(unset)"
# Keys newer than some checkpoints: absent there means their default, which this run may have.
LATER_KEYS = {"train.cycles": 1, "train.group_ratio": 100.0}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: one entry per leaf (an empty mapping has none)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


# File paths an experiment names: the same file, however written, is no change.
PATH_KEYS = ("data.args.path", "data.args.root", "model.weights")


def _same_file(before: Any, after: Any) -> bool:
    if not (isinstance(before, str) and isinstance(after, str) and before and after):
        return False
    try:
        return Path(before).resolve() == Path(after).resolve()
    except (OSError, RuntimeError):
        return False


def resume_conflicts(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, checkpoint's value, this run's value) for every setting that differs,
    apart from RESUME_FREE_KEYS. A key only one side has shows UNSET on the other."""
    old, new = _flatten(saved), _flatten(current)
    conflicts = []
    for key in dict.fromkeys([*old, *new]):
        if any(key == free or key.startswith(free + ".") for free in RESUME_FREE_KEYS):
            continue
        before, after = old.get(key, UNSET), new.get(key, UNSET)
        if before == UNSET and key in LATER_KEYS and after == LATER_KEYS[key]:
            continue
        if key == "data.classes" and after in (None, UNSET):
            continue  # filled in from the data when the run was built; the data is compared
        if key in PATH_KEYS and _same_file(before, after):
            continue  # 0.2 recorded paths relative to the working folder, 0.3 absolute
        if before != after:
            conflicts.append((key, before, after))
    return conflicts


@dataclass
class Resume:
    """What `train --resume` continues: the checkpoint, its folder, and the run's rates."""

    folder: Path
    checkpoint: Path
    lr_max: float | list[float] | str  # the peaks to train at: the checkpoint's, or --lr-max
    experiment: Experiment  # this run's experiment, train.lr_max as the interrupted run had it


def resume_paths(path: str | Path) -> tuple[Path, Path]:
    """`--resume DIR` or `--resume DIR/checkpoint.pt`: (the run's folder, its checkpoint).

    A resumed run writes its results into that folder, so a checkpoint under another name is
    refused: it may sit among the user's own files (their config.yaml, model.pt), which the
    run would replace.
    """
    path = Path(path)
    if path.is_file() or path.suffix == ".pt":
        if path.name != CHECKPOINT_NAME:
            raise ConfigError(
                f"--resume: {path} is not named {CHECKPOINT_NAME}. A resumed run writes its "
                "results (train.json, config.yaml, model.pt, ...) beside the checkpoint, so "
                f"lrtool resumes only from an interrupted run's folder or its {CHECKPOINT_NAME}. "
                f"Copy the file as {CHECKPOINT_NAME} into a folder of its own and resume from "
                "that folder."
            )
        return path.parent, path
    if not path.exists():
        raise ConfigError(
            f"--resume: {path} does not exist. Give the interrupted run's folder (the one "
            f"holding its {CHECKPOINT_NAME}) or that {CHECKPOINT_NAME} itself."
        )
    return path, path / CHECKPOINT_NAME


# Why `--resume` refuses a run of several cycles, said the same from the file or the folder.
CYCLES_NOT_RESUMABLE = (
    "and a run of several cycles writes no checkpoint (each cycle's rate comes from a re-find "
    "on the model so far), so it cannot be resumed: start a fresh run without --resume (and "
    "another --out)."
)


def _several_cycles(folder: Path) -> bool:
    """The folder's config.yaml says train.cycles > 1 (False when it cannot say)."""
    import yaml

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        return int(config["train"]["cycles"]) > 1
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return False


def _lrtool_file(name: str) -> bool:
    """A name a train run's folder may hold: its own files, a re-find's, or a temporary file
    of the atomic writer (left by a killed process)."""
    return (
        name in RUN_FILES
        or (name.startswith("refind-") and name.endswith((".json", ".csv")))
        or (name.startswith(".") and name.endswith(".tmp"))
        or name == LOCK_NAME
        or name.endswith(".png")  # a chart the user saved beside the results
    )


def _without_rates(config: Any) -> Any:
    # config.yaml may name the rates as the run was started (auto, a slice) where the
    # checkpoint holds numbers: everything else must agree.
    if not isinstance(config, dict):
        return config
    train = {k: v for k, v in (config.get("train") or {}).items() if k != "lr_max"}
    return {**config, "train": train}


def check_resume_folder(folder: Path, saved_config: dict[str, Any] | None) -> None:
    """Refuse to resume into a folder that is not the interrupted run's: one holding files
    lrtool did not write, or a config.yaml other than the run's (the resume replaces it)."""
    # Folders inside are left alone by the resumed run (another run's --out, say): only
    # files could be replaced.
    foreign = sorted(p.name for p in folder.iterdir() if not (_lrtool_file(p.name) or p.is_dir()))
    if foreign:
        raise ConfigError(
            f"--resume: {folder} holds files an lrtool run did not write "
            f"({listed(foreign, 5)}); a resumed "
            "run writes its results into the checkpoint's folder and could replace them. "
            f"Resume from the interrupted run's own folder, or copy its {CHECKPOINT_NAME} into "
            "an empty folder and resume from there."
        )
    config = folder / "config.yaml"
    if not config.is_file():
        # lrtool writes config.yaml with every result file: without it, results beside the
        # checkpoint are not this run's (a killed run leaves the checkpoint alone).
        results = sorted(p.name for p in folder.iterdir() if p.name in RUN_FILES)
        results = [name for name in results if name != CHECKPOINT_NAME]
        if results:
            raise ConfigError(
                f"--resume: {folder} holds {listed(results, 5)} but no config.yaml, so they are "
                "not the interrupted run's files, and the resume would replace them. Resume "
                f"from the interrupted run's own folder, or copy its {CHECKPOINT_NAME} into an "
                "empty folder and resume from there."
            )
        return
    if saved_config is None:
        return
    try:
        written = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        written = None
    if _without_rates(written) != _without_rates(saved_config):
        raise ConfigError(
            f"--resume: {config} is not the configuration the checkpoint was written with, so "
            f"{folder} is not that run's folder (the resume would replace the file). Resume "
            f"from the interrupted run's own folder, or copy its {CHECKPOINT_NAME} into an "
            "empty folder and resume from there."
        )


def prepare_resume(exp: Experiment, path: str | Path, *, lr_max_given: bool) -> Resume:
    """Check that `exp` is the run the checkpoint was cut from; refuse (ConfigError, listing
    every differing key) anything a resume could not honour.

    The peak rates come from the checkpoint unless `lr_max_given` (a number: the trainer checks
    it matches); `auto` never runs the finder again, it was resolved when the run began.
    """
    folder, checkpoint = resume_paths(path)
    if not checkpoint.exists() and _several_cycles(folder):
        raise ConfigError(
            f"--resume: {folder} holds a run of several cycles (train.cycles in its "
            f"config.yaml), {CYCLES_NOT_RESUMABLE}"
        )
    state = load_checkpoint(checkpoint)
    saved_config = state.get("config")
    check_resume_folder(folder, saved_config)
    # Finished by the length the run was started with: a resume that forgot `--epochs 400`
    # is a settings conflict (listed below), not a finished run.
    train = (saved_config or {}).get("train") or {}
    total = exp.train.freeze_epochs + exp.train.epochs
    if isinstance(train.get("epochs"), int) and isinstance(train.get("freeze_epochs", 0), int):
        total = train.get("freeze_epochs", 0) + train["epochs"]
    if isinstance(state.get("epoch"), int) and state["epoch"] >= total:
        raise ConfigError(
            f"--resume: the run in {folder} finished (all {state['epoch']} epochs): there is "
            "nothing to resume, and its results (train.json, model.pt) stay as they are. To "
            "train longer, start a fresh run with more train.epochs and another --out."
        )
    if saved_config is not None:
        conflicts = resume_conflicts(saved_config, resolved(exp))
        if conflicts:
            listed = "\n".join(f"  • {key}: {old!r} → {new!r}" for key, old, new in conflicts)
            raise ConfigError(
                f"resume: {checkpoint} was written by a run with other settings; resuming it "
                f"with these would not continue that run (checkpoint → now):\n{listed}\n"
                "Resume with the interrupted run's settings (its config.yaml is in "
                f"{folder}), or start a fresh run without --resume."
            )
    rates = [float(r) for r in state["settings"]["lr_max"]]
    if lr_max_given and exp.train.lr_max != "auto":
        return Resume(folder, checkpoint, exp.train.lr_max, exp)
    # config.yaml then says what the run was started with (auto, a slice), not the rates.
    data = resolved(exp)
    data["train"]["lr_max"] = saved_config["train"]["lr_max"] if saved_config else rates
    resumed = Experiment.model_validate(data)
    resumed._folder = exp._folder  # import paths are still looked for beside the same file
    return Resume(folder, checkpoint, rates, resumed)


# --- the refind advice --------------------------------------------------------------------

# A re-find curve has risen for good once its zero-lag loss stays above 1.5x its lowest point
# so far; the rise starts after the last point within 10 % of the flat part's median level.
RISE_CONFIRM = 1.5
RISE_LIFT = 1.1


def refind_rise(lr: ArrayLike, loss: ArrayLike) -> float | None:
    """Where a re-find curve (flat on a trained model, then rising) starts to rise for good.

    Judged like the finder's default rule, on the raw loss smoothed without lag
    (`suggest.centered_curve`), in three steps:
    1) the final rise: the last stretch where the curve stays above RISE_CONFIRM x its running
       minimum (a bump in the noise that comes back down is not it);
    2) the flat level: the median of the curve before that stretch (the minimum of a noisy
       curve is an outlier, the median is not);
    3) the start: the point after the last one within RISE_LIFT of that level.
    None when the curve does not end risen, or has fewer than MIN_POINTS finite points.
    """
    lr = np.asarray(lr, dtype=float).reshape(-1)
    loss = np.asarray(loss, dtype=float).reshape(-1)
    usable = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    end = lr.size if usable.all() else int(np.argmin(usable))  # cut at the first NaN
    lr, loss = lr[:end], loss[:end]
    if lr.size < MIN_POINTS or np.any(np.diff(lr) <= 0):
        return None
    centred = centered_curve(np.log10(lr), loss)  # log(loss) when every loss is positive
    if np.all(loss > 0):
        confirm, lift = np.log(RISE_CONFIRM), np.log(RISE_LIFT)
    else:  # a loss of zero: compare the values themselves
        scale = float(np.median(np.abs(centred))) or 1.0
        confirm, lift = (RISE_CONFIRM - 1) * scale, (RISE_LIFT - 1) * scale
    risen = centred > np.minimum.accumulate(centred) + confirm  # 1)
    if not risen[-1]:
        return None
    rise = int(np.flatnonzero(~risen)[-1]) + 1
    level = float(np.median(centred[:rise]))  # 2)
    start = int(np.flatnonzero(centred[:rise] <= level + lift)[-1]) + 1  # 3)
    return float(lr[start])
