"""Training in several one-cycle runs, the peak rate re-found before each after the first.

The seed's "adjustments in real time": `train.cycles: N` splits `train.epochs` over N one-cycle
runs (so more cycles do not cost more epochs). Before each cycle after the first, the finder
runs on the model as trained so far (it puts model, optimizer and RNGs back as they were), and
the next peak comes from that curve:

1) `run.refind_rise(lr, loss) / 10`: where a trained model's loss starts to rise, divided by
   ten (the seed's rule for a trained model);
2) else the re-find's own suggestion (the default rule's `suggested_lr`);
3) else the previous cycle's rate, and the cycle's record says so (`lr_from: "previous"`).
A rate below the re-find's first swept rate is never taken (the curve did not see it).

With `train.freeze_epochs` the frozen, head-only phase is cycle 1 (`freeze_epochs` epochs) and
`train.epochs` is split over the other cycles. The re-find after unfreezing sweeps every group,
the earlier ones at the head's rate / `train.group_ratio` spread geometrically (the `LOW:HIGH`
form of `train.lr_max`), and the cycle trains at those rates.

With `train.cycles: 1` (the default) none of this runs: the workflow trains as it always did
and records the one cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from . import run
from .build import Built
from .freezing import frozen, last_group_only, norm_parameters
from .history import FindResult
from .results import TrainResult
from .train import parse_lr_max

# The seed's rule for a trained model: the point where the loss starts to rise, over ten.
RISE_DIVISOR = 10.0

Rates = float | list[float]


# --- the plan and the rule (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One cycle as planned: its number (from 1), epochs, and whether only the head trains."""

    cycle: int
    epochs: int
    frozen: bool = False


def plan_cycles(epochs: int, cycles: int, freeze_epochs: int = 0) -> list[Plan]:
    """The cycles of a run: `epochs` split as evenly as possible, earlier cycles taking the
    remainder (7 over 3 -> 3, 2, 2); with `freeze_epochs` (and cycles > 1) the frozen phase
    is cycle 1 and `epochs` is split over the rest. One cycle is the whole run, frozen phase
    included, as `fit_one_cycle` trains it."""
    if cycles < 1:
        raise ValueError(f"cycles must be at least 1, got {cycles}")
    if cycles == 1:
        return [Plan(1, freeze_epochs + epochs)]
    plans = [Plan(1, freeze_epochs, frozen=True)] if freeze_epochs else []
    unfrozen = cycles - len(plans)
    if epochs < unfrozen:
        raise ValueError(f"{epochs} epochs cannot be split over {unfrozen} cycles")
    base, extra = divmod(epochs, unfrozen)
    for i in range(unfrozen):
        plans.append(Plan(len(plans) + 1, base + (1 if i < extra else 0)))
    return plans


def next_head_rate(
    lr: Sequence[float], loss: Sequence[float], suggested_lr: float | None, previous: float
) -> tuple[float, str]:
    """The next cycle's peak for the head from a re-find curve, and which rule gave it:
    "refind_rise" (rise / RISE_DIVISOR), "suggested_lr" (the re-find's suggestion) or
    "previous" (neither exists: the previous cycle's head rate)."""
    # A rate below the re-find's first swept rate is one the curve never saw: a re-find that
    # blew up in its first steps (a noisy per-batch loss) put its "rise" at the start, and a
    # tenth of it trained a whole cycle at ~1e-8.
    floor = float(lr[0]) if len(lr) else 0.0
    rise = run.refind_rise(lr, loss)
    if rise is not None and rise / RISE_DIVISOR >= floor:
        return rise / RISE_DIVISOR, "refind_rise"
    if suggested_lr is not None and suggested_lr >= floor:
        return float(suggested_lr), "suggested_lr"
    return float(previous), "previous"


def spread_rates(head: float, n_groups: int, group_ratio: float) -> list[float]:
    """The head's rate for the last group, head / group_ratio for the first, geometric between:
    `train.lr_max: "LOW:HIGH"` with LOW = head / group_ratio."""
    return parse_lr_max(f"{head / group_ratio!r}:{head!r}", n_groups)


def scaled_rates(previous: Sequence[float], head: float) -> list[float]:
    """The previous cycle's rates scaled so that the head (last group) gets `head`."""
    return [float(r) * head / float(previous[-1]) for r in previous]


def one_or_list(rates: Sequence[float]) -> Rates:
    """One number when every group shares it (as train.json's lr_max)."""
    return float(rates[0]) if len(set(rates)) == 1 else [float(r) for r in rates]


def cycle_record(
    plan: Plan,
    lr_max: Rates,
    final: dict[str, Any],
    *,
    first_step: int = 1,
    refind_suggested_lr: float | None = None,
    lr_from: str = "lr_max",
    epochs_trained: int | None = None,
) -> dict[str, Any]:
    """One entry of train.json's `cycles`: `epochs` are those it trained, the plan's unless
    the run stopped within the cycle (`epochs_trained`)."""
    return {
        "cycle": plan.cycle,
        "frozen": plan.frozen,
        "epochs": plan.epochs if epochs_trained is None else epochs_trained,
        "lr_max": lr_max,
        "refind_suggested_lr": refind_suggested_lr,
        "lr_from": lr_from,  # lr_max (the run's rate), refind_rise, suggested_lr or previous
        "first_step": first_step,
        "final": dict(final),
    }


# --- training -----------------------------------------------------------------------------


class _Continued:
    """The training data with its epochs numbered after the previous cycles', so that each
    cycle draws new orders instead of replaying the first cycle's."""

    def __init__(self, data: Any, offset: int) -> None:
        self.data, self.offset = data, offset

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Any:
        return iter(self.data)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(self.offset + epoch)


# (cycle number) -> the re-find on the built model as it is now.
Refind = Callable[[int], FindResult]
# (plan) -> a context manager yielding (on_step, on_epoch) or None.
CycleProgress = Callable[[Plan], AbstractContextManager[Any]]


def train_cycles(
    built: Built,
    lr_max: Any,
    *,
    refind: Refind | None = None,
    given: Sequence[Any] | None = None,
    progress: CycleProgress | None = None,
) -> tuple[TrainResult, list[FindResult]]:
    """Train `built` over `train.cycles` cycles; (the merged result, the re-finds in order).

    `lr_max` is the first cycle's peak (any `train.lr_max` form but auto). Each later cycle's
    peak comes from `refind(k)` (default: the finder with the experiment's settings) by the
    rule of `next_head_rate`; `given` (the peaks of cycles 2..N) skips the re-finds and trains
    at those. The merged result reads as one run: steps and epochs numbered on across cycles,
    `final` the last evaluation, `cycles` one record per cycle. A NaN loss, or Ctrl-C (in a
    cycle or a re-find), ends the run there with that stop reason.
    """
    exp = built.experiment
    optimizer = built.optimizer
    n_groups = len(optimizer.param_groups)
    plans = plan_cycles(exp.train.epochs, exp.train.cycles, exp.train.freeze_epochs)
    refind = refind or (lambda k: run.find_built(built))
    first_rates = parse_lr_max(lr_max, n_groups)
    rates = first_rates
    results: list[TrainResult] = []
    finds: list[FindResult] = []
    records: list[dict[str, Any]] = []
    stop_reason = "completed"
    epochs_done = steps_done = 0
    for index, plan in enumerate(plans):
        # Ctrl-C outside a sweep's or a cycle's own step loop (while the finder puts the
        # model back, while a cycle evaluates) ends the run as one inside them does: the
        # finished cycles still reach train.json.
        try:
            found_head, lr_from = None, "lr_max"
            if index > 0:
                after_freeze = plans[index - 1].frozen
                if given is not None:
                    rates, lr_from = parse_lr_max(given[index - 1], n_groups), "given"
                else:
                    # The sweep keeps the groups' ratios: set them to the ones this cycle will use.
                    ratios = (
                        spread_rates(1.0, n_groups, exp.train.group_ratio)
                        if after_freeze
                        else (scaled_rates(rates, 1.0))
                    )
                    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                        group["lr"] = ratio * rates[-1]
                    found = refind(plan.cycle)
                    finds.append(found)
                    if found.stop_reason == "interrupted":
                        stop_reason = "interrupted"
                        break
                    head, lr_from = next_head_rate(
                        found.lr, found.loss, found.suggested_lr, rates[-1]
                    )
                    found_head = head if lr_from != "previous" else None
                    if after_freeze:
                        rates = spread_rates(head, n_groups, exp.train.group_ratio)
                    else:
                        rates = scaled_rates(rates, head)
            with progress(plan) if progress is not None else nullcontext() as callbacks:
                on_step, on_epoch = callbacks if callbacks is not None else (None, None)
                result = _one_cycle(built, plan, rates, index, epochs_done, on_step, on_epoch)
            results.append(result)
            cycle_rates = rates[-1:] if plan.frozen else rates
            records.append(
                cycle_record(
                    plan,
                    one_or_list(cycle_rates),
                    result.final,
                    first_step=steps_done + 1,
                    refind_suggested_lr=found_head,
                    lr_from=lr_from,
                    epochs_trained=_epochs_trained(result),
                )
            )
            epochs_done += plan.epochs
            steps_done += len(result.history["step"])
            if result.stop_reason != "completed":
                stop_reason = result.stop_reason
                break
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            break

    merged = merge(results, built, first_rates, stop_reason)
    merged.cycles = records
    return merged, finds


def _epochs_trained(result: TrainResult) -> int | None:
    """The whole epochs a stopped run trained (None: it completed, as planned)."""
    return None if result.stop_reason == "completed" else len(result.epochs)


def _one_cycle(
    built: Built,
    plan: Plan,
    rates: list[float],
    index: int,
    epochs_before: int,
    on_step: Any,
    on_epoch: Any,
) -> TrainResult:
    """One cycle: a fresh one-cycle schedule over `plan.epochs`, the optimizer's state kept.
    The first seeds every RNG as a plain run does; later ones continue them. A frozen cycle
    shows the optimizer only the head (and, under train_bn, the frozen groups' norm layers),
    as `fit_one_cycle`'s own frozen phase does."""
    if on_epoch is not None and (epochs_before or plan.frozen):
        # Epochs number on across cycles, and a frozen cycle's epochs are "frozen", in the
        # progress lines as in train.json.
        told, phase = on_epoch, {"phase": "frozen"} if plan.frozen else {}

        def on_epoch(record: dict[str, Any]) -> None:
            told({**record, "epoch": record["epoch"] + epochs_before, **phase})

    settings: dict[str, Any] = {
        "epochs": plan.epochs,
        "freeze_epochs": 0,
        "on_step": on_step,
        "on_epoch": on_epoch,
    }
    if index > 0:
        settings["seed"] = None
        settings["train_data"] = _Continued(built.train_data, epochs_before)
    if not plan.frozen:
        return run.train_built(built, rates, **settings)
    train_bn = run.train_settings(built.experiment).get("train_bn", True)
    optimizer = built.optimizer
    norms = norm_parameters(built.model, optimizer) if train_bn else []
    with frozen(optimizer, norms), last_group_only(optimizer, norms):
        result = run.train_built(built, rates[-1], **settings)
    for record in result.epochs:
        record["phase"] = "frozen"
    return result


def merge(
    results: list[TrainResult], built: Built, first_rates: list[float], stop_reason: str
) -> TrainResult:
    """The cycles' results as one run's: steps and epochs numbered on, `final` the last,
    `group_lrs_at_peak` the cycle's whose head peaked highest."""
    exp = built.experiment
    history: dict[str, Any] = {"step": [], "lr": [], "momentum": [], "loss": []}
    epochs: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    steps = epoch_count = 0
    nan_step = nan_lr = None
    peak = None
    for result in results:
        h = result.history
        history["step"] += [s + steps for s in h["step"]]
        history["lr"] += h["lr"]
        history["loss"] += h["loss"]
        if history["momentum"] is not None:
            history["momentum"] = (
                None if h["momentum"] is None else history["momentum"] + h["momentum"]
            )
        epochs += [{**r, "epoch": r["epoch"] + epoch_count} for r in result.epochs]
        evals += [
            {**e, "step": e["step"] + steps, "epoch": e["epoch"] + epoch_count}
            for e in result.evals
        ]
        if result.nan_step is not None:
            nan_step, nan_lr = result.nan_step + steps, result.nan_lr
        at_peak = result.group_lrs_at_peak or []
        if len(at_peak) == len(first_rates) and (peak is None or at_peak[-1] > peak[-1]):
            peak = at_peak  # the run's highest peak (each cycle has its own)
        steps += len(h["step"])
        epoch_count += len(result.epochs)
    last = results[-1] if results else None
    merged = TrainResult(
        lr_max=one_or_list(first_rates),
        epochs=epochs,
        final=dict(last.final) if last else {},
        history=history,
        stop_reason=stop_reason,
        seed=exp.seed,
        device=last.device if last else str(built.device),
        elapsed_s=round(sum(r.elapsed_s for r in results), 3),
        group_names=[str(g.get("name", i)) for i, g in enumerate(built.optimizer.param_groups)],
        group_lrs_at_peak=peak,
        evals=evals,
        nan_step=nan_step,
        nan_lr=nan_lr,
    )
    if last is not None:
        merged.config = last.config
        merged.world_size = last.world_size
        merged.effective_batch_size = last.effective_batch_size
    return merged
