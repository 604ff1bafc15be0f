"""The benchmark's runs: one one-cycle training, one range test or one verify, cached on disk
and run in parallel worker processes.

Every run builds its experiment afresh with its seed and trains on one CPU thread, so its
result depends only on (task, seed, kind, rate), not on how many workers there are or which
ran it. Workers ignore Ctrl-C: the main process stops handing out runs, and the ones in
flight finish and are written (a run takes a second or two); a rerun picks up from there.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import verify
from ..build import build
from ..run import find_built, train_built
from ..verify import candidate_rates, verify_rates
from .cache import Cache, rate_key, run_key
from .tasks import Task

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    """One run: `train` at peak rate `lr`, a `find` (range test), or a `verify` around the
    suggested rate `lr`."""

    kind: str
    task: Task = field(hash=False, compare=False)
    seed: int
    lr: float | None = None
    task_name: str = ""

    @classmethod
    def of(cls, kind: str, task: Task, seed: int, lr: float | None = None) -> Job:
        return cls(kind, task, seed, None if lr is None else rate_key(lr), task.name)

    @property
    def key(self) -> dict[str, Any]:
        extra = None
        if self.kind == "find":
            # The sweep's settings as resolved (defaults included): a change to find's
            # defaults reruns the range tests, which are cheap, not the grid.
            settings = self.task.exp(self.seed).find.model_dump(mode="json")
            settings.pop("suggest", None)  # which rule is shown does not change the sweep
            extra = {"find": settings}
        if self.kind == "verify":
            # verify's own defaults: a changed schedule must not read an old pick.
            extra = {
                "verify": {
                    "factors": list(verify.DEFAULT_FACTORS),
                    "screen_fraction": verify.SCREEN_FRACTION,
                    "finalists": verify.FINALISTS,
                    "max_widenings": verify.MAX_WIDENINGS,
                }
            }
        return run_key(self.task.experiment, self.seed, self.kind, self.lr, extra)


# --- one run ------------------------------------------------------------------------------


def train_record(task: Task, seed: int, lr: float) -> dict[str, Any]:
    """One-cycle training at peak rate `lr` with the task's `train:` settings.

    `score` is the validation accuracy in % (classification) or the validation loss
    (regression) after the last epoch; None when the run diverged (a NaN or infinite loss:
    the last evaluation then predates the blow-up and is not the run's result).
    """
    result = train_built(build(task.exp(seed)), lr)
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    final = result.final
    score = None
    if result.stop_reason == "completed":
        value = final.get("val_loss") if task.regression else final.get("accuracy")
        if value is not None and math.isfinite(value):
            score = value if task.regression else 100 * value
    return {
        "score": score,
        "stop_reason": result.stop_reason,
        "final": final,
        "elapsed_s": result.elapsed_s,
    }


def find_record(task: Task, seed: int) -> dict[str, Any]:
    """The raw range test a user gets from `lrtool find` on the task's experiment (its `find:`
    settings, defaults unless the task sets them): the whole history, no suggestion, so any
    rule can be evaluated on it later."""
    result = find_built(build(task.exp(seed)))
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    return {
        **result.history,
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "elapsed_s": result.elapsed_s,
    }


def verify_record(task: Task, seed: int, suggested: float) -> dict[str, Any]:
    """`lrtool verify` around a suggested rate: successive halving over the default candidate
    rates, rounds capped at the task's `train.epochs`."""
    exp = task.exp(seed)
    result = verify_rates(
        exp, candidate_rates(suggested), max_epochs=exp.train.epochs, suggested_lr=suggested
    )
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    return {
        "best_lr": result.best_lr,
        "budget_epochs_total": result.budget_epochs_total,
        "candidates": [c["lr"] for c in result.candidates],
        "stop_reason": result.stop_reason,
        "elapsed_s": result.elapsed_s,
    }


def compute(job: Job) -> dict[str, Any]:
    if job.kind == "train":
        return train_record(job.task, job.seed, job.lr)
    if job.kind == "find":
        return find_record(job.task, job.seed)
    if job.kind == "verify":
        return verify_record(job.task, job.seed, job.lr)
    raise ValueError(f"unknown kind of run {job.kind!r}")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train on one thread, as the workers do, so results do not depend on --jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- many runs ----------------------------------------------------------------------------


def _default_context() -> str:
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker() -> None:
    # The main process handles Ctrl-C; a worker finishes the run it has and is shut down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _work(job: Job, folder: str) -> tuple[Job, dict[str, Any], float]:
    started = time.perf_counter()
    record = compute(job)
    Cache(folder).put(job.task_name, job.key, record)
    return job, record, time.perf_counter() - started


def _describe(job: Job, record: dict[str, Any], seconds: float) -> str:
    what = f"{job.task_name} seed {job.seed} {job.kind}"
    if job.kind == "train":
        score = record.get("score")
        shown = "diverged" if score is None else f"{score:.4g}"
        what += f" lr {job.lr:.3g}: {shown}"
    elif job.kind == "find":
        what += f": {record.get('steps')} steps, {record.get('stop_reason')}"
    else:
        what += f" around {job.lr:.3g}: best {record.get('best_lr')}"
    return f"{what} ({seconds:.1f} s)"


def run_jobs(
    jobs: Sequence[Job],
    cache: Cache,
    n_jobs: int = 2,
    log: Log | None = stderr_log,
    context: str | None = None,
) -> dict[Job, dict[str, Any]]:
    """The result of every job: read from the cache, or run (in `n_jobs` processes) and cached.

    Jobs start in the order given. Workers are forked where the platform can (a script that
    calls this needs no `if __name__ == "__main__":` guard, and workers start at once); they
    train on one thread, so the parent's thread pool is not used across the fork. Elsewhere
    they are spawned.
    """
    results: dict[Job, dict[str, Any]] = {}
    missing: list[Job] = []
    for job in dict.fromkeys(jobs):
        cached = cache.get(job.task_name, job.key)
        if cached is None:
            missing.append(job)
        else:
            results[job] = cached
    if not missing:
        return results
    total, done = len(missing), 0
    started = time.perf_counter()

    def report(job: Job, record: dict[str, Any], seconds: float) -> None:
        nonlocal done
        done += 1
        results[job] = record
        if log is not None:
            elapsed = time.perf_counter() - started
            log(f"[{done}/{total}, {elapsed:.0f} s] {_describe(job, record, seconds)}")

    if n_jobs <= 1 or len(missing) == 1:
        with one_thread():
            for job in missing:
                begun = time.perf_counter()
                record = compute(job)
                cache.put(job.task_name, job.key, record)
                report(job, record, time.perf_counter() - begun)
        return results

    folder = str(Path(cache.folder).resolve())
    pool = ProcessPoolExecutor(
        max_workers=min(n_jobs, len(missing)),
        mp_context=multiprocessing.get_context(context or _default_context()),
        initializer=_init_worker,
    )
    queue = list(reversed(missing))
    pending: set[Any] = set()
    try:
        # Keep only a few runs queued ahead, so Ctrl-C stops quickly and runs go in order.
        while queue or pending:
            while queue and len(pending) < 2 * n_jobs:
                pending.add(pool.submit(_work, queue.pop(), folder))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                report(*future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
