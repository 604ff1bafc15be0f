"""The workflows a notebook calls: the same runs as the CLI, without parsing or drawing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lrtool
from lrtool.cli import app
from lrtool.errors import ConfigError, RunFailed

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_three_notebook_lines_give_what_the_cli_gives(tiny_yaml, tmp_path, monkeypatch):
    cli = invoke("train", tiny_yaml, "--lr-max", "auto", "--refind", "--out", tmp_path / "cli")
    assert cli.exit_code == 0, cli.output
    saved = json.loads((tmp_path / "cli" / "train.json").read_text())
    found = json.loads((tmp_path / "cli" / "find.json").read_text())
    refound = json.loads((tmp_path / "cli" / "refind.json").read_text())

    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    exp = lrtool.load_experiment(tiny_yaml)
    run = lrtool.run_train(exp, lr_max="auto", refind=True)
    assert run.train.final == saved["final"]  # same seed on the CPU: bit-identical
    assert run.find.suggested_lr == found["suggested_lr"]
    assert run.train.lr_max == saved["lr_max"]
    assert run.refind.history == refound["history"]
    assert run.folder is None and sorted(p.name for p in tmp_path.iterdir()) == [
        "cli",
        "exp.yaml",
    ]


def test_run_train_saves_what_the_cli_saves_into_a_folder(tiny_yaml, tmp_path):
    run = lrtool.run_train(lrtool.load_experiment(tiny_yaml), 0.1, folder=tmp_path / "nb")
    names = sorted(p.name for p in (tmp_path / "nb").iterdir())
    assert names == [
        "checkpoint.pt",
        "config.yaml",
        "epochs.csv",
        "model.pt",
        "train.csv",
        "train.json",
    ]
    assert json.loads((tmp_path / "nb" / "train.json").read_text())["final"] == run.train.final
    assert run.resumable and run.stop_reason == "completed"
    run.raise_for_stop()  # a completed run: nothing to raise


def test_load_experiment_takes_flag_values_or_set_strings(tiny_yaml):
    by_value = lrtool.load_experiment(tiny_yaml, overrides={"train.epochs": 3})
    by_text = lrtool.load_experiment(tiny_yaml, overrides=["train.epochs=3"])
    assert by_value.train.epochs == by_text.train.epochs == 3


def test_a_nan_run_is_returned_then_raised_as_the_cli_would(tiny_yaml):
    run = lrtool.run_train(lrtool.load_experiment(tiny_yaml), 1e6)
    assert run.stop_reason == "nan"
    with pytest.raises(RunFailed, match="NaN/inf"):
        run.raise_for_stop()


def test_run_train_without_a_rate_is_refused(tiny_yaml):
    with pytest.raises(ConfigError, match="train needs a peak rate"):
        lrtool.run_train(lrtool.load_experiment(tiny_yaml))


def test_run_find_seeds_as_a_count_and_progress_per_sweep(tiny_yaml):
    labels = []

    def progress(steps, label):
        from contextlib import nullcontext

        labels.append((steps, label))
        return nullcontext()

    exp = lrtool.load_experiment(tiny_yaml, overrides={"find.num_steps": 12})
    result = lrtool.run_find(exp, seeds=2, progress=progress)
    assert labels == [(12, "find (seed 0)"), (12, "find (seed 1)")]
    assert [s["seed"] for s in result.seeds] == [0, 1]


def test_run_verify_takes_a_list_of_rates(tiny_yaml, tmp_path):
    told = []
    exp = lrtool.load_experiment(tiny_yaml, overrides={"train.epochs": 1})
    result = lrtool.run_verify(
        exp, lrs=[1e-2, 1e-1], folder=tmp_path, on_candidates=lambda *a: told.append(a)
    )
    assert told == [([1e-2, 1e-1], "accuracy", "lrs", None)]  # a metric ranks, when there is one
    assert json.loads((tmp_path / "verify.json").read_text())["best_lr"] == result.best_lr


def test_run_smoke_returns_its_line_and_saves_on_request(tiny_yaml, tmp_path):
    run = lrtool.run_smoke("find", lrtool.load_experiment(tiny_yaml), batches=2)
    assert run.line.startswith("lrtool smoke: ok (find, ")
    assert run.save(tmp_path / "s") == tmp_path / "s"
    assert (tmp_path / "s" / "find.json").is_file()


def test_the_cli_holds_no_orchestration():
    source = (Path(lrtool.__file__).parent / "cli.py").read_text()
    for engine_call in ("find_built", "train_built", "verify_rates", "checked_build(", "for seed"):
        assert engine_call not in source, engine_call
    assert "candidate_rates" not in source and "bracket_centre" not in source


def test_nothing_in_the_package_imports_the_benchmarks():
    package = Path(lrtool.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n in (".bench", "lrtool.bench") for n in names), path.name


def test_results_read_back_what_the_cli_saved_and_save_it_again(tiny_yaml, tmp_path):
    from lrtool import results

    cli = tmp_path / "cli"
    assert invoke("train", tiny_yaml, "--lr-max", "auto", "--refind", "--out", cli).exit_code == 0
    verify = invoke("verify", tiny_yaml, "--lrs", "0.01,0.1", "--epochs", "1", "--out", cli / "v")
    assert verify.exit_code == 0, verify.output
    exp = lrtool.load_experiment(tiny_yaml)
    for name, cls in [
        ("find.json", results.FindResult),
        ("refind.json", results.FindResult),
        ("train.json", results.TrainResult),
        ("v/verify.json", results.VerifyResult),
    ]:
        result = results.read(cli / name)
        assert isinstance(result, cls), name
        assert result.to_dict() == json.loads((cli / name).read_text()), name
        # Each into a folder of its own: save never mixes a result into another run's files.
        again = results.save(tmp_path / "again" / name.replace("/", "-"), result, exp)
        assert (again / Path(name).name).read_bytes() == (cli / name).read_bytes(), name
    refind = tmp_path / "again" / "refind.json" / "refind.csv"
    assert refind.read_bytes() == (cli / "refind.csv").read_bytes()


def test_results_save_refuses_a_folder_holding_another_runs_files(tiny_yaml, tmp_path):
    from lrtool import results

    found = lrtool.run_find(lrtool.load_experiment(tiny_yaml), folder=tmp_path / "f")
    trained = lrtool.run_train(
        lrtool.load_experiment(tiny_yaml), lr_max=0.01, folder=tmp_path / "t"
    )
    before = {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()}
    exp = lrtool.load_experiment(tiny_yaml)
    with pytest.raises(ConfigError, match="already holds another run's files"):
        results.save(tmp_path / "f", trained.train, exp)
    assert {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()} == before
    with pytest.raises(ConfigError, match="is a file"):
        results.save(tmp_path / "f" / "find.json", found, exp)
    # A refused call makes no folder: an empty one would be refused as "used" by nothing,
    # but it is litter the user did not ask for.
    for bad_exp, message in (("exp.yaml", "exp must be the Experiment"), (None, "needs its")):
        with pytest.raises(ConfigError, match=message):
            results.save(tmp_path / "new", found, bad_exp)
        assert not (tmp_path / "new").exists()


def test_results_read_refuses_a_file_that_is_no_result(tmp_path):
    from lrtool import results

    path = tmp_path / "x.json"
    path.write_text('{"history": {"lr": []}, "kind": "train", "epochs": []}')
    with pytest.raises(ConfigError, match="not a whole TrainResult"):
        results.read(path)


def test_moved_names_still_import_from_their_old_homes():
    from lrtool import freezing, results, schedule, train, verify

    assert train.TrainResult is results.TrainResult
    assert verify.VerifyResult is results.VerifyResult and verify.Round is results.Round
    for name in ("frozen", "last_group_only", "norm_parameters", "NORM_TYPES"):
        assert getattr(train, name) is getattr(freezing, name), name
    for name in ("one_cycle_scheduler", "momentum_key", "steps_per_epoch"):
        assert getattr(train, name) is getattr(schedule, name), name
    assert results.TrainResult.__module__ == "lrtool.results"


def test_no_import_cycle_in_the_package():
    """Imports point down (cli -> workflows -> engine), function-local ones included."""
    package = Path(lrtool.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        graph[name] = deps & modules

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph[start] - seen:
            seen.add(dep)
            if dep == target or reaches(dep, target, seen):
                return True
        return False

    assert [m for m in sorted(modules) if reaches(m, m, set())] == []
    # Nothing imports the CLI but the entry point, the console script above it.
    assert "cli" not in set().union(*(deps for m, deps in graph.items() if m != "entry"))
    assert not graph["entry"] - {"cli"}


def test_smoke_train_takes_one_rate_per_group(tiny_yaml):
    """A per-group list of peaks (the tiny mlp has 2 groups) passes `check` and trains; the smoke
    run must take it too (it used to expand it for 1 group and refuse it)."""
    exp = lrtool.load_experiment(tiny_yaml, ["train.lr_max=[0.01, 0.1]"])
    run = lrtool.run_smoke("train", exp, batches=2)
    assert run.result.lr_max == [0.01, 0.1]


def test_read_never_takes_weights_from_json(tiny_yaml, tmp_path):
    from lrtool import results

    lrtool.run_verify(lrtool.load_experiment(tiny_yaml, {"train.epochs": 1}), lrs=[0.01, 0.1],
                      folder=tmp_path / "v")  # fmt: skip
    data = json.loads((tmp_path / "v" / "verify.json").read_text())
    data["model_state"] = {"not": "weights"}
    (tmp_path / "edited.json").write_text(json.dumps(data))
    assert results.read(tmp_path / "edited.json").model_state is None


def test_save_writes_the_config_the_result_ran(tiny_yaml, tmp_path):
    import yaml

    from lrtool import results

    exp = lrtool.load_experiment(tiny_yaml, {"train.epochs": 1})
    trained = lrtool.run_train(exp, lr_max=0.05, folder=tmp_path / "t")
    results.save(tmp_path / "copy", trained.train, exp)  # exp says lr_max: null
    saved = yaml.safe_load((tmp_path / "copy" / "config.yaml").read_text())
    assert saved["train"]["lr_max"] == 0.05
    assert (tmp_path / "copy" / "config.yaml").read_text() == (
        tmp_path / "t" / "config.yaml"
    ).read_text()


def test_a_seeds_curve_says_why_it_stops_where_it_stops(tiny_yaml):
    """The median curve ends with the shortest sweep: its stop reason, not seed 0's (a find
    said "completed after 38 steps" where seed 0 completed 40 and seed 1 diverged at 38)."""
    from lrtool.history import FindResult
    from lrtool.run import combine_seeds

    def sweep(seed, steps, reason):
        lrs = [1e-4 * 1.3**i for i in range(steps)]
        losses = [1.0 - 0.01 * i for i in range(steps)]
        history = {"lr": lrs, "loss": losses, "smoothed_loss": losses}
        return FindResult(0.01, "robust_minimum", {"robust_minimum": 0.01}, history, reason,
                          steps, seed, "cpu", 0.1)  # fmt: skip

    exp = lrtool.load_experiment(tiny_yaml)
    combined = combine_seeds([sweep(0, 40, "completed"), sweep(1, 38, "diverged")], exp)
    assert (combined.stop_reason, combined.steps) == ("diverged", 38)
    level = combine_seeds([sweep(0, 40, "completed"), sweep(1, 40, "diverged")], exp)
    assert level.stop_reason == "diverged"
    done = combine_seeds([sweep(0, 40, "completed"), sweep(1, 40, "completed")], exp)
    assert done.stop_reason == "completed"


@pytest.mark.parametrize("workflow", ["find", "train", "verify"])
def test_a_workflow_holds_its_folder_while_it_runs_as_the_cli_does(tiny_yaml, tmp_path, workflow):
    """A notebook's run_find(folder=...) held no lock: `lrtool find --out` on the same folder
    meanwhile was accepted and one of the two results was lost."""
    import os
    import subprocess
    import sys
    from contextlib import nullcontext

    from lrtool.history import LOCK_NAME

    folder = tmp_path / "shared"
    seen = []

    def progress(*args, **kwargs):
        if not seen:
            seen.append((folder / LOCK_NAME).read_text())
            other = subprocess.run(
                [sys.executable, "-m", "lrtool", "find", str(tiny_yaml), "--out", str(folder),
                 "--no-plot"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            seen.append((other.returncode, other.stderr))
        return nullcontext()

    exp = lrtool.load_experiment(tiny_yaml, overrides={"train.epochs": 1})
    if workflow == "find":
        lrtool.run_find(exp, folder=folder, progress=progress)
    elif workflow == "train":
        lrtool.run_train(exp, 0.1, folder=folder, train_progress=progress)
    else:
        lrtool.run_verify(exp, lrs=[0.01, 0.1], folder=folder, on_run=progress)
    assert seen, "the progress callback never ran"
    assert seen[0] == str(os.getpid())
    code, said = seen[1]
    assert code == 2 and "is writing into" in " ".join(said.split()), said
    assert not (folder / LOCK_NAME).exists()  # released at the end


def test_run_find_takes_a_numpy_count_of_seeds(tiny_yaml):
    import numpy as np

    exp = lrtool.load_experiment(tiny_yaml, overrides={"find.num_steps": 12})
    assert [s["seed"] for s in lrtool.run_find(exp, seeds=np.int64(2)).seeds] == [0, 1]
