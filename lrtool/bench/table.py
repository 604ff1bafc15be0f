"""The table `python -m lrtool.bench suggest` prints: each rule's regret per task, the best fixed
rate, the noise row, `verify`, a leave-one-family-out check and verify's cost, as Markdown."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..run import sweep_middle
from ..suggest import DEFAULT_METHOD, SUGGESTERS, suggest_all
from ..verify import bracket_centre
from .cache import Cache
from .runs import Job, Log, run_jobs, stderr_log
from .suggest_quality import (
    DIVERGED_REGRESSION_REGRET,
    TaskData,
    oracle_regret,
    regret_of,
    tasks_data,
)

NOISE_ROW = "noise: size of the change when the best grid rate is nudged by 0.05%"
VERIFY_ROW = "verify"
# The floor under every rule (`oracle_regret`): rates chosen knowing every other seed's runs.
ORACLE_ROWS = {
    1: "oracle, 1 training: the grid rate best on the other seeds",
    2: "oracle, 2 trainings: the better of the 2 grid rates best on the other seeds",
}
# The nudge of the noise row: training is deterministic but chaotic, so a change this small
# moves the score by about as much as anything no rule can control.
NUDGE = 1.0005


@dataclass
class Report:
    """Per row (rule, verify, fixed rate, oracle, noise), per task, the mean regret over seeds."""

    data: dict[str, TaskData]
    regrets: dict[str, dict[str, float]] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    verify_epochs: dict[str, float] = field(default_factory=dict)  # mean over seeds, per task


def _fixed_rows(rates: Sequence[float]) -> list[str]:
    """One label per grid rate, with as few digits as keep them apart (`fixed 0.0018`; a
    fine grid needs more, or two rates would share one row)."""
    for digits in range(2, 17):
        labels = [f"fixed {lr:.{digits}g}" for lr in rates]
        if len(set(labels)) == len(labels):
            return labels
    return [f"fixed {lr!r}" for lr in rates]


def rule_suggestions(data: TaskData) -> dict[str, list[float | None]]:
    """Each rule in SUGGESTERS: its rate on each seed's range test (`suggest_all`)."""
    per_rule: dict[str, list[float | None]] = {name: [] for name in SUGGESTERS}
    for i in range(len(data.seeds)):
        lr, loss, smoothed = data.find_arrays(i)
        for name, value in suggest_all(lr, smoothed, loss).items():
            per_rule[name].append(value)
    return per_rule


def build_report(
    names: Sequence[str],
    seeds: Sequence[int],
    cache: Cache | str,
    jobs: int,
    rates: Sequence[float],
    verify: bool = False,
    log: Log | None = stderr_log,
) -> Report:
    """Train (or read from the cache) everything the table needs and compute its regrets."""
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    data = tasks_data(names, seeds, cache, jobs, rates, log)
    report = Report(data, rules=list(SUGGESTERS))
    report.fixed = _fixed_rows(rates)
    suggestions = {name: rule_suggestions(d) for name, d in data.items()}

    # 1) Every run the rows need, in one pool: each rule's rate, the nudged best rate and,
    #    with --verify, verify's search around the default rule's rate.
    work, verify_around = _jobs(data, suggestions, verify)
    results = run_jobs(work, cache, jobs, log)

    # 2) The full training at verify's pick, as the rules' rates had.
    picks: dict[str, list[float | None]] = {}
    if verify:
        for name, d in data.items():
            records = [
                results[Job.of("verify", d.task, s, lr)]
                for s, lr in zip(d.seeds, verify_around[name], strict=True)
            ]
            picks[name] = [r["best_lr"] for r in records]
            report.verify_epochs[name] = statistics.fmean(r["budget_epochs_total"] for r in records)
        results |= run_jobs(
            [
                Job.of("train", d.task, s, lr)
                for name, d in data.items()
                for s, lr in zip(d.seeds, picks[name], strict=True)
                if lr
            ],
            cache,
            jobs,
            log,
        )

    # 3) Each row's mean regret per task.
    for name, d in data.items():
        row = report.regrets.setdefault(name, {})
        for rule, lrs in suggestions[name].items():
            row[rule] = _trained_regret(d, lrs, results, diverged_if_none=False)
        if verify:
            row[VERIFY_ROW] = _trained_regret(d, picks[name], results, diverged_if_none=True)
        for lr, label in zip(rates, report.fixed, strict=True):
            row[label] = statistics.fmean(d.seed_regrets(i)[lr] for i in range(len(d.seeds)))
        for trainings, label in ORACLE_ROWS.items():
            oracle = oracle_regret(d, trainings)
            if oracle is not None:
                row[label] = oracle
        row[NOISE_ROW] = _noise(d, results)
        if log is not None:
            unit = "val loss" if d.regression else "% accuracy"
            log(f"{name}: best grid rate {d.best_lr:.3g} -> {d.best:.4g} {unit}")
    return report


def _jobs(
    data: dict[str, TaskData], suggestions: dict[str, dict[str, list[float | None]]], verify: bool
) -> tuple[list[Job], dict[str, list[float]]]:
    """The first pool of runs, and per task the rate each seed's verify searches around."""
    work: list[Job] = []
    verify_around: dict[str, list[float]] = {}
    for name, d in data.items():
        for per_seed in suggestions[name].values():
            work += [
                Job.of("train", d.task, s, lr)
                for s, lr in zip(d.seeds, per_seed, strict=True)
                if lr
            ]
        work += [Job.of("train", d.task, s, d.best_lr * NUDGE) for s in d.seeds]
        if verify:
            # As `lrtool verify` does: around the default rule's rate, else around the range
            # test's robust loss minimum / 3 (the sweep's middle only when even that is none).
            verify_around[name] = [
                lr or bracket_centre(*d.find_arrays(i)[:2]) or sweep_middle(d.task.exp(s))
                for i, (s, lr) in enumerate(
                    zip(d.seeds, suggestions[name][DEFAULT_METHOD], strict=True)
                )
            ]
            work += [
                Job.of("verify", d.task, s, lr)
                for s, lr in zip(d.seeds, verify_around[name], strict=True)
            ]
    return work, verify_around


def _trained_regret(
    d: TaskData,
    lrs: Sequence[float | None],
    results: dict[Job, dict[str, Any]],
    diverged_if_none: bool,
) -> float:
    """The mean regret over seeds of training at each seed's rate (None: see below)."""
    regrets = []
    for i, (seed, lr) in enumerate(zip(d.seeds, lrs, strict=True)):
        if lr:
            score = d.score(results[Job.of("train", d.task, seed, lr)])
            regrets.append(regret_of(score, d.best, d.regression))
        elif diverged_if_none:  # verify saw every finalist diverge
            regrets.append(regret_of(d.score({"score": None}), d.best, d.regression))
        else:  # no suggestion: the seed's worst grid rate
            regrets.append(d.worst_regret(i))
    return statistics.fmean(regrets)


def _noise(d: TaskData, results: dict[Job, dict[str, Any]]) -> float:
    """The mean change in regret when the best grid rate is nudged by NUDGE."""
    nudged = [
        regret_of(
            d.score(results[Job.of("train", d.task, s, d.best_lr * NUDGE)]),
            d.best,
            d.regression,
        )
        for s in d.seeds
    ]
    at_best = [d.seed_regrets(i)[d.best_lr] for i in range(len(d.seeds))]
    return statistics.fmean(abs(a - b) for a, b in zip(nudged, at_best, strict=True))


def _mean(row: dict[str, float], tasks: Sequence[str]) -> float:
    return statistics.fmean(row[t] for t in tasks)


def best_fixed(report: Report, tasks: Sequence[str]) -> str:
    """The fixed-rate row with the lowest mean regret over `tasks` (chosen in hindsight)."""
    return min(
        report.fixed,
        key=lambda label: statistics.fmean(report.regrets[t][label] for t in tasks),
    )


def _cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "inf"


def regret_table(report: Report) -> str:
    """Rows: the rules (default marked), verify, the best fixed rate, the oracles (with two
    seeds or more), noise; columns: tasks, then mean, median and worst."""
    tasks = list(report.regrets)
    fixed = best_fixed(report, tasks)
    rows = [
        (f"{rule} (default)" if rule == DEFAULT_METHOD else rule, rule) for rule in report.rules
    ]
    if report.verify_epochs:
        rows.append((VERIFY_ROW, VERIFY_ROW))
    rows.append((f"{fixed} (best single rate, chosen in hindsight)", fixed))
    rows += [
        (label, label)
        for label in ORACLE_ROWS.values()
        if tasks and label in report.regrets[tasks[0]]
    ]
    rows.append((NOISE_ROW, NOISE_ROW))
    lines = [
        "| rule | " + " | ".join(tasks) + " | mean | median | worst |",
        "|---" * (len(tasks) + 4) + "|",
    ]
    for label, key in rows:
        values = [report.regrets[t][key] for t in tasks]
        summary = [statistics.fmean(values), statistics.median(values), max(values)]
        cells = " | ".join(_cell(v) for v in [*values, *summary])
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)


def leave_one_family_out(report: Report) -> str:
    """For each family F: the rule (and the fixed rate) with the lowest mean regret on the
    other families' tasks, and its mean regret on F's tasks; then the mean over families."""
    tasks = list(report.regrets)
    families = list(dict.fromkeys(report.data[t].family for t in tasks))
    lines = [
        "| left-out family | its tasks | rule chosen on the others | its regret on the family "
        "| fixed rate chosen on the others | its regret on the family |",
        "|---|---|---|---|---|---|",
    ]
    rule_regrets, fixed_regrets = [], []
    for family in families:
        inside = [t for t in tasks if report.data[t].family == family]
        outside = [t for t in tasks if report.data[t].family != family]
        if not outside:
            continue
        rule = min(
            report.rules,
            key=lambda r: statistics.fmean(report.regrets[t][r] for t in outside),
        )
        fixed = best_fixed(report, outside)
        on_rule = statistics.fmean(report.regrets[t][rule] for t in inside)
        on_fixed = statistics.fmean(report.regrets[t][fixed] for t in inside)
        rule_regrets.append(on_rule)
        fixed_regrets.append(on_fixed)
        lines.append(
            f"| {family} | {len(inside)} | {rule} | {_cell(on_rule)} | {fixed} | "
            f"{_cell(on_fixed)} |"
        )
    if len(rule_regrets) < 2:
        return "(leave-one-family-out needs tasks of at least two families)"
    lines.append(
        f"| mean over families | | | {_cell(statistics.fmean(rule_regrets))} | | "
        f"{_cell(statistics.fmean(fixed_regrets))} |"
    )
    return "\n".join(lines)


def verify_cost_table(report: Report, n_rates: int) -> str:
    """Epochs verify trains per seed, against one full training and against the grid."""
    lines = [
        "| task | verify epochs per seed | x one training | % of the grid |",
        "|---|---|---|---|",
    ]
    for name, epochs in report.verify_epochs.items():
        full = report.data[name].task.epochs
        lines.append(
            f"| {name} | {epochs:.1f} | {epochs / full:.2f} | "
            f"{100 * epochs / (n_rates * full):.1f} |"
        )
    return "\n".join(lines)


def suggest_report(
    names: Sequence[str],
    seeds: Sequence[int],
    cache: Cache | str,
    jobs: int,
    rates: Sequence[float],
    verify: bool = False,
    log: Log | None = stderr_log,
) -> str:
    """The whole Markdown output of `python -m lrtool.bench suggest`."""
    report = build_report(names, seeds, cache, jobs, rates, verify, log)
    held = sum(report.data[t].held_out for t in names)
    parts = [
        f"Regret after one-cycle training, mean over seeds {', '.join(map(str, seeds))}: "
        "accuracy points below the grid's best rate, or % above its validation loss for the "
        f"regression tasks (a diverged run: {DIVERGED_REGRESSION_REGRET:g}%). "
        f"Grid: {len(rates)} rates from "
        f"{rates[0]:g} to {rates[-1]:g}. Tasks: {len(names)} ({held} held out, "
        f"{len(names) - held} design).",
        "",
        regret_table(report),
        "",
        "Leave one family out: the rule a designer would pick on the other families' tasks, "
        "and what it gives on the family left out.",
        "",
        leave_one_family_out(report),
    ]
    if verify:
        parts += [
            "",
            "Cost of verify, in training epochs per seed (3 candidates around the default "
            "rule's rate; the range test comes on top; the winner's full-length run is the "
            "training at the chosen rate, saved as model.pt): against one full training, and "
            f"against the grid's {len(rates)} runs.",
            "",
            verify_cost_table(report, len(rates)),
        ]
    return "\n".join(parts)
