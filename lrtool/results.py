"""Every result lrtool saves, in one place: the three types, their files, reading them back.

    FindResult    find.json / refind.json / refind-<k>.json, and their .csv (and config.yaml)
    TrainResult   train.json, train.csv, epochs.csv, model.pt (and config.yaml)
    VerifyResult  verify.json, model.pt (the winner's full-length run)

Each is a dataclass whose `to_dict()` is its JSON. `save(folder, result, exp)` writes a
result's files, all through the one atomic writer (`write_atomic`); `read(path)` gives the
object back from its JSON. FindResult is defined in `history`, beside its curve; TrainResult
and VerifyResult here, so `train` and `verify` import them from below and nothing cycles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .history import (
    FindResult,
    history_kind,
    read_json,
    save_find,
    save_train,
    versions,
    write_atomic,
    write_csv,
    write_json,
    write_text_atomic,
    write_torch_atomic,
)

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
        momentum = h["momentum"] or [None] * len(h["step"])
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
    screen "rank" is among the screened and "kept" means it went on to the final; full-length
    runs (the final and any widening) are ranked together, so after a widening their "rank"
    is among every full-length run and "kept" marks the winner. Both are None in a round that
    Ctrl-C cut short.
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
    # curve's robust minimum / 3, in centre_lr) or "lrs" (given).
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
    """Write the result's files into `folder` (a refind is saved as refind.*); returns it.

    `exp` (the Experiment) adds config.yaml to a find or train; `model` adds model.pt to a
    train; a verify writes model.pt when it kept the winner's weights. `stem` names a find's
    files (default its kind: find or refind; the re-finds between cycles are refind-2, ...).
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
    if result.model_state is not None:
        write_torch_atomic(folder / "model.pt", result.model_state)
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
