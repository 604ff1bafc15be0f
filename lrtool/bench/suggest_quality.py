"""How good is a suggestion rule? Regret against a grid of one-cycle runs, per task.

The oracle of a task is a grid of peak rates (default 1e-5 to 10, 4 per decade), each trained
one-cycle at the task's own `train.epochs` for every seed. Regret is accuracy points below the
grid's best mean-over-seeds (classification), or % above the best mean validation loss
(regression, where a diverged run counts as 1000%).

The Python API for designing a rule:

    from lrtool.bench.suggest_quality import task_data, regret, evaluate
    data = task_data("digits-mlp-adam")          # grid + finds, from the cache or trained
    regret(data, [1e-2, 1e-2, 1e-2], train=False)  # fast: interpolated on the grid
    evaluate(my_rule, design_tasks(), train=False) # my_rule(lr, loss, smoothed_loss)

Every rule sees the range test `lrtool find` runs on the task's experiment; its raw history is
cached, so a changed rule costs no new sweep, only training at the new rates (train=True).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cache import DEFAULT_CACHE, Cache, rate_key
from .runs import Job, Log, run_jobs, stderr_log
from .tasks import TASKS, Task

# Five: with three, the noise row (how much a task's score moves for a nudge of the rate)
# was as large as the differences between rules (mean 2.5 points held out; five: 0.7).
SEEDS = (0, 1, 2, 3, 4)
GRID = (1e-5, 10.0)
PER_DECADE = 4
# A diverged regression run: counted as 1000% above the best validation loss.
DIVERGED_REGRESSION_REGRET = 1000.0

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]


def grid_rates(
    low: float = GRID[0], high: float = GRID[1], per_decade: int = PER_DECADE
) -> list[float]:
    """Peak rates from low to high, `per_decade` per decade (both ends included), each
    rounded as the cache keys them (so 1 per decade picks a subset of 4 per decade)."""
    if not 0 < low < high or per_decade < 1:
        raise ValueError(
            f"need 0 < low < high and per_decade >= 1; got {low}, {high}, {per_decade}"
        )
    count = max(2, round(math.log10(high / low) * per_decade) + 1)  # both ends, always
    return [rate_key(r) for r in np.geomspace(low, high, count)]


def regret_of(score: float, best: float, regression: bool) -> float:
    """Accuracy points below the best, or % above the best validation loss.

    A diverged regression run counts as 1000%, and so does anything worse: a run that ends
    with a validation MSE of 1e15 has diverged in all but name, and must not swamp a mean.
    """
    if regression:
        if not math.isfinite(score):
            return DIVERGED_REGRESSION_REGRET
        return min(100 * (score - best) / best, DIVERGED_REGRESSION_REGRET)
    return best - score


@dataclass
class TaskData:
    """A task's grid and range tests, for the seeds asked for.

    `grid[lr][i]` is seed i's score at peak rate lr: accuracy % (0 for a diverged run) or
    validation loss (inf for a diverged run). `finds[i]` is seed i's raw range test
    ({"lr", "loss", "smoothed_loss", "stop_reason", ...}; a non-finite loss reads as NaN).
    """

    task: Task
    seeds: list[int]
    grid: dict[float, list[float]]
    finds: list[dict[str, Any]]
    cache: Cache = field(repr=False)
    jobs: int = field(default=2, repr=False)
    log: Log | None = field(default=stderr_log, repr=False)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def family(self) -> str:
        return self.task.family

    @property
    def held_out(self) -> bool:
        return self.task.held_out

    @property
    def regression(self) -> bool:
        return self.task.regression

    @property
    def means(self) -> dict[float, float]:
        return {lr: statistics.fmean(scores) for lr, scores in self.grid.items()}

    @property
    def best_lr(self) -> float:
        """The grid rate with the best mean over seeds (the smaller rate on a tie)."""
        means = self.means
        sign = 1 if self.regression else -1
        return min(means, key=lambda lr: (sign * means[lr], lr))

    @property
    def best(self) -> float:
        return self.means[self.best_lr]

    def score(self, record: dict[str, Any]) -> float:
        """A cached train record's score, a diverged run as the worst possible score."""
        value = record.get("score")
        if value is None:
            return math.inf if self.regression else 0.0
        return float(value)

    def seed_regrets(self, seed_index: int) -> dict[float, float]:
        """Seed i's regret at each grid rate."""
        return {
            lr: regret_of(scores[seed_index], self.best, self.regression)
            for lr, scores in self.grid.items()
        }

    def worst_regret(self, seed_index: int) -> float:
        """The regret charged when a rule gives no rate: seed i's worst grid score."""
        return max(self.seed_regrets(seed_index).values())

    def find_arrays(self, seed_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lr, loss, smoothed_loss) of seed i's range test, as float arrays (null -> NaN)."""
        history = self.finds[seed_index]

        def column(name: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in history[name]], dtype=float)

        return column("lr"), column("loss"), column("smoothed_loss")


def find_jobs(task: Task, seeds: Sequence[int]) -> list[Job]:
    return [Job.of("find", task, s) for s in seeds]


def grid_jobs(task: Task, seeds: Sequence[int], rates: Sequence[float]) -> list[Job]:
    # Rate-major: the whole grid of seed 0 is not finished long before seed 2 starts.
    return [Job.of("train", task, s, lr) for lr in rates for s in seeds]


def tasks_data(
    names: Sequence[str],
    seeds: Sequence[int] = SEEDS,
    cache: Cache | str = DEFAULT_CACHE,
    jobs: int = 2,
    rates: Sequence[float] | None = None,
    log: Log | None = stderr_log,
    tasks: dict[str, Task] | None = None,
) -> dict[str, TaskData]:
    """TaskData of several tasks, training every grid point and range test not yet cached
    (all tasks' runs in one pool: the finds first, then the grids, task by task)."""
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    tasks = tasks or TASKS
    rates = list(rates or grid_rates())
    chosen = [_task(tasks, n) for n in names]
    work: list[Job] = []
    for task in chosen:
        work += find_jobs(task, seeds)
    for task in chosen:
        work += grid_jobs(task, seeds, rates)
    results = run_jobs(work, cache, jobs, log)
    out: dict[str, TaskData] = {}
    for task in chosen:
        data = TaskData(task, list(seeds), {}, [], cache, jobs, log)
        data.finds = [results[Job.of("find", task, s)] for s in seeds]
        data.grid = {
            lr: [data.score(results[Job.of("train", task, s, lr)]) for s in seeds] for lr in rates
        }
        out[task.name] = data
    return out


def task_data(
    name: str,
    seeds: Sequence[int] = SEEDS,
    cache: Cache | str = DEFAULT_CACHE,
    jobs: int = 2,
    rates: Sequence[float] | None = None,
    log: Log | None = stderr_log,
    tasks: dict[str, Task] | None = None,
) -> TaskData:
    """One task's grid and range tests (see TaskData), trained where not cached."""
    return tasks_data([name], seeds, cache, jobs, rates, log, tasks)[name]


def _task(tasks: dict[str, Task], name: str) -> Task:
    if name not in tasks:
        raise KeyError(f"unknown benchmark task {name!r}; tasks: {', '.join(tasks)}")
    return tasks[name]


# --- regret of a choice of rates ----------------------------------------------------------


def interpolated_regret(data: TaskData, seed_index: int, lr: float | None) -> float:
    """Seed i's regret at `lr`, linear in log10(lr) between grid rates, clamped to the grid's
    ends; None (no suggestion) costs the seed's worst grid regret."""
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return data.worst_regret(seed_index)
    regrets = data.seed_regrets(seed_index)
    rates = sorted(regrets)
    return float(np.interp(math.log10(lr), np.log10(rates), [regrets[r] for r in rates]))


def trained_regrets(data: TaskData, lr_per_seed: Sequence[float | None]) -> list[float]:
    """Each seed's regret after really training at its rate (cached one-cycle runs)."""
    _check_seeds(data, lr_per_seed)
    jobs = {
        i: Job.of("train", data.task, seed, lr)
        for i, (seed, lr) in enumerate(zip(data.seeds, lr_per_seed, strict=True))
        if _usable(lr)
    }
    results = run_jobs(list(jobs.values()), data.cache, data.jobs, data.log)
    return [
        regret_of(data.score(results[jobs[i]]), data.best, data.regression)
        if i in jobs
        else data.worst_regret(i)
        for i in range(len(data.seeds))
    ]


def regret(data: TaskData, lr_per_seed: Sequence[float | None], train: bool = True) -> float:
    """Mean regret over seeds of peak rate `lr_per_seed[i]` for seed i.

    train=True trains one-cycle at those rates (cached); train=False is the fast estimate,
    interpolated on the grid (`interpolated_regret`). None (no suggestion) costs the seed's
    worst grid score either way.
    """
    if train:
        return statistics.fmean(trained_regrets(data, lr_per_seed))
    _check_seeds(data, lr_per_seed)
    return statistics.fmean(interpolated_regret(data, i, lr) for i, lr in enumerate(lr_per_seed))


def oracle_regret(data: TaskData, trainings: int = 1) -> float | None:
    """What perfect knowledge of the other seeds buys: the floor under every rule.

    Seed i trains at the `trainings` grid rates with the best mean over the OTHER seeds (every
    grid run of theirs is known) and keeps the best of its own runs; the mean over seeds of
    that regret. A rule sees one range test, so one training at a rate chosen this way is
    more than any rule knows; `verify` trains several rates and keeps the best, like
    trainings > 1. None with fewer than two seeds (there are no other seeds).
    """
    if len(data.seeds) < 2 or trainings < 1:
        return None
    sign = 1 if data.regression else -1
    regrets = []
    for i in range(len(data.seeds)):
        others = {
            lr: statistics.fmean(v for j, v in enumerate(scores) if j != i)
            for lr, scores in data.grid.items()
        }
        # The same order as best_lr: best mean first, the smaller rate on a tie.
        chosen = sorted(others, key=lambda lr: (sign * others[lr], lr))[:trainings]
        regrets.append(
            min(regret_of(data.grid[lr][i], data.best, data.regression) for lr in chosen)
        )
    return statistics.fmean(regrets)


def _usable(lr: float | None) -> bool:
    return lr is not None and math.isfinite(lr) and lr > 0


def _check_seeds(data: TaskData, lr_per_seed: Sequence[float | None]) -> None:
    if len(lr_per_seed) != len(data.seeds):
        raise ValueError(
            f"{data.name}: one rate per seed expected ({len(data.seeds)} seeds: {data.seeds}), "
            f"got {len(lr_per_seed)}"
        )


def rule_rates(rule: Rule, data: TaskData) -> list[float | None]:
    """The rate `rule(lr, loss, smoothed_loss)` picks on each seed's range test."""
    picks: list[float | None] = []
    for i in range(len(data.seeds)):
        lr, loss, smoothed = data.find_arrays(i)
        picked = rule(lr, loss, smoothed)
        picks.append(None if picked is None else float(picked))
    return picks


def evaluate(
    rule: Rule,
    tasks: Sequence[str],
    seeds: Sequence[int] = SEEDS,
    train: bool = False,
    cache: Cache | str = DEFAULT_CACHE,
    jobs: int = 2,
    log: Log | None = stderr_log,
) -> dict[str, float]:
    """Per task, the mean regret over seeds of the rates `rule(lr, loss, smoothed_loss)` picks
    on each seed's range test (train: real runs, or the grid interpolation)."""
    data = tasks_data(tasks, seeds, cache, jobs, log=log)
    if not train:
        return {name: regret(d, rule_rates(rule, d), train=False) for name, d in data.items()}
    # One pool for every task's runs, then read back from the cache.
    work = [
        Job.of("train", d.task, seed, lr)
        for d in data.values()
        for seed, lr in zip(d.seeds, rule_rates(rule, d), strict=True)
        if _usable(lr)
    ]
    run_jobs(work, data[tasks[0]].cache if tasks else Cache(cache), jobs, log)
    return {name: regret(d, rule_rates(rule, d), train=True) for name, d in data.items()}
