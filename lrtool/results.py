"""Every result lrtool saves, in one place: the three types, their files, reading them back.

    FindResult    find.json / refind.json / refind-<k>.json, and their .csv (and config.yaml)
    TrainResult   train.json, train.csv, epochs.csv, model.pt (and config.yaml)
    VerifyResult  verify.json, model.pt (the winner's full-length run), config.yaml

Each is a dataclass whose `to_dict()` is its JSON. `save(folder, result, exp)` writes a
result's files, all through the one atomic writer (`write_atomic`); `read(path)` gives the
object back from its JSON. FindResult is defined in `history`, beside its curve; TrainResult
and VerifyResult here, so `train` and `verify` import them from below and nothing cycles.

`read_json(path)` is the one reader of saved JSON (plot, compare, verify --from, `read`): it
checks the file against what lrtool writes, so a file edited by hand or cut short is one
exit-2 paragraph naming the file and the field, never a crash or a silently wrong chart. The
CSV files are written for people and other tools; lrtool never reads them back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Experiment
from .errors import ConfigError
from .history import (
    FindResult,
    deferred_interrupts,
    fresh_folder,
    history_kind,
    save_find,
    save_train,
    versions,
    write_atomic,
    write_csv,
    write_json,
    write_text_atomic,
    write_torch_atomic,
)
from .history import read_json as read_unchecked

__all__ = [
    "FindResult",
    "Result",
    "TrainResult",
    "VerifyResult",
    "read",
    "read_json",
    "save",
    "to_dict",
    "write_atomic",
    "write_csv",
    "write_json",
    "write_text_atomic",
]


@dataclass
class TrainResult:
    """The outcome of one one-cycle run; `to_dict()` is train.json."""

    lr_max: float | list[float]  # one number when every group shares it
    epochs: list[dict[str, Any]]  # one record per completed epoch (frozen ones first)
    final: dict[str, float | None]  # val_loss and each metric at the last evaluation
    # step, lr, momentum, loss: column arrays, one entry per optimizer step (step counts from
    # 1, across phases). lr and momentum are the last group's (the head); momentum is None
    # for optimizers without one.
    history: dict[str, list[Any] | None]
    stop_reason: str  # completed | nan | interrupted
    seed: int | None
    device: str
    elapsed_s: float
    group_names: list[str] = field(default_factory=list)
    # Every group's rate at the step where the head's rate peaked in the main cycle.
    group_lrs_at_peak: list[float] | None = None
    # Every evaluation: step, epoch, val_loss and each metric.
    evals: list[dict[str, Any]] = field(default_factory=list)
    nan_step: int | None = None
    nan_lr: float | None = None
    config: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    kind: str = "train"
    world_size: int = 1
    effective_batch_size: int | None = None
    # One record per cycle (lrtool.cycles): cycle, frozen, epochs, lr_max, refind_suggested_lr,
    # lr_from, first_step, final. The workflow fills it; fit_one_cycle alone leaves it empty.
    cycles: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """train.csv: one row per optimizer step (momentum empty without one)."""
        h = self.history
        momentum = h.get("momentum") or [None] * len(h["step"])
        rows = [
            [step, lr, mom, loss]
            for step, lr, mom, loss in zip(h["step"], h["lr"], momentum, h["loss"], strict=True)
        ]
        return ["step", "lr", "momentum", "loss"], rows

    def epoch_rows(self) -> tuple[list[str], list[list[Any]]]:
        """epochs.csv: one row per completed epoch."""
        metric_names = [k for k in self.final if k != "val_loss"]
        header = ["epoch", "phase", "train_loss", "val_loss", *metric_names, "seconds"]
        return header, [[record.get(k) for k in header] for record in self.epochs]


@dataclass(frozen=True)
class Round:
    """One round of verify: how many candidates enter it and how long each one trains.

    Each run is a fresh one-cycle over `epochs` epochs; with `batches` set (only when epochs is
    1) that single epoch is cut to its first `batches` batches and the cycle spans just those.
    `run_epochs` is what one run costs in epochs: epochs, or batches / batches per epoch.
    """

    candidates: int
    epochs: int
    batches: int | None
    run_epochs: float

    @property
    def cost_epochs(self) -> float:
        return self.candidates * self.run_epochs


@dataclass
class VerifyResult:
    """The outcome of `lrtool verify`; `to_dict()` is verify.json.

    `candidates`: one entry per rate, smallest first: {"lr", "rounds"}, one record per run it
    trained: {"round", "epochs" (the run's length; a fraction when an epoch was cut),
    "batches" (None: whole epochs), "val_loss", each metric, "stop_reason", "elapsed_s",
    "rank", "kept"}. Metrics are None for a run that diverged (stop_reason "nan"). In the
    screen "rank" is among the screened and "kept" means it went on to the final; a
    full-length run (the final, or a widening) is ranked among every full-length run so far,
    as its round's table printed it, and "kept" marks that round's winner: a later widening
    does not rewrite an earlier round's record (`best_lr` is the winner overall). Both are
    None in a round that Ctrl-C cut short.
    """

    candidates: list[dict[str, Any]]
    best_lr: float | None  # None: interrupted in round 1, or every finalist diverged
    suggested_lr: float | None  # the finder's suggestion; None with --lrs or without one
    # Epochs of every run: a run stopped by a NaN loss counts its full length (as a grid is
    # charged for a diverged rate), an interrupted run the epochs it completed. A completed
    # verify without widening costs exactly schedule_epochs(schedule).
    budget_epochs_total: float
    # budget_epochs_total / the real run's epochs (train.epochs): 3.0 means three trainings.
    cost_vs_one_training: float
    full_epochs: int  # the real run, which the final round trains
    metric: str  # what ranks the candidates: "accuracy" (higher is better) or "val_loss"
    stop_reason: str  # completed | interrupted
    seed: int | None
    elapsed_s: float
    schedule: list[Round] = field(default_factory=list)  # as planned, widenings apart
    widened: list[float] = field(default_factory=list)  # rates added at the edge, in order
    # Where the candidates came from: "suggestion", "loss_minimum" (no suggestion: the
    # curve's robust minimum / 3, in centre_lr), "sweep_end" (no suggestion on a flat sweep:
    # its last rate / 30) or "lrs" (given).
    centre: str = "suggestion"
    centre_lr: float | None = None
    device: str | None = None
    world_size: int = 1
    effective_batch_size: int | None = None
    config: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    kind: str = "verify"
    # The winner's full-length run is a training at best_lr: its rate when its weights were
    # kept (model.pt beside verify.json), else None (interrupted before it finished, or
    # every finalist diverged).
    model_lr: float | None = None
    # Those weights (a CPU state_dict); not part of verify.json.
    model_state: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, model_state=None))
        del data["model_state"]
        return data


Result = FindResult | TrainResult | VerifyResult


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
    """Write the result's files into `folder`, a new folder or one holding no other run's
    files (results are never overwritten or mixed: `--out`'s checks); returns it. The
    arguments are `write_result`'s. config.yaml is the experiment the result ran (its
    `config`: a run_train(exp, lr_max=...) ran at that rate, not at `exp`'s), `exp` only
    where the result holds none or it no longer validates."""
    _check_saveable(result, exp)
    if isinstance(exp, Experiment):
        exp = _as_run(result, exp)
    fresh_folder(folder, "save: folder")
    return write_result(folder, result, exp, model, stem=stem)


def _as_run(result: Result, exp: Experiment) -> Experiment:
    from .config import validate
    from .errors import LrtoolError

    config = getattr(result, "config", None)
    if not isinstance(config, dict):
        return exp
    try:
        return validate(config, f"the result's config ({exp.name})", folder=exp._folder)
    except LrtoolError:
        return exp


def write_result(
    folder: str | Path,
    result: Result,
    exp: Any = None,
    model: Any = None,
    *,
    stem: str | None = None,
) -> Path:
    """Write the result's files into `folder` (a refind is saved as refind.*); returns it.
    The workflows write into the run folder they hold, a find and its re-finds side by side.

    `exp` (the Experiment) adds config.yaml (to a verify too); `model` adds model.pt to a
    train; a verify writes model.pt when it kept the winner's weights. `stem` names a find's
    files (default its kind: find or refind; the re-finds between cycles are refind-2, ...).

    The files go as one: Ctrl-C or SIGTERM while they are written waits until the last one
    is written (then raises KeyboardInterrupt), so a folder never holds a train.json that
    says "completed" without its model.pt and config.yaml.
    """
    _check_saveable(result, exp)
    with deferred_interrupts():
        return _write_result(Path(folder), result, exp, model, stem)


def _check_saveable(result: Result, exp: Any) -> None:
    """Checked before any file or folder is made: a half-saved folder, or an empty one left
    by a refused call, could not be saved into again."""
    if exp is not None and not isinstance(exp, Experiment):
        raise ConfigError(
            f"save: exp must be the Experiment (load_experiment('exp.yaml')), got "
            f"{type(exp).__name__} {exp!r:.60}."
        )
    if not isinstance(result, (FindResult, TrainResult, VerifyResult)):
        raise ConfigError(
            f"save: expected a FindResult, TrainResult or VerifyResult, got "
            f"{type(result).__name__}; read a saved file back with lrtool.results.read(path)."
        )
    if exp is None and not isinstance(result, VerifyResult):
        kind = "find" if isinstance(result, FindResult) else "train"
        raise ConfigError(f"save: a {kind} result needs its experiment, for config.yaml.")


def _write_result(folder: Path, result: Result, exp: Any, model: Any, stem: str | None) -> Path:
    if isinstance(result, FindResult):
        return save_find(folder, result, exp, stem=stem or result.kind)
    if isinstance(result, TrainResult):
        return save_train(folder, result, exp, model)
    if result.model_state is not None:
        write_torch_atomic(folder / "model.pt", result.model_state)
    if exp is not None:
        # What `lrtool train config.yaml --lr-max <model_lr>` needs to train model.pt again
        # (verify --epochs and --set included).
        from .config import dump_yaml

        write_text_atomic(folder / "config.yaml", dump_yaml(exp))
    write_json(folder / "verify.json", result.to_dict())
    return folder


def read(path: str | Path) -> Result:
    """The result a saved find.json, refind.json, train.json or verify.json holds.

    Keys the type does not know (a newer lrtool's, or --json's "folder") are left out.
    """
    data = read_json(path)
    kind = history_kind(data)
    cls: type[Any] = {"find": FindResult, "train": TrainResult, "verify": VerifyResult}[kind]
    fields = dataclasses.fields(cls)
    missing = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in data
    ]
    if missing:
        raise ConfigError(_not_whole(path, kind, [f"{name} is missing" for name in missing]))
    # Weights live in model.pt, never in JSON: a "model_state" key in the file is not read.
    values = {f.name: data[f.name] for f in fields if f.name in data and f.name != "model_state"}
    if cls is VerifyResult:
        known = [f.name for f in dataclasses.fields(Round)]
        values["schedule"] = [Round(**{k: r[k] for k in known}) for r in data.get("schedule") or []]
    return cls(**values)


# --- reading saved JSON back ----------------------------------------------------------------
#
# A saved file may have been edited by hand or cut short. Each field a reader uses is checked
# here, once, against what lrtool writes; a problem reads "<where> is <value>, expected <what>",
# <where> spelled as in the file (history.lr[3], candidates[0].rounds).

# A check of one value: the problems it finds, each naming `where`; [] when it is fine.
Check = Callable[[Any, str], list[str]]

KINDS = ("find", "refind", "train", "verify")  # the values of a saved file's "kind"
# Problems listed in one message; a file edited wholesale would otherwise fill the screen.
MAX_PROBLEMS = 5


def read_json(path: str | Path) -> dict[str, Any]:
    """A saved find.json, refind.json, train.json or verify.json, checked: ConfigError (exit 2)
    naming the file and each bad field when it is not what lrtool writes."""
    data = read_unchecked(path)  # the file is there, is JSON and is an lrtool result
    kind = history_kind(data)
    problems = _SCHEMAS[kind](data, "")
    if problems:
        raise ConfigError(_not_whole(path, kind, problems))
    return data


def _not_whole(path: str | Path, kind: str, problems: list[str]) -> str:
    cls, files, command = {
        "find": ("FindResult", "a find.json or refind.json", "lrtool find"),
        "train": ("TrainResult", "a train.json", "lrtool train"),
        "verify": ("VerifyResult", "a verify.json", "lrtool verify"),
    }[kind]
    listed = "; ".join(problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        listed += f"; and {len(problems) - MAX_PROBLEMS} more"
    return (
        f"{path}: {listed}. This is not a whole {cls} as lrtool writes it ({files}): was it "
        f"edited by hand or cut short? Restore the original file, or run `{command}` again."
    )


def _shown(value: Any) -> str:
    """A value as the file spells it: null, true, "abc", 1e-05; containers by their kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)  # an integer past 1e308 has no float: charts and maths would overflow
    except OverflowError:
        return False
    return True


def _is_finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _is_rate(value: Any) -> bool:
    return _is_finite(value) and value > 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_step(value: Any) -> bool:
    return _is_count(value) and value >= 1  # steps count from 1 everywhere


def _value(expected: str, ok: Callable[[Any], bool], *, null: bool = False) -> Check:
    """One plain value: fine when `ok(value)` (or null, with `null`)."""
    if null:
        expected += ", or null"

    def check(value: Any, where: str) -> list[str]:
        if (null and value is None) or ok(value):
            return []
        return [f"{where} is {_shown(value)}, expected {expected}"]

    return check


def _list(item: Check, expected: str, *, null: bool = False) -> Check:
    """A list whose every entry passes `item`; only the first bad entry is named."""
    is_list = _value(expected, lambda v: isinstance(v, list), null=null)

    def check(value: Any, where: str) -> list[str]:
        if value is None or not isinstance(value, list):
            return is_list(value, where)
        for i, entry in enumerate(value):
            problems = item(entry, f"{where}[{i}]")
            if problems:
                return problems
        return []

    return check


def _object(
    fields: dict[str, Check],
    expected: str,
    *,
    required: tuple[str, ...] = (),
    other: Check | None = None,
    null: bool = False,
) -> Check:
    """An object: `required` keys present, each key in `fields` (any other key: `other`, when
    given) passing its check. Keys it does not know are a newer lrtool's: left alone."""
    is_object = _value(expected, lambda v: isinstance(v, dict), null=null)

    def check(value: Any, where: str) -> list[str]:
        if not isinstance(value, dict):
            return is_object(value, where)
        problems = [f"{_at(where, key)} is missing" for key in required if key not in value]
        for key, entry in value.items():
            rule = fields.get(key, other)
            if rule is not None:
                problems += rule(entry, _at(where, key))
        return problems

    return check


def _columns(fields: dict[str, Check], expected: str, *, required: tuple[str, ...]) -> Check:
    """A history: column arrays, one entry per step, so every column as long as the first."""
    columns = _object(fields, expected, required=required)

    def check(value: Any, where: str) -> list[str]:
        problems = columns(value, where)
        if problems:
            return problems
        lengths = {k: len(value[k]) for k in fields if isinstance(value.get(k), list)}
        first, n = next(iter(lengths.items()), ("", 0))
        return [
            f"{_at(where, first)} has {n} {'entry' if n == 1 else 'entries'} but "
            f"{_at(where, key)} has {m}"
            for key, m in lengths.items()
            if m != n
        ]

    return check


def _rising(column: Check) -> Check:
    """A range test's rates: the sweep only ever raises the rate."""

    def check(value: Any, where: str) -> list[str]:
        problems = column(value, where)
        if problems:
            return problems
        for i in range(1, len(value)):
            if value[i] < value[i - 1]:
                return [
                    f"{where}[{i}] is {_shown(value[i])}, below {where}[{i - 1}] "
                    f"({_shown(value[i - 1])}): a range test only raises the rate"
                ]
        return []

    return check


_RATE = _value("a learning rate (a number above 0)", _is_rate)
_RATE_OR_NULL = _value("a learning rate (a number above 0)", _is_rate, null=True)
_RATES = _list(_RATE, "a list of learning rates")
# lr_max: one rate, or one per parameter group.
_LR_MAX = _value(
    "a learning rate (a number above 0) or a list of them, one per parameter group",
    lambda v: _is_rate(v) or (isinstance(v, list) and bool(v) and all(map(_is_rate, v))),
)
# A loss or a metric: NaN and inf are saved as null (JSON has neither); NaN read back too.
_LOSS = _value("a number", _is_number, null=True)
_LOSSES = _list(_LOSS, "a list of numbers (null where a loss was NaN or inf)")
_NUMBER = _value("a number", _is_finite)
_NUMBER_OR_NULL = _value("a number", _is_finite, null=True)
_COUNT = _value("a whole number, 0 or more", _is_count)
_COUNT_OR_NULL = _value("a whole number, 0 or more", _is_count, null=True)
_STEPS = _list(_value("a step number, 1 or more", _is_step), "a list of step numbers")
_STEP_OR_NULL = _value("a step number, 1 or more", _is_step, null=True)
_TEXT = _value("a string", lambda v: isinstance(v, str))
_TEXT_OR_NULL = _value("a string", lambda v: isinstance(v, str), null=True)
_FLAG_OR_NULL = _value("true or false", lambda v: isinstance(v, bool), null=True)
_ANY_OBJECT = _value("an object", lambda v: isinstance(v, dict))
_ANY_OBJECT_OR_NULL = _value("an object", lambda v: isinstance(v, dict), null=True)
_KIND = _value("find, refind, train or verify", lambda v: v in KINDS)
# Scores by name ({val_loss, accuracy, ...}): null for a run that diverged.
_SCORES = _object({}, "an object {name: number or null}", other=_LOSS)

# What every saved result holds besides its own fields.
_COMMON = {
    "stop_reason": _TEXT,
    "seed": _COUNT_OR_NULL,
    "elapsed_s": _NUMBER,
    "config": _ANY_OBJECT_OR_NULL,
    "versions": _ANY_OBJECT,
    "kind": _KIND,
    "world_size": _COUNT,
    "effective_batch_size": _COUNT_OR_NULL,
}

_FIND_HISTORY = _columns(
    {
        "lr": _rising(_list(_RATE, "a list of learning rates")),
        "loss": _LOSSES,
        "smoothed_loss": _LOSSES,
    },
    "an object of columns {lr, loss, smoothed_loss}",
    required=("lr", "loss", "smoothed_loss"),
)
_SUGGESTIONS = _object({}, "an object {method: learning rate or null}", other=_RATE_OR_NULL)
_FIND_FIELDS = {
    "suggested_lr": _RATE_OR_NULL,
    "suggestion_method": _TEXT,
    "suggestions": _SUGGESTIONS,
    "history": _FIND_HISTORY,
    "steps": _COUNT,
}
_SEED_RUN = _object(
    {**_FIND_FIELDS, "stop_reason": _TEXT, "seed": _COUNT_OR_NULL},
    "an object {seed, suggested_lr, suggestions, stop_reason, steps, history}",
    required=("history",),
)
_FIND = _object(
    {
        **_COMMON,
        **_FIND_FIELDS,
        "device": _TEXT,
        "warning": _TEXT_OR_NULL,
        "seeds": _list(_SEED_RUN, "a list of the seeds' runs", null=True),
        "consensus_lr": _RATE_OR_NULL,
        "spread": _NUMBER_OR_NULL,
        "seeds_finished": _COUNT_OR_NULL,
        "seeds_requested": _COUNT_OR_NULL,
    },
    "an object",
    required=("history",),
)

_TRAIN_HISTORY = _columns(
    {
        "step": _STEPS,
        # The head's rate at each step; a schedule may end at 0.
        "lr": _list(
            _value("a learning rate (a number, 0 or more)", lambda v: _is_finite(v) and v >= 0),
            "a list of learning rates",
        ),
        "momentum": _list(_NUMBER, "a list of numbers (null: an optimizer without one)", null=True),
        "loss": _LOSSES,
    },
    "an object of columns {step, lr, momentum, loss}",
    required=("step", "lr", "loss"),
)
_TRAIN = _object(
    {
        **_COMMON,
        "lr_max": _LR_MAX,
        "epochs": _list(
            _object(
                {"epoch": _COUNT, "phase": _TEXT, "seconds": _NUMBER},
                "an object {epoch, phase, train_loss, val_loss, ..., seconds}",
                other=_LOSS,
            ),
            "a list of epoch records",
        ),
        "final": _SCORES,
        "history": _TRAIN_HISTORY,
        "device": _TEXT,
        "group_names": _list(_TEXT, "a list of names"),
        "group_lrs_at_peak": _list(_RATE, "a list of learning rates", null=True),
        "evals": _list(
            _object(
                {"step": _COUNT, "epoch": _COUNT},
                "an object {step, epoch, val_loss, ...}",
                other=_LOSS,
            ),
            "a list of evaluations",
        ),
        "nan_step": _COUNT_OR_NULL,
        "nan_lr": _NUMBER_OR_NULL,
        "cycles": _list(
            _object(
                {
                    "cycle": _COUNT,
                    "frozen": _FLAG_OR_NULL,
                    "epochs": _COUNT,
                    "lr_max": _LR_MAX,
                    "refind_suggested_lr": _RATE_OR_NULL,
                    "lr_from": _TEXT,
                    "first_step": _STEP_OR_NULL,
                    "final": _SCORES,
                },
                "an object {cycle, frozen, epochs, lr_max, ..., first_step, final}",
            ),
            "a list of cycle records",
        ),
    },
    "an object",
    required=("history", "epochs"),
)

_VERIFY_RUN = _object(
    {
        "round": _COUNT,
        "epochs": _NUMBER,
        "batches": _COUNT_OR_NULL,
        "stop_reason": _TEXT,
        "elapsed_s": _NUMBER,
        "rank": _COUNT_OR_NULL,
        "kept": _FLAG_OR_NULL,
    },
    "an object {round, epochs, batches, val_loss, ..., rank, kept}",
    other=_LOSS,  # val_loss and each metric
)
_VERIFY = _object(
    {
        **_COMMON,
        "candidates": _list(
            _object(
                {"lr": _RATE, "rounds": _list(_VERIFY_RUN, "a list of runs")},
                "an object {lr, rounds}",
                required=("lr", "rounds"),
            ),
            "a list of candidates {lr, rounds}",
        ),
        "best_lr": _RATE_OR_NULL,
        "suggested_lr": _RATE_OR_NULL,
        "budget_epochs_total": _NUMBER,
        "cost_vs_one_training": _NUMBER,
        "full_epochs": _COUNT,
        "metric": _TEXT,
        "schedule": _list(
            _object(
                {
                    "candidates": _COUNT,
                    "epochs": _COUNT,
                    "batches": _COUNT_OR_NULL,
                    "run_epochs": _NUMBER,
                },
                "an object {candidates, epochs, batches, run_epochs}",
                required=("candidates", "epochs", "batches", "run_epochs"),
            ),
            "a list of rounds",
        ),
        "widened": _RATES,
        "centre": _TEXT,
        "centre_lr": _RATE_OR_NULL,
        "device": _TEXT_OR_NULL,
        "model_lr": _RATE_OR_NULL,
    },
    "an object",
    required=("candidates",),
)


def _scored_by_metric(verify: Check) -> Check:
    """Every run of a verify holds a score under `metric`: what the chart and table show."""

    def check(value: Any, where: str) -> list[str]:
        problems = verify(value, where)
        if problems or not isinstance(value.get("metric"), str):
            return problems
        metric = value["metric"]
        for i, candidate in enumerate(value["candidates"]):
            for j, run in enumerate(candidate["rounds"]):
                if metric not in run:
                    where_run = _at(where, f"candidates[{i}].rounds[{j}]")
                    return [f"{where_run} has no {metric} (the metric it is ranked by)"]
        return []

    return check


_SCHEMAS = {"find": _FIND, "train": _TRAIN, "verify": _scored_by_metric(_VERIFY)}
