"""Workflows: what each command does, minus parsing the command line and drawing.

`lrtool find/train/verify` and their `--smoke` runs are these four functions called by
`cli.py`; a notebook calls them the same way:

    exp = lrtool.load_experiment("exp.yaml")
    run = lrtool.run_train(exp, lr_max="auto", refind=True, folder="runs/try")
    run.train.final, run.find.suggested_lr

They take a loaded Experiment, build it, hand the built objects to the engine (`finder`,
`train`, `verify`), save the files into `folder` when one is given (rank 0 only), and return
result objects. Progress reaches the caller through callbacks (the CLI passes rich progress
bars); nothing here prints or draws. Imports point down: cli -> workflows -> run/verify/smoke
-> finder/train.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import distributed, run, schedule
from .build import Built, build
from .config import Experiment, resolved, validate
from .config import load_experiment as _load_experiment
from .cycles import Plan, cycle_record, plan_cycles, train_cycles
from .errors import ConfigError, NoSuggestion, RunFailed
from .history import (
    FindResult,
    claimed,
    first_interrupt_only,
    fresh_folder,
    history_kind,
    writable_folder,
)
from .probe import check_training, checked_build, first_step
from .results import TrainResult, read_json, write_result
from .run import check_seeds, parse_seeds
from .smoke import SmokeFailed, temp_out
from .smoke import run_smoke as smoke_checks
from .train import CHECKPOINT_NAME, parse_lr_max
from .verify import (
    BRACKET_MIN_POINTS,
    VerifyResult,
    bracket,
    candidate_rates,
    parse_lrs,
    ranking_metric,
    verify_rates,
)

OnStep = Callable[..., None]
# (steps, label) -> a context manager yielding one sweep's on_step callback (or None).
SweepProgress = Callable[[int, str], AbstractContextManager[Any]]
# (steps per epoch, epochs) -> a context manager yielding (on_step, on_epoch) (or None).
TrainProgress = Callable[[int, int], AbstractContextManager[Any]]
Say = Callable[[str], None]

LrMax = float | str | Sequence[float] | None


def load_experiment(
    path: str | Path,
    overrides: dict[str, Any] | Sequence[str] | None = None,
) -> Experiment:
    """Read and validate an experiment file, like the CLI does.

    `overrides` is either a mapping of dotted keys to values ({"train.epochs": 3}, as the
    command-line flags give them) or `--set` strings (["train.epochs=3"], YAML values).
    """
    if not isinstance(path, (str, Path)):
        raise ConfigError(f"load_experiment takes the file's path, got {path!r:.80}.")
    if isinstance(overrides, str):
        overrides = [overrides]  # one `--set` string, not its characters
    if isinstance(overrides, dict):
        if not all(isinstance(key, str) for key in overrides):
            raise ConfigError(
                f"overrides: the keys are dotted names ('train.epochs'), got {list(overrides)!r}."
            )
        return _load_experiment(path, None, overrides, values_from=_override_name)
    overrides = list(overrides or [])
    if not all(isinstance(item, str) for item in overrides):
        raise ConfigError(
            "overrides: a mapping {'train.epochs': 3} or --set strings ['train.epochs=3'], "
            f"got {overrides!r:.120}."
        )
    return _load_experiment(path, overrides, None, overrides_source="overrides")


def _override_name(key: str) -> str:
    return f"overrides[{key!r}]"


def _sweep(progress: SweepProgress | None, steps: int, label: str) -> AbstractContextManager[Any]:
    return progress(steps, label) if progress is not None else nullcontext()


def _main_folder(folder: str | Path | None) -> Path | None:
    """Where this process writes: the folder on rank 0 (or without torchrun), else nowhere."""
    return Path(folder) if folder is not None and distributed.is_main() else None


# --- check ---------------------------------------------------------------------------------


def _experiment(exp: Any, caller: str) -> Experiment:
    """`exp` itself, or a ConfigError when a notebook passed something else (a path)."""
    if not isinstance(exp, Experiment):
        raise ConfigError(
            f"{caller} takes an Experiment, got {type(exp).__name__} {exp!r:.80}: load the "
            "file first, exp = load_experiment('exp.yaml')."
        )
    return exp


def _holds_its_folder(workflow: Callable[..., Any]) -> Callable[..., Any]:
    """Run `workflow` holding its folder's lock, as the CLI does for --out: another run (a
    second notebook, `lrtool find --out` in a terminal) given the same folder meanwhile is
    refused instead of replacing this one's files. The folder is checked first (`--out`'s
    checks); a resume holds the interrupted run's folder."""
    signature = inspect.signature(workflow)

    @functools.wraps(workflow)
    def holding(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind(*args, **kwargs).arguments
        _experiment(given.get("exp"), workflow.__name__)  # before any folder is made
        folder, resume = given.get("folder"), given.get("resume")
        if resume is not None:
            folder = run.resume_paths(resume)[0]
        elif folder is not None:
            _fresh_target(folder)
        target = _main_folder(folder)
        if target is not None and not target.is_dir():
            return workflow(*args, **kwargs)  # a resume from nowhere: it says so itself
        with claimed(target, "folder (--out)"):
            return workflow(*args, **kwargs)

    return holding


def _fresh_target(folder: str | Path | None) -> None:
    """The checks `--out` gets, for a folder given in Python: writable, and holding no other
    run's files (results are never overwritten), before any work. The CLI's own folder,
    locked by this process, passes."""
    target = _main_folder(folder)
    if target is not None:
        fresh_folder(target, "folder (--out)")


def run_check(exp: Experiment) -> tuple[Built, float]:
    """`lrtool check`: build everything, then one forward/backward pass; (built, first loss)."""
    built = build(_experiment(exp, "run_check"))
    loss = first_step(built)  # the probe with a backward; the first loss must be finite
    check_training(built)  # `check` refuses what `train` would
    return built, loss


# --- find ---------------------------------------------------------------------------------


@_holds_its_folder
def run_find(
    exp: Experiment,
    seeds: str | int | Sequence[int] | None = None,
    *,
    folder: str | Path | None = None,
    progress: SweepProgress | None = None,
) -> FindResult:
    """The LR range test: one sweep per seed, the suggestion their consensus.

    `seeds`: None (the experiment's seed), a count (3: seeds exp.seed, +1, +2), a list, or the
    `--seeds` text ("3", "0,3,7"). Saves find.json/find.csv/config.yaml into `folder` if given.
    A Ctrl-C keeps the finished seeds: the result's stop reason is then "interrupted".
    """
    exp = _experiment(exp, "run_find")
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = str(int(seeds))  # a count, numpy's too
    seed_list = (
        parse_seeds(seeds, exp.seed)
        if seeds is None or isinstance(seeds, str)
        else check_seeds(seeds)
    )
    with first_interrupt_only():
        # Called through the module: run.run_find is the seed loop and its consensus.
        result = run.run_find(
            exp,
            seed_list,
            progress=(lambda label: _sweep(progress, exp.find.num_steps, label)),
        )
        target = _main_folder(folder)
        if target is not None:
            write_result(target, result, exp)
    return result


# --- train --------------------------------------------------------------------------------


@dataclass
class TrainRun:
    """What `lrtool train` produced: the training, and the sweeps around it."""

    train: TrainResult
    folder: Path | None
    find: FindResult | None = None  # the sweep `lr_max: auto` ran first
    refind: FindResult | None = None  # the sweep --refind ran on the trained model
    resumable: bool = False  # a checkpoint.pt is in the folder
    # The re-finds before cycles 2..N (train.cycles), saved as refind-2.json, refind-3.json...
    cycle_refinds: list[FindResult] = field(default_factory=list)

    @property
    def stop_reason(self) -> str:
        return self.train.stop_reason

    def raise_for_stop(self) -> None:
        """Ctrl-C -> KeyboardInterrupt; a NaN loss -> RunFailed (exit 1); else nothing."""
        result = self.train
        if result.stop_reason == "interrupted":
            raise KeyboardInterrupt
        if result.stop_reason == "nan":
            raise RunFailed(
                f"the training loss became NaN/inf at step {result.nan_step} "
                f"(lr {result.nan_lr:.2e})"
                + (f"; the history up to then is in {self.folder}" if self.folder else "")
                + ". Lower --lr-max, or clip gradients (train.clip_grad_norm)."
            )


def with_lr_max(exp: Experiment, lr_max: LrMax) -> Experiment:
    """The experiment with `train.lr_max` replaced, validated like a value from the file."""
    data = resolved(exp)
    data["train"]["lr_max"] = list(lr_max) if isinstance(lr_max, (list, tuple)) else lr_max
    # validate, not model_validate: a bad rate is a ConfigError naming the key, as from a file.
    return validate(
        data,
        f"{exp.name} with lr_max={lr_max!r}",
        origins={("train", "lr_max"): "lr_max"},
        folder=exp._folder,
    )


def check_lr_max(exp: Experiment) -> None:
    """A fresh run needs a peak rate (a resumed one takes the checkpoint's)."""
    if exp.train.lr_max is None:
        raise ConfigError(
            "train needs a peak rate: --lr-max 3e-3 (or LOW:HIGH, :HIGH, auto), or "
            "train.lr_max in the experiment file."
        )


def resume_folder(path: str | Path) -> Path:
    """The folder `--resume PATH` continues in (PATH, or the folder of PATH/checkpoint.pt)."""
    return run.resume_paths(path)[0]


@_holds_its_folder
def run_train(
    exp: Experiment,
    lr_max: LrMax = None,
    *,
    folder: str | Path | None = None,
    refind: bool = False,
    resume: str | Path | None = None,
    sweep_progress: SweepProgress | None = None,
    train_progress: TrainProgress | None = None,
    say: Say | None = None,
) -> TrainRun:
    """One-cycle training at `lr_max` (default: the experiment's `train.lr_max`).

    `lr_max`: a number, per-group numbers, "LOW:HIGH", ":HIGH" or "auto" (run the finder first,
    train at its suggestion; NoSuggestion if it has none). `refind` runs the finder again on
    the trained model. `resume` is an interrupted run's folder (or its checkpoint.pt): the run
    continues there, at the checkpoint's rates; `folder` is then that folder. Files go into
    `folder` when one is given. A NaN loss or Ctrl-C is in the result
    (`raise_for_stop()` turns it into the CLI's error).

    `train.cycles` > 1 splits the epochs over that many one-cycle runs, a re-find before each
    after the first setting its peak (`lrtool.cycles`); each re-find is saved as
    refind-<k>.json. Such a run writes no checkpoint, so it cannot be resumed.
    """
    exp = _experiment(exp, "run_train")
    say = say or (lambda text: None)
    given = lr_max is not None
    if given:
        exp = with_lr_max(exp, lr_max)
    exp, rates, checkpoint, folder = _fresh_or_resumed(exp, resume, folder, given)
    folder = Path(folder) if folder is not None else None
    target = _main_folder(folder)
    built = checked_build(exp)
    short = short_schedule(built)
    if short:
        say(f"warning: {short}")
    rates = exp.train.lr_max if rates is None else rates
    first_find = None
    if rates == "auto":
        first_find = _auto_find(built, folder, target, sweep_progress)
        rates = first_find.suggested_lr
        say(f"--lr-max auto: training at {rates:.2e} ({first_find.suggestion_method})")
        if first_find.warning:
            say(f"find: {first_find.warning}")
    cycle_refinds: list[FindResult] = []
    if exp.train.cycles > 1:
        result, cycle_refinds = _train_cycles(built, rates, target, sweep_progress, train_progress)
        if result.stop_reason == "interrupted":
            # No checkpoint, so no weights are kept: `final` would describe none.
            result.final = dict.fromkeys(result.final)
    else:
        result = _train(built, rates, target, checkpoint, train_progress)
        _record_one_cycle(result, exp)
    if first_find is not None and result.cycles:
        result.cycles[0]["lr_from"] = "find"
    if len(result.cycles) > 1:
        refound = iter(cycle_refinds)  # one per cycle whose rate a re-find chose, in order
        for record in result.cycles:
            say(_cycle_line(record))
            if record["lr_from"] in ("refind_rise", "suggested_lr", "previous"):
                found = next(refound, None)
                if found is not None:
                    _say_refind(say, record, found)
    # Ctrl-C put the model back to the checkpoint's weights (those `final` describes); with
    # no checkpoint yet there are no weights worth keeping.
    resumable = folder is not None and (folder / CHECKPOINT_NAME).is_file()
    if target is not None:
        # A NaN loss leaves non-finite weights: no model.pt (checkpoint.pt keeps the last
        # good epoch's).
        keep_model = result.stop_reason == "completed" or (
            result.stop_reason == "interrupted" and resumable
        )
        write_result(target, result, exp, distributed.unwrap(built.model) if keep_model else None)
        if not keep_model:
            # A resumed run that hit NaN: the model.pt its interruption wrote holds other
            # weights than the train.json beside it now describes (checkpoint.pt keeps the
            # last good epoch's), so it goes, as a fresh run that hit NaN writes none.
            (target / "model.pt").unlink(missing_ok=True)
    refound = None
    if refind and result.stop_reason == "completed":
        with _sweep(sweep_progress, exp.find.num_steps, "refind") as on_step:
            refound = run.find_built(built, on_step)
        refound.kind = "refind"
        if target is not None:
            write_result(target, refound, exp)  # as refind.*
    return TrainRun(result, folder, first_find, refound, resumable, cycle_refinds)


# Fewer optimizer steps than this and a one-cycle never reaches its peak: 1 step runs at the
# final rate (lr_max / div_factor / final_div_factor), 2 and 3 at most 75 % and 97 % of it.
MIN_CYCLE_STEPS = 4


def short_schedule(built: Built) -> str | None:
    """A warning when each one-cycle is too short to reach train.lr_max, else None."""
    exp = built.experiment
    per_epoch = schedule.steps_per_epoch(len(built.train_data), exp.train.grad_accum)
    train = exp.train
    # Each one-cycle: a cycle of plan_cycles, or, in a single cycle, the frozen phase and the
    # rest (fit_one_cycle schedules them apart).
    if train.cycles > 1:
        lengths = [p.epochs for p in plan_cycles(train.epochs, train.cycles, train.freeze_epochs)]
    else:
        lengths = [e for e in (train.freeze_epochs, train.epochs) if e]
    steps = per_epoch * min(lengths)
    if steps >= MIN_CYCLE_STEPS:
        return None
    return (
        f"the one-cycle schedule has {steps} optimizer step(s) ({per_epoch} per epoch), too "
        f"few to reach train.lr_max: it needs {MIN_CYCLE_STEPS} or more (a single step trains "
        "at lr_max / div_factor / final_div_factor). Train more epochs, or lower "
        "data.batch_size or train.grad_accum."
    )


def _fresh_or_resumed(
    exp: Experiment, resume: str | Path | None, folder: str | Path | None, lr_max_given: bool
) -> tuple[Experiment, Any, Any, str | Path | None]:
    """The run's experiment, rates (None: the experiment's), checkpoint and folder.

    A fresh run keeps what it was given and needs a peak rate; `resume` takes all four from
    the interrupted run's checkpoint.
    """
    if resume is None:
        check_lr_max(exp)
        return exp, None, None, folder
    if exp.train.cycles > 1:
        raise ConfigError(
            f"--resume: train.cycles is {exp.train.cycles}, {run.CYCLES_NOT_RESUMABLE}"
        )
    resume_folder, _ = run.resume_paths(resume)
    resumed = run.prepare_resume(exp, resume, lr_max_given=lr_max_given)
    writable_folder(resume_folder, "--resume")  # it exists (it holds the checkpoint)
    return resumed.experiment, resumed.lr_max, resumed.checkpoint, resume_folder


def _auto_find(
    built: Built, folder: Path | None, target: Path | None, sweep_progress: SweepProgress | None
) -> FindResult:
    """--lr-max auto: the finder's run, saved as find.*; NoSuggestion when it has none."""
    exp = built.experiment
    with _sweep(sweep_progress, exp.find.num_steps, "find") as on_step:
        found = run.find_built(built, on_step)
    if target is not None:
        write_result(target, found, exp)
    if found.stop_reason == "interrupted":
        raise KeyboardInterrupt
    if found.suggested_lr is None:
        where = f"Its curve is in {folder / 'find.json'}; pick" if folder else "Pick"
        raise NoSuggestion(
            f"--lr-max auto: the finder could not suggest a rate ({found.warning}). "
            f"{where} a rate and pass --lr-max."
        )
    return found


def _train_cycles(
    built: Built,
    rates: Any,
    target: Path | None,
    sweep_progress: SweepProgress | None,
    train_progress: TrainProgress | None,
) -> tuple[TrainResult, list[FindResult]]:
    """train.cycles > 1: each re-find gets a progress bar and is saved as refind-<k>.json."""
    exp = built.experiment

    def refind(cycle: int) -> FindResult:
        with _sweep(sweep_progress, exp.find.num_steps, f"refind {cycle}") as on_step:
            found = run.find_built(built, on_step)
        found.kind = "refind"
        if target is not None:
            write_result(target, found, exp, stem=f"refind-{cycle}")
        return found

    def progress(plan: Plan) -> AbstractContextManager[Any]:
        if train_progress is None:
            return nullcontext()
        return train_progress(steps_per_epoch(built), plan.epochs)

    return train_cycles(built, rates, refind=refind, progress=progress)


def _say_refind(say: Say, record: dict[str, Any], found: FindResult) -> None:
    """What the re-find behind a cycle's rate warned of, when the rate rests on it."""
    cycle = record["cycle"]
    if record["lr_from"] == "previous":
        say(
            f"refind {cycle}: no rate within what it swept ({found.stop_reason} after "
            f"{found.steps} steps); the cycle kept the previous cycle's rate"
        )
    elif record["lr_from"] == "suggested_lr" and found.warning:
        say(f"refind {cycle}: {found.warning}")


def _cycle_line(record: dict[str, Any]) -> str:
    rates = record["lr_max"]
    shown = (
        ":".join(f"{r:.2e}" for r in (rates[0], rates[-1]))
        if isinstance(rates, list)
        else (f"{rates:.2e}")
    )
    frozen = ", head only" if record["frozen"] else ""
    return (
        f"cycle {record['cycle']}: {record['epochs']} epoch(s){frozen} at {shown} "
        f"({record['lr_from']})"
    )


def _record_one_cycle(result: TrainResult, exp: Experiment) -> None:
    """A plain run is one cycle over every epoch: train.json's `cycles` holds its record."""
    whole = Plan(1, exp.train.freeze_epochs + exp.train.epochs)
    trained = None if result.stop_reason == "completed" else len(result.epochs)
    result.cycles = [cycle_record(whole, result.lr_max, result.final, epochs_trained=trained)]


def steps_per_epoch(built: Built) -> int:
    """Optimizer steps in one epoch of this run (the trainer counts them the same way)."""
    return schedule.steps_per_epoch(len(built.train_data), built.experiment.train.grad_accum)


def _train(
    built: Built,
    rates: Any,
    target: Path | None,
    checkpoint: Path | None,
    progress: TrainProgress | None,
) -> TrainResult:
    exp = built.experiment
    total = exp.train.epochs + exp.train.freeze_epochs
    bar = progress(steps_per_epoch(built), total) if progress is not None else nullcontext()
    with bar as callbacks:
        on_step, on_epoch = callbacks if callbacks is not None else (None, None)
        return run.train_built(
            built,
            rates,
            checkpoint=target,
            resume=checkpoint,
            on_step=on_step,
            on_epoch=on_epoch,
        )


# --- verify -------------------------------------------------------------------------------

# (rates, metric, centre, centre_lr), told before the candidates train.
OnCandidates = Callable[[list[float], str, str, float | None], None]


@_holds_its_folder
def run_verify(
    exp: Experiment,
    *,
    lrs: str | Sequence[float] | None = None,
    from_find: str | Path | None = None,
    folder: str | Path | None = None,
    sweep_progress: SweepProgress | None = None,
    on_candidates: OnCandidates | None = None,
    on_run: Callable[[int, float, float], None] | None = None,
    on_round: Callable[[int, list[dict[str, Any]], str], None] | None = None,
) -> VerifyResult:
    """Screen candidate rates on short runs, then judge the best two at the real length.

    The candidates: `lrs` (a list, or "1e-3,3e-3"); else around the suggestion of a saved
    find.json (`from_find`) or of a finder run now (its find.json is saved too); without a
    suggestion, around the curve's lowest loss. Saves verify.json into `folder` if given.
    Callbacks: `on_candidates(rates, metric, centre, centre_lr)` before any training,
    `on_run(round, lr, epochs)` before each run, `on_round(round, rows, metric)` after each
    round.
    """
    exp = _experiment(exp, "run_verify")
    if lrs is not None and from_find is not None:
        raise ConfigError("--lrs and --from both choose the candidates: give one.")
    target = _main_folder(folder)
    rates, suggested, centre, centre_lr = verify_candidates(
        exp, lrs, from_find, target, sweep_progress
    )
    metric = ranking_metric(exp)[0]
    if on_candidates is not None:
        on_candidates(rates, metric, centre, centre_lr)

    def round_done(number: int, rows: list[dict[str, Any]]) -> None:
        if on_round is not None:
            on_round(number, rows, metric)

    result = verify_rates(exp, rates, suggested_lr=suggested, on_round=round_done, on_run=on_run)
    result.centre, result.centre_lr = centre, centre_lr
    result.config = resolved(exp)
    if target is not None:
        write_result(target, result, exp)
    return result


def _rate_text(rate: Any) -> str:
    """A rate from a Python list as `--lrs` text: every digit of a number (numpy's too), and
    anything else as it prints, for parse_lrs to name."""
    if isinstance(rate, numbers.Real) and not isinstance(rate, bool):
        return repr(float(rate))
    return str(rate)


def given_rates(lrs: str | Sequence[float]) -> list[float]:
    """`lrs` (`--lrs`) as a list of at least two distinct positive rates, smallest first."""
    if not isinstance(lrs, (str, Sequence)):
        raise ConfigError(
            f"lrs (--lrs): at least two rates, as a list [1e-3, 1e-2] or text "
            f"'1e-3,1e-2'; got {lrs!r}."
        )
    # A list goes through the same checks as the flag's text (repr keeps every digit).
    text = lrs if isinstance(lrs, str) else ",".join(_rate_text(r) for r in lrs)
    return parse_lrs(text)


def _same_model_and_data(exp: Experiment, found: dict[str, Any], path: str | Path) -> None:
    """A range test of another model or other data says nothing about this experiment's
    rate: refuse it. Model and data are their names, arguments (a CSV's path, a folder's root,
    the layer sizes) and pretrained weights; other settings, the batch size say, are the
    user's to judge."""
    config = found.get("config")
    if not isinstance(config, dict):
        return  # an older or hand-made find.json: nothing to compare
    ours = resolved(exp)
    base = exp._folder or Path.cwd()
    differ = []
    for section, keys in (("model", ("name", "args", "weights")), ("data", ("name", "args"))):
        theirs = config.get(section)
        if not isinstance(theirs, dict):
            continue
        for key in keys:
            if key not in theirs:
                continue
            there, here = theirs[key], ours[section].get(key)
            if (section, key) == ("data", "args") and isinstance(there, dict):
                there, here = _data_args(there, base), _data_args(here or {}, base)
            elif (section, key) == ("model", "weights"):
                there, here = _where(there, base), _where(here, base)
            if there != here:
                differ.append(
                    f"{section}.{key} {_short(theirs[key])} there, {_short(ours[section].get(key))}"
                    " here"
                )
    if differ:
        raise ConfigError(
            f"--from {path}: that range test ran another model or other data ("
            f"{'; '.join(differ)}): its suggestion says nothing about this experiment's rate. "
            "Give this experiment's find.json, or the candidates with --lrs."
        )


def _data_args(args: dict[str, Any], base: Path) -> dict[str, Any]:
    """data.args as far as they choose the data: `download` does not, and a relative root or
    path (saved so when the folder was made by the run itself) names the same place."""
    kept = {k: v for k, v in args.items() if k != "download"}
    for key in ("root", "path"):
        if key in kept:
            kept[key] = _where(kept[key], base)
    return kept


def _where(value: Any, base: Path) -> Any:
    """A path as the place it names: relative ones are read from the current folder, failing
    that beside the experiment file (as load_experiment reads them)."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path.resolve())
    here = Path.cwd() / path
    return str((here if here.exists() else base / path).resolve())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def verify_candidates(
    exp: Experiment,
    lrs: str | Sequence[float] | None,
    from_find: str | Path | None,
    target: Path | None,
    progress: SweepProgress | None,
) -> tuple[list[float], float | None, str, float | None]:
    """The rates to try, the suggestion (None without one), where the centre came from
    ("lrs", "suggestion" or "loss_minimum") and the centre itself."""
    if lrs is not None:
        return given_rates(lrs), None, "lrs", None
    if from_find is not None:
        data = read_json(from_find)
        kind = history_kind(data)
        if kind != "find":
            what = "a training history" if kind == "train" else "a verify result"
            raise ConfigError(
                f"--from {from_find}: this is {what} ({kind}.json), not a range test; give "
                "the find.json (or refind.json) of a finder run."
            )
        _same_model_and_data(exp, data, from_find)
        suggested, history = data.get("suggested_lr"), data.get("history") or {}
        source = str(from_find)
    else:
        with _sweep(progress, exp.find.num_steps, "find") as on_step:
            found = run.find_built(checked_build(exp), on_step)  # verify trains next
        if target is not None:
            write_result(target, found, exp)
        if found.stop_reason == "interrupted":
            raise KeyboardInterrupt
        suggested, history, source = found.suggested_lr, found.history, "the finder"
    if suggested is not None:
        return candidate_rates(suggested), suggested, "suggestion", suggested
    # No suggestion: bracket the curve's robust raw-loss minimum instead.
    centre, where = bracket(history.get("lr") or [], history.get("loss") or [])
    if centre is None:
        raise NoSuggestion(
            f"verify: {source} has no suggested rate, and its curve has too few usable points "
            f"to find its lowest loss (at least {BRACKET_MIN_POINTS} finite ones needed): run "
            "the finder with more steps (find.num_steps) or give the candidates with --lrs."
        )
    return candidate_rates(centre), None, where, centre


# --- smoke --------------------------------------------------------------------------------


@dataclass
class SmokeRun:
    """A passed smoke run: its one summary line and the command's (tiny) result."""

    command: str
    line: str  # "lrtool smoke: ok (train, 4 steps, 0.8 s)"
    result: Any  # FindResult, TrainResult or VerifyResult
    experiment: Experiment
    built: Built

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the result's files into `folder` (default: a new temporary folder)."""
        if folder is not None:
            fresh_folder(folder, "folder (--out)")  # never into another run's files
        target = temp_out(Path(folder) if folder is not None else None)
        # The experiment that ran (CPU, batches of 8, a short sweep): config.yaml must say
        # what find.json/train.json say, not what the file asked for.
        return write_result(target, self.result, self.built.experiment, self.built.model)


def run_smoke(
    command: str,
    exp: Experiment,
    *,
    lrs: str | Sequence[float] | None = None,
    lr_max: LrMax = None,
    batches: int = 4,
    timeout: float = 120.0,
) -> SmokeRun:
    """`lrtool COMMAND --smoke`: CPU, fp32, a few batches and steps; SmokeFailed (one line)
    when the experiment is broken; `timeout` seconds at most (0: no limit). `command` is
    "find", "train" or "verify"; "train" trains at `lr_max` (as `run_train` takes it), else at
    the experiment's `train.lr_max`."""
    bodies = {
        "find": _smoke_find,
        "train": _smoke_train,
        "verify": lambda built: _smoke_verify(built, lrs),
    }
    exp = _experiment(exp, "run_smoke")
    if command not in bodies:
        raise ConfigError(f"run_smoke: command must be find, train or verify, got {command!r}.")
    if lr_max is not None:
        exp = with_lr_max(exp, lr_max)
    if command == "train" and exp.train.lr_max is None:
        raise ConfigError(
            "run_smoke('train', exp) needs a peak rate: lr_max=3e-3 (or 'LOW:HIGH', 'auto'), "
            "or train.lr_max in the experiment."
        )
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise ConfigError(
            f"run_smoke: batches (--smoke-batches) must be 1 or more, got {batches!r}."
        )
    if (
        not isinstance(timeout, numbers.Real)
        or isinstance(timeout, bool)
        or not timeout >= 0  # NaN too
    ):
        raise ConfigError(
            f"run_smoke: timeout (--smoke-timeout) must be a number of seconds, 0 or more (0: "
            f"no limit), got {timeout!r}."
        )
    if lrs is not None:
        lrs = given_rates(lrs)  # refused before any work, as `verify --lrs` is
    # The rate of the learning check: the head's peak, or mid-sweep without a rate.
    rate = _check_rate(exp) if command == "train" else run.sweep_middle(exp)
    body = bodies[command]
    line, (result, built) = smoke_checks(command, exp, batches, timeout, rate, body)
    return SmokeRun(command, line, result, exp, built)


def _smoke_find(built: Built) -> tuple[str, list[float], Any]:
    result = run.find_built(built)
    if result.stop_reason == "nan":
        raise SmokeFailed(f"the loss became NaN/inf at step {result.steps + 1} of the sweep.")
    return f"{result.steps} steps", result.loss, (result, built)


def _smoke_train(built: Built) -> tuple[str, list[float], Any]:
    exp = built.experiment
    lr_max = exp.train.lr_max
    if lr_max == "auto":
        found = run.find_built(built)
        lr_max = found.suggested_lr or run.sweep_middle(exp)
    if exp.train.cycles > 1:
        result, _ = train_cycles(built, lr_max)
    else:
        result = run.train_built(built, lr_max)
        _record_one_cycle(result, exp)  # train.json as a real run writes it
    if result.stop_reason == "nan":
        raise SmokeFailed(
            f"the training loss became NaN/inf at step {result.nan_step} (lr {result.nan_lr:.2e})."
        )
    return f"{len(result.history['step'])} steps", result.history["loss"], (result, built)


def _smoke_verify(built: Built, lrs: Sequence[float] | None) -> tuple[str, list[float], Any]:
    exp = built.experiment
    suggested: float | None = None
    if lrs is not None:
        rates, centre, centre_lr = list(lrs)[:2], "lrs", None
    else:
        # Centred as `verify` centres: the suggestion, else the bracket of the curve; a
        # smoke sweep of a few batches may hold too little for either: mid-sweep then.
        found = run.find_built(built)
        suggested = found.suggested_lr
        if suggested is not None:
            centre, centre_lr = "suggestion", suggested
        else:
            history = found.history
            centre_lr, centre = bracket(history.get("lr") or [], history.get("loss") or [])
            if centre_lr is None:
                centre, centre_lr = "sweep_middle", run.sweep_middle(exp)
        rates = candidate_rates(centre_lr, (1 / 3, 1.0))
    # One round of 1 epoch at two rates: a smoke run checks it runs, not which rate wins.
    result = verify_rates(
        exp,
        rates,
        max_epochs=1,
        max_widenings=0,
        suggested_lr=suggested,
        max_batches=built.train_data.max_batches,  # the smoke run's cut, on every fresh build
    )
    result.centre, result.centre_lr = centre, centre_lr
    result.config = resolved(exp)
    losses = [r.get("val_loss") for c in result.candidates for r in c["rounds"]]
    return (
        f"{len(rates)} candidates, 1 round",
        [v for v in losses if v is not None],
        (
            result,
            built,
        ),
    )


def _check_rate(exp: Experiment) -> float:
    """The rate the smoke run's learning check uses: the head's peak, or mid-sweep for auto."""
    if exp.train.lr_max == "auto":
        return run.sweep_middle(exp)
    if isinstance(exp.train.lr_max, list):  # one rate per group: the head's is the last
        return float(exp.train.lr_max[-1])
    return max(parse_lr_max(exp.train.lr_max, 1))


__all__ = [
    "SmokeRun",
    "TrainRun",
    "load_experiment",
    "parse_seeds",
    "run_find",
    "run_smoke",
    "run_train",
    "run_verify",
    "steps_per_epoch",
]
