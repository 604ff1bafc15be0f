"""The suggestion benchmark: its fixed split, its tasks, its run cache and its regret maths.

Tests about caching replace the training and the range test with cheap deterministic stand-ins
(and count the calls); the tasks themselves are checked by one real step each.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lrtool.bench import runs
from lrtool.bench.cache import CACHE_VERSION, Cache, rate_key, run_key
from lrtool.bench.cli import main
from lrtool.bench.runs import Job, run_jobs
from lrtool.bench.suggest_quality import (
    TaskData,
    evaluate,
    grid_rates,
    interpolated_regret,
    oracle_regret,
    regret,
    regret_of,
    task_data,
    tasks_data,
)
from lrtool.bench.table import NOISE_ROW, ORACLE_ROWS, suggest_report
from lrtool.bench.tasks import TASKS, Task, design_tasks, held_out_tasks, is_held_out
from lrtool.build import build
from lrtool.config import validate
from lrtool.probe import first_step
from lrtool.suggest import DEFAULT_METHOD, SUGGESTERS

# --- the split and the tasks --------------------------------------------------------------

# Pinned: a task added, renamed or removed changes this list on purpose, never by accident.
HELD_OUT = [
    "digits-mlp-sgd",
    "digits-cnn-adamw",
    "wine-mlp-sgd",
    "digits-mlp-rmsprop",
    "diabetes-mlp-adam",
    "cancer-linear-adam",
    "classif-mlp-bn-sgd",
    "friedman2std-mlp-bn-adamw",
    "shapes-cnn-sgd",
    "digits16-cnn-sgd",
    "motifs-cnn1d-adam",
    "digits16-resnet-adamw",
    "noisylabels-mlp-dropout-adamw",
    "digits-bigbatch-nesterov",
    "tokencount-transformer-rmsprop",
    "hastie-mlp-bce-adagrad",
]


def test_the_held_out_split_is_pinned() -> None:
    assert held_out_tasks() == HELD_OUT
    assert design_tasks() == [n for n in TASKS if n not in HELD_OUT]
    # The rule, restated: sha256 of the name, modulo 3.
    for name in TASKS:
        digest = int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16)
        assert is_held_out(name) == (digest % 3 == 0)


def test_the_tasks_span_what_issue_12_asks_for() -> None:
    assert len(TASKS) >= 24
    families = {t.family for t in TASKS.values()}
    assert {"linear", "mlp", "mlp-bn-dropout", "cnn2d", "cnn1d", "resnet-bn", "rnn"} <= families
    assert "transformer" in families
    optimizers = {
        (t.optimizer, "momentum" in t.experiment["optimizer"].get("args", {}))
        for t in TASKS.values()
    }
    assert {("sgd", True), ("sgd", False)} <= optimizers
    assert {"adam", "adamw", "rmsprop"} <= {name for name, _ in optimizers}
    assert {"cross_entropy", "mse", "bce_with_logits"} <= {t.loss for t in TASKS.values()}
    batches = [t.experiment["data"]["batch_size"] for t in TASKS.values()]
    assert min(batches) == 16 and max(batches) == 256
    # The ten tasks the benchmark had before are still there.
    for name in ("digits-mlp-sgd", "friedman1-mlp-adam", "moons-mlp-adamw", "diabetes-mlp-adam"):
        assert name in TASKS


def test_every_task_validates_builds_and_takes_one_finite_step() -> None:
    for name, task in TASKS.items():
        exp = validate({"device": "cpu", **task.experiment}, source=name)
        loss = first_step(build(exp))
        assert math.isfinite(loss), name


def test_regression_tasks_are_scored_by_loss() -> None:
    assert TASKS["friedman1-mlp-adam"].regression
    assert TASKS["waves-cnn1d-sgd"].regression
    assert not TASKS["cancer-linear-adam"].regression  # BCE: scored by accuracy


def test_no_module_outside_the_bench_imports_it() -> None:
    package = Path(__file__).resolve().parents[1] / "lrtool"
    for path in package.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from .bench" not in text and "import lrtool.bench" not in text, path.name
        assert "from lrtool.bench" not in text, path.name


# --- the cache ----------------------------------------------------------------------------


def test_cache_round_trip_stores_non_finite_numbers_as_null(tmp_path) -> None:
    cache = Cache(tmp_path)
    key = run_key({"model": {"name": "mlp"}}, 0, "train", 0.0123456789)
    assert key["lr"] == 0.0123457 and key["version"] == CACHE_VERSION
    assert cache.get("t", key) is None
    path = cache.put("t", key, {"score": math.nan, "loss": [1.0, math.inf]})
    assert path.parent == tmp_path / "t" and path.name.startswith("train-")
    assert json.loads(path.read_text())["result"] == {"score": None, "loss": [1.0, None]}
    assert cache.get("t", key) == {"score": None, "loss": [1.0, None]}
    # Another seed, rate or kind is another run.
    assert cache.get("t", run_key({"model": {"name": "mlp"}}, 1, "train", 0.0123456789)) is None
    assert cache.get("t", run_key({"model": {"name": "mlp"}}, 0, "train", 0.0124)) is None


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    cache = Cache(tmp_path)
    key = run_key({}, 0, "train", 0.1)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put("t", key, {"score": 1.0})
    assert list((tmp_path / "t").iterdir()) == []
    assert cache.get("t", key) is None


def test_an_unreadable_file_counts_as_missing(tmp_path) -> None:
    cache = Cache(tmp_path)
    key = run_key({}, 0, "train", 0.1)
    path = cache.put("t", key, {"score": 1.0})
    path.write_text('{"key": ', encoding="utf-8")
    assert cache.get("t", key) is None


# --- stand-ins for training and the range test --------------------------------------------

SWEEP = np.geomspace(1e-7, 10, 100)


def fake_score(task: Task, seed: int, lr: float) -> float | None:
    """A smooth peak at 1e-2 (accuracy) or a valley (loss), diverged above 3."""
    if lr > 3:
        return None
    distance = abs(math.log10(lr) + 2)
    return 1.0 + distance + 0.01 * seed if task.regression else 90 - 10 * distance - seed


class Counter:
    def __init__(self, monkeypatch) -> None:
        self.train: list[tuple[str, int, float]] = []
        self.find: list[tuple[str, int]] = []
        self.verify: list[tuple[str, int, float]] = []
        monkeypatch.setattr(runs, "train_record", self.train_record)
        monkeypatch.setattr(runs, "find_record", self.find_record)
        monkeypatch.setattr(runs, "verify_record", self.verify_record)

    def train_record(self, task: Task, seed: int, lr: float) -> dict:
        self.train.append((task.name, seed, lr))
        return {"score": fake_score(task, seed, lr), "stop_reason": "completed"}

    def find_record(self, task: Task, seed: int) -> dict:
        self.find.append((task.name, seed))
        # A loss that falls until 1e-1 and then blows up.
        loss = 2.0 - np.tanh(np.log10(SWEEP) + 4) + np.where(SWEEP > 0.1, 50 * (SWEEP - 0.1), 0)
        return {
            "lr": SWEEP.tolist(),
            "loss": loss.tolist(),
            "smoothed_loss": loss.tolist(),
            "stop_reason": "completed",
        }

    def verify_record(self, task: Task, seed: int, suggested: float) -> dict:
        self.verify.append((task.name, seed, suggested))
        return {"best_lr": suggested * 3, "budget_epochs_total": 7.5, "stop_reason": "completed"}


TWO = ["iris-mlp-sgd", "friedman1-mlp-adam"]
RATES = grid_rates(1e-4, 1, 1)


def test_a_second_run_trains_nothing(tmp_path, monkeypatch) -> None:
    counter = Counter(monkeypatch)
    first = tasks_data(TWO, [0, 1], tmp_path, jobs=1, rates=RATES, log=None)
    assert len(counter.train) == 2 * 2 * len(RATES) and len(counter.find) == 2 * 2
    counter.train.clear(), counter.find.clear()
    second = tasks_data(TWO, [0, 1], tmp_path, jobs=1, rates=RATES, log=None)
    assert counter.train == [] and counter.find == []
    assert second["iris-mlp-sgd"].grid == first["iris-mlp-sgd"].grid
    # A new seed trains that seed only.
    tasks_data(TWO, [0, 1, 2], tmp_path, jobs=1, rates=RATES, log=None)
    assert {seed for _, seed, _ in counter.train} == {2} and len(counter.find) == 2


def test_ctrl_c_keeps_every_finished_run(tmp_path, monkeypatch) -> None:
    counter = Counter(monkeypatch)
    calls = []

    def interrupted_on_the_third(task, seed, lr):
        calls.append(lr)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return counter.train_record(task, seed, lr)

    monkeypatch.setattr(runs, "train_record", interrupted_on_the_third)
    task = TASKS["iris-mlp-sgd"]
    jobs = [Job.of("train", task, 0, lr) for lr in RATES]
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, Cache(tmp_path), 1, log=None)
    assert len(list((tmp_path / task.name).glob("*.json"))) == 2
    assert not list((tmp_path / task.name).glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(runs, "train_record", counter.train_record)
    counter.train.clear()
    run_jobs(jobs, Cache(tmp_path), 1, log=None)
    assert [lr for _, _, lr in counter.train] == RATES[2:]


def test_worker_processes_give_the_same_results_as_one_process(tmp_path) -> None:
    spec = {
        "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [8], "num_classes": 3}},
        "data": {"name": "sklearn.iris", "batch_size": 16},
        "train": {"epochs": 1},
    }
    task = Task("iris-tiny", "mlp", spec)
    jobs = [Job.of("train", task, seed, lr) for seed in (0, 1) for lr in (0.01, 0.1)]
    one = run_jobs(jobs, Cache(tmp_path / "one"), 1, log=None)
    two = run_jobs(jobs, Cache(tmp_path / "two"), 2, log=None)
    assert [one[j]["score"] for j in jobs] == [two[j]["score"] for j in jobs]
    assert len(list((tmp_path / "two" / "iris-tiny").glob("train-*.json"))) == 4


def test_verify_record_picks_one_of_its_candidates() -> None:
    spec = {
        "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [8], "num_classes": 3}},
        "data": {"name": "sklearn.iris", "batch_size": 16},
        "train": {"epochs": 2},
    }
    record = runs.verify_record(Task("iris-tiny", "mlp", spec), 0, 0.03)
    assert record["best_lr"] in record["candidates"]
    assert record["budget_epochs_total"] > 0


# --- regret -------------------------------------------------------------------------------


def _synthetic(regression: bool = False) -> TaskData:
    task = TASKS["friedman1-mlp-adam" if regression else "iris-mlp-sgd"]
    grid = (
        {1e-3: [2.0, 4.0], 1e-2: [1.0, 1.0], 1e-1: [3.0, math.inf]}
        if regression
        else {1e-3: [80.0, 70.0], 1e-2: [90.0, 100.0], 1e-1: [60.0, 50.0]}
    )
    return TaskData(task, [0, 1], grid, [], Cache("unused"), 1, None)


def test_interpolated_regret_is_exact_on_a_synthetic_grid() -> None:
    data = _synthetic()
    assert data.best_lr == 1e-2 and data.best == 95.0
    assert interpolated_regret(data, 0, 1e-2) == pytest.approx(5.0)
    assert interpolated_regret(data, 1, 1e-2) == pytest.approx(-5.0)
    # Halfway between 1e-3 and 1e-2 in log10(lr): halfway between the regrets.
    middle = math.sqrt(1e-3 * 1e-2)
    assert interpolated_regret(data, 0, middle) == pytest.approx((15 + 5) / 2)
    assert interpolated_regret(data, 1, middle) == pytest.approx((25 - 5) / 2)
    # Clamped at the ends; None costs the seed's worst grid regret.
    assert interpolated_regret(data, 0, 1e-6) == pytest.approx(15.0)
    assert interpolated_regret(data, 1, 5.0) == pytest.approx(45.0)
    assert interpolated_regret(data, 0, None) == pytest.approx(35.0)
    assert regret(data, [1e-2, middle], train=False) == pytest.approx((5 + 10) / 2)


def test_regression_regret_is_percent_and_a_diverged_run_is_1000() -> None:
    data = _synthetic(regression=True)
    assert data.best_lr == 1e-2 and data.best == 1.0
    assert interpolated_regret(data, 0, 1e-3) == pytest.approx(100.0)
    assert interpolated_regret(data, 1, 1e-1) == pytest.approx(1000.0)
    assert regret_of(math.inf, 1.0, True) == 1000.0
    assert regret_of(1e15, 1.0, True) == 1000.0  # diverged in all but name
    assert regret_of(88.0, 90.0, False) == 2.0


def test_the_oracle_trains_at_the_rates_best_on_the_other_seeds() -> None:
    task = TASKS["iris-mlp-sgd"]
    # Means 88, 92.5, 54.5: 1e-2 is the best rate. Seed 1 alone favours 1e-1, where seed 0
    # collapses; seed 0 alone favours 1e-2.
    grid = {1e-3: [80.0, 96.0], 1e-2: [95.0, 90.0], 1e-1: [10.0, 99.0]}
    data = TaskData(task, [0, 1], grid, [], Cache("unused"), 1, None)
    assert data.best == 92.5
    # One training: seed 0 at 1e-1 (10, regret 82.5), seed 1 at 1e-2 (90, regret 2.5).
    assert oracle_regret(data) == pytest.approx((82.5 + 2.5) / 2)
    # Two: seed 0 keeps the better of 1e-1 and 1e-3 (80), seed 1 of 1e-2 and 1e-3 (96).
    assert oracle_regret(data, trainings=2) == pytest.approx((12.5 - 3.5) / 2)
    # Every rate: each seed's own best run.
    assert oracle_regret(data, trainings=3) == pytest.approx(((92.5 - 95) + (92.5 - 99)) / 2)
    one_seed = TaskData(task, [0], {lr: v[:1] for lr, v in grid.items()}, [], Cache("u"), 1, None)
    assert oracle_regret(one_seed) is None


def test_the_oracle_breaks_ties_towards_the_smaller_rate_as_best_lr_does() -> None:
    task = TASKS["friedman1-mlp-adam"]
    grid = {1e-3: [5.0, 1.0, 3.0], 1e-2: [5.0, 1.0, 1.0], 1e-1: [9.0, 9.0, math.inf]}
    data = TaskData(task, [0, 1, 2], grid, [], Cache("unused"), 1, None)
    assert data.best_lr == 1e-2 and data.best == pytest.approx(7 / 3)
    # Seeds 0 and 1 go to 1e-2 (scores 5 and 1). For seed 2 the others tie at 1e-3 and 1e-2
    # (mean 3): the smaller rate, where it scores 3 (at 1e-2 it would have scored 1).
    best = 7 / 3
    expected = [100 * (score - best) / best for score in (5.0, 1.0, 3.0)]
    assert oracle_regret(data) == pytest.approx(sum(expected) / 3)


def test_trained_regret_trains_each_seed_once(tmp_path, monkeypatch) -> None:
    counter = Counter(monkeypatch)
    data = task_data("iris-mlp-sgd", [0, 1], tmp_path, jobs=1, rates=RATES, log=None)
    counter.train.clear()
    value = regret(data, [0.03, None], train=True)
    assert counter.train == [("iris-mlp-sgd", 0, rate_key(0.03))]
    best = data.best
    expected_seed0 = best - fake_score(data.task, 0, 0.03)
    assert value == pytest.approx((expected_seed0 + data.worst_regret(1)) / 2)
    regret(data, [0.03, None], train=True)
    assert len(counter.train) == 1  # cached


def test_evaluate_scores_a_rule_on_the_cached_range_tests(tmp_path, monkeypatch) -> None:
    Counter(monkeypatch)
    seen = []

    def rule(lr, loss, smoothed_loss):
        seen.append((lr.size, loss.size, smoothed_loss.size))
        return 1e-2

    fast = evaluate(rule, TWO, [0, 1], train=False, cache=tmp_path, jobs=1, log=None)
    trained = evaluate(rule, TWO, [0, 1], train=True, cache=tmp_path, jobs=1, log=None)
    assert set(fast) == set(TWO) and seen[0] == (100, 100, 100)
    # 1e-2 is a grid rate: the interpolation is the real run there.
    assert fast == pytest.approx(trained)


# --- the table and the command ------------------------------------------------------------


def test_the_report_has_every_row_and_the_leave_one_family_out_block(tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    names = ["iris-mlp-sgd", "friedman1-mlp-adam", "blobs-linear-sgd"]
    text = suggest_report(names, [0, 1], tmp_path, 1, RATES, verify=True, log=None)
    assert f"| {DEFAULT_METHOD} (default) |" in text
    for rule in SUGGESTERS:
        assert f"| {rule} |" in text or rule == DEFAULT_METHOD
    for row in ("| verify |", "(best single rate, chosen in hindsight)", NOISE_ROW):
        assert row in text
    for label in ORACLE_ROWS.values():
        assert f"| {label} |" in text
    assert "| mean | median | worst |" in text
    assert "| linear | 1 |" in text and "| mean over families |" in text
    assert "| blobs-linear-sgd | 7.5 |" in text
    assert len(counter.verify) == len(names) * 2
    # A second report trains nothing new.
    counter.train.clear(), counter.find.clear(), counter.verify.clear()
    assert suggest_report(names, [0, 1], tmp_path, 1, RATES, verify=True, log=None) == text
    assert counter.train == counter.find == counter.verify == []


def test_the_command_reports_a_bad_task_in_one_paragraph(capsys) -> None:
    assert main(["suggest", "--tasks", "no-such-task"]) == 2
    err = capsys.readouterr().err
    assert "unknown task no-such-task" in err and "digits-mlp-sgd" in err
    assert main(["prepare", "--grid", "1,0.1", "--tasks", "iris-mlp-sgd"]) == 2
    assert "--grid" in capsys.readouterr().err


def test_prepare_fills_the_cache_for_the_chosen_tasks(tmp_path, monkeypatch, capsys) -> None:
    counter = Counter(monkeypatch)
    args = ["prepare", "--tasks", "iris-mlp-sgd", "--cache", str(tmp_path), "--jobs", "1"]
    assert main([*args, "--seeds", "0", "--grid", "1e-3,1e-1", "--per-decade", "1"]) == 0
    assert len(counter.train) == 3 and len(counter.find) == 1
    assert "complete" in capsys.readouterr().out


def test_digits_images_keeps_the_classes_asked_for_relabelled_in_order():
    from lrtool.bench.datasets import digits_images

    whole = digits_images(size=8)
    part = digits_images(size=8, classes=[6, 7, 8, 9])
    labels = part.tensors[1]
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3]
    assert len(part) == int(sum((whole.tensors[1] == d).sum() for d in (6, 7, 8, 9)))

    # digit 9 becomes label 3: the first image of each is the same picture (each set is
    # standardised over its own pixels, so compare them standardised on their own)
    def alone(image: torch.Tensor) -> torch.Tensor:
        return (image - image.mean()) / image.std()

    nine = whole.tensors[0][whole.tensors[1] == 9][0]
    assert torch.allclose(alone(part.tensors[0][labels == 3][0]), alone(nine), atol=1e-4)


def test_resnet_fc_is_resnet_with_its_head_named_fc():
    from lrtool.bench.models import resnet, resnet_fc

    torch.manual_seed(0)
    plain = resnet(1, 6, width=4)
    torch.manual_seed(0)
    named = resnet_fc(1, 6, width=4)
    x = torch.randn(2, 1, 16, 16)
    assert named.fc.out_features == 6
    assert torch.equal(plain(x), named(x))


def test_the_cli_default_seeds_are_the_benchmark_seeds() -> None:
    from lrtool.bench.cli import DEFAULT_SEEDS
    from lrtool.bench.suggest_quality import SEEDS

    assert tuple(int(s) for s in DEFAULT_SEEDS.split(",")) == SEEDS


def test_suggest_shows_verify_by_default_and_not_with_no_verify(
    tmp_path, monkeypatch, capsys
) -> None:
    counter = Counter(monkeypatch)
    args = ["suggest", "--tasks", "iris-mlp-sgd", "--cache", str(tmp_path), "--jobs", "1"]
    args += ["--seeds", "0", "--grid", "1e-3,1e-1", "--per-decade", "1"]
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "| verify |" in shown and "Cost of verify" in shown
    assert len(counter.verify) == 1
    assert main([*args, "--no-verify"]) == 0
    shown = capsys.readouterr().out
    assert "| verify |" not in shown and "Cost of verify" not in shown
    assert len(counter.verify) == 1  # nothing more was verified


@pytest.mark.parametrize(
    "argv, message",
    [
        (["suggest", "--grid", "1e-5,inf"], "--grid expects finite rates"),
        (["speed", "--steps", "0"], "--repeats and --steps must be at least 1"),
        (["speed", "--repeats", "0"], "--repeats and --steps must be at least 1"),
        (["suggest", "--seeds", "4294967296"], "--seeds: every seed must be from 0"),
        (["suggest", "--cache", "{file}"], "--cache: cannot write files to"),
        (["finetune", "--seeds", "-1"], "--seeds: every seed must be from 0"),
    ],
)
def test_bad_numbers_and_caches_are_refused_before_any_run(tmp_path, capsys, argv, message):
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    argv = [a.replace("{file}", str(a_file)) for a in argv]
    with_tasks = argv[0] in ("prepare", "suggest")
    assert main([*argv, "--tasks", "iris-mlp-sgd"] if with_tasks else argv) == 2
    assert message in capsys.readouterr().err
    assert a_file.read_text() == "mine"


def test_sigterm_stops_the_benchmark_as_ctrl_c_does_leaving_no_workers(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "c"
    command = [
        sys.executable, "-m", "lrtool.bench", "prepare", "--tasks", "iris-mlp-sgd,wine-mlp-sgd",
        "--seeds", "0,1", "--per-decade", "4", "--jobs", "2", "--cache", str(cache),
    ]  # fmt: skip
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: orphaned workers would hold a pipe open
        proc = subprocess.Popen(command, stderr=err)
    deadline = time.monotonic() + 120
    while "\n[" not in "\n" + log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # until the first finished run: the pool is up and working
    workers = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert workers  # the pool's processes, to look for once the benchmark has stopped
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    time.sleep(2)  # workers finish the run in hand, then exit
    left = []
    for pid in workers:
        try:
            os.kill(int(pid), signal.SIGKILL)  # never leave one behind, whatever the outcome
            left.append(pid)
        except ProcessLookupError:
            pass
    assert code == 130, log.read_text()
    assert "Interrupted. Every finished run is in the cache" in log.read_text()
    assert not left, left


def test_every_fixed_rate_has_a_row_of_its_own_on_a_fine_grid():
    from lrtool.bench.table import _fixed_rows

    assert _fixed_rows([1e-3, 1e-2, 0.0017782794]) == ["fixed 0.001", "fixed 0.01", "fixed 0.0018"]
    fine = grid_rates(5, 5.5, 200)
    labels = _fixed_rows(fine)
    assert len(set(labels)) == len(fine) > 5


def test_a_grid_holds_both_ends_however_short():
    assert grid_rates(1, 1.5, 1) == [1.0, 1.5]
    assert grid_rates(1e-3, 1e-1, 1) == [1e-3, 1e-2, 1e-1]


def test_a_task_named_twice_is_one_task(tmp_path, monkeypatch, capsys):
    Counter(monkeypatch)
    args = ["prepare", "--tasks", "iris-mlp-sgd,iris-mlp-sgd", "--cache", str(tmp_path)]
    assert main([*args, "--jobs", "1", "--seeds", "0", "--grid", "1e-2,1e-1"]) == 0
    assert "of 1 tasks" in capsys.readouterr().out


def test_cache_files_take_the_umask_mode_like_run_files(tmp_path):
    old = os.umask(0o022)
    try:
        key = run_key({"model": {"name": "mlp"}}, 0, "train", 0.01)
        path = Cache(tmp_path).put("t", key, {"score": 1.0})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "argv, said",
    [
        (["speed", "--device", "banana", "--repeats", "1", "--steps", "1"], "--device expects"),
        (["speed", "--device", "cuda:7", "--repeats", "1", "--steps", "1"], "device: 'cuda:7'"),
        (["suggest", "--tasks", "iris-mlp-sgd", "--cache", ""], "--cache is empty"),
        (["suggest", "--tasks", "iris-mlp-sgd", "--per-decade", "10**12"], "at most 100"),
    ],
)
def test_bench_refuses_bad_flags_before_any_output(argv, said, capsys, tmp_path, monkeypatch):
    """A traceback (a device torch cannot parse, numpy's MemoryError), a table header before
    the error, or an unset $CACHE writing runs into the current folder."""
    monkeypatch.chdir(tmp_path)
    argv = [str(10**12) if a == "10**12" else a for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert said in err and out == "" and "Traceback" not in err
    assert not any(tmp_path.iterdir())
