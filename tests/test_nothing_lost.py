"""Nothing lost (issue 13): folders checked before the work, never shared, every finished seed
kept on Ctrl-C, resume refusing what it cannot honour, readable files, sound refind advice."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from lrtool.cli import app, refind_advice
from lrtool.history import new_run_folder
from lrtool.run import refind_rise, resume_conflicts

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def replace_build(monkeypatch, stand_in) -> None:
    """Put `stand_in` wherever lrtool's modules hold `build` (each imports it by name).

    Every lrtool module is imported first: one imported for the first time while the stand-in
    is in place would keep it for good (later tests then saw the stand-in).
    """
    import importlib
    import pkgutil

    import lrtool.build

    for info in pkgutil.walk_packages(lrtool.__path__, "lrtool."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    real = lrtool.build.build
    for name, module in list(sys.modules.items()):
        if name.startswith("lrtool.") and getattr(module, "build", None) is real:
            monkeypatch.setattr(module, "build", stand_in)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if anything gets built: the command must stop before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run started before its output folder was checked")

    replace_build(monkeypatch, refuse)


def interrupting_sweep(label_to_stop: str, at_step: int):
    """A stand-in for report.sweep_progress that presses Ctrl-C in one labelled sweep."""

    @contextmanager
    def sweep(console, total, label="find"):
        def on_step(step, *args):
            if label == label_to_stop and step == at_step:
                raise KeyboardInterrupt

        yield on_step

    return sweep


def interrupting_training(at_step: int):
    """A stand-in for report.train_progress whose step callback presses Ctrl-C."""

    @contextmanager
    def training(console, steps, epochs):
        def on_step(step, *args):
            if step == at_step:
                raise KeyboardInterrupt

        yield on_step, lambda record: None

    return training


# --- the output folder is checked before any work -----------------------------------------


COMMANDS = [
    ("find",),
    ("train", "--lr-max", "0.1"),
    ("verify", "--lrs", "1e-3,1e-2"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_out_on_a_file_or_under_one_exits_2_before_any_work(tiny_yaml, tmp_path, no_work, command):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    for out, why in ((a_file, "is a file"), (a_file / "sub", "a part of the path is a file")):
        result = invoke(command[0], tiny_yaml, *command[1:], "--out", out, "--no-plot")
        assert result.exit_code == 2, result.output
        text = one_line(result.output)
        assert f"cannot write files to {out}" in text and why in text
        assert "Traceback" not in result.output
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_dir_exits_2_before_any_work(write_yaml, tmp_path, no_work):
    from conftest import TINY

    runs = tmp_path / "runs"
    runs.mkdir(mode=0o555)
    try:
        result = invoke("find", write_yaml(TINY + f"output_dir: {runs}\n"), "--no-plot")
    finally:
        runs.chmod(0o755)
    assert result.exit_code == 2 and "permission denied" in one_line(result.output)


def test_unwritable_folder_is_reported_before_any_work(tiny_yaml, tmp_path, no_work, monkeypatch):
    # Root ignores permissions, so the refusal is staged: the probe file cannot be created.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("lrtool.history.tempfile.mkstemp", denied)
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", tmp_path / "o", "--no-plot")
    assert result.exit_code == 2
    assert "permission denied" in one_line(result.output)


def test_plot_save_under_a_file_exits_2(tiny_yaml, tmp_path):
    pytest.importorskip("matplotlib")
    assert invoke("find", tiny_yaml, "--out", tmp_path / "f", "--no-plot").exit_code == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = invoke("plot", tmp_path / "f" / "find.json", "--save", a_file / "curve.png")
    assert result.exit_code == 2 and "it is a file, not a folder" in one_line(result.output)


# --- every run gets a folder of its own ---------------------------------------------------


def test_run_folders_started_in_the_same_second_differ(tmp_path):
    first = new_run_folder(tmp_path / "runs" / "tiny", "20261128-165702-find")
    second = new_run_folder(tmp_path / "runs" / "tiny", "20261128-165702-find")
    assert first.name == "20261128-165702-find" and second.name == "20261128-165702-find-2"
    assert first.is_dir() and second.is_dir()


def test_two_finds_in_the_same_second_keep_both_results(write_yaml, tmp_path, monkeypatch):
    from conftest import TINY

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lrtool.cli.time.strftime", lambda fmt: "20261128-165702")
    path = write_yaml(TINY)
    outputs = [invoke("find", path, "--no-plot", "--json") for _ in range(2)]
    folders = [json.loads(r.stdout)["folder"] for r in outputs]
    assert folders == ["runs/tiny/20261128-165702-find", "runs/tiny/20261128-165702-find-2"]
    for r, folder in zip(outputs, folders, strict=True):
        saved = json.loads((tmp_path / folder / "find.json").read_text())
        assert saved["elapsed_s"] == json.loads(r.stdout)["elapsed_s"]  # each kept its own


def test_two_processes_started_together_print_different_folders(write_yaml, tmp_path):
    from conftest import TINY

    path = write_yaml(TINY.replace("num_steps: 30", "num_steps: 8"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lrtool", "find", str(path), "--no-plot", "--json"]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    folders = {json.loads(out)["folder"] for out in outs}
    assert len(folders) == 2
    assert all((tmp_path / f / "find.json").is_file() for f in folders)


def test_out_holding_another_runs_results_is_refused(tiny_yaml, tmp_path):
    out = tmp_path / "out"
    assert invoke("find", tiny_yaml, "--out", out, "--no-plot").exit_code == 0
    before = (out / "find.json").read_bytes()
    again = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", out, "--no-plot")
    assert again.exit_code == 2
    assert "already holds another run's files (find.json" in one_line(again.output)
    assert "--resume" not in again.output  # no checkpoint there: nothing to resume
    assert (out / "find.json").read_bytes() == before and not (out / "train.json").exists()


def test_plot_save_never_overwrites_what_is_not_a_png(tiny_yaml, tmp_path):
    """--save onto the JSON being drawn, the experiment file, a folder or a non-.png name is
    refused before anything is written; an older PNG is replaced (redrawing a chart)."""
    pytest.importorskip("matplotlib")
    assert invoke("find", tiny_yaml, "--out", tmp_path / "f", "--no-plot").exit_code == 0
    found = tmp_path / "f" / "find.json"
    kept = {p: p.read_bytes() for p in (found, tiny_yaml)}
    for target, words in [
        (found, "ending in .png"),
        (tiny_yaml, "ending in .png"),
        (tmp_path / "curve.txt", "ending in .png"),
        (tmp_path / "f", "is a folder"),
    ]:
        result = invoke("plot", found, "--save", target)
        assert result.exit_code == 2 and words in one_line(result.output), result.output
    not_png = tmp_path / "notes.png"
    not_png.write_text("my notes")
    result = invoke("plot", found, "--save", not_png)
    assert result.exit_code == 2 and "is not a PNG image" in one_line(result.output)
    assert not_png.read_text() == "my notes" and not (tmp_path / "curve.txt").exists()
    assert all(p.read_bytes() == data for p, data in kept.items())
    chart = tmp_path / "chart.png"
    assert invoke("plot", found, "--save", chart).exit_code == 0
    assert invoke("plot", found, "--save", chart).exit_code == 0  # replaces its own PNG
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_a_failed_run_leaves_no_empty_folder(write_yaml, tmp_path, monkeypatch):
    from conftest import TINY

    monkeypatch.chdir(tmp_path)
    bad = write_yaml(TINY.replace("sklearn.iris", "sklearn.no_such_loader"))
    assert invoke("find", bad, "--no-plot").exit_code == 2
    assert not list(tmp_path.glob("runs/tiny/*"))


# --- Ctrl-C during find --seeds -----------------------------------------------------------


def test_ctrl_c_in_the_second_seed_keeps_the_first(tiny_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr("lrtool.report.sweep_progress", interrupting_sweep("find (seed 3)", 5))
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--seeds", "0,3,7", "--no-plot")
    assert result.exit_code == 130
    data = json.loads((tmp_path / "find.json").read_text())
    assert data["stop_reason"] == "interrupted"
    assert data["seeds_finished"] == 1 and data["seeds_requested"] == 3
    first, cut = data["seeds"]
    assert first["seed"] == 0 and first["stop_reason"] != "interrupted"
    assert cut["seed"] == 3 and cut["stop_reason"] == "interrupted" and cut["steps"] == 5
    # The curve and the consensus are those of the finished seed, not cut to 5 steps.
    assert data["history"] == first["history"] and data["steps"] == first["steps"] > 5
    assert data["suggested_lr"] == data["consensus_lr"] == pytest.approx(first["suggested_lr"])
    with (tmp_path / "find.csv").open() as f:
        assert len(list(csv.reader(f))) == first["steps"] + 1
    assert "1 of 3 seeds finished" in one_line(result.output)


def test_ctrl_c_between_two_seeds_still_writes_the_finished_one(tiny_yaml, tmp_path, monkeypatch):
    from lrtool.build import build

    calls = []

    def build_then_ctrl_c(exp, **kwargs):
        calls.append(exp.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # while the second seed's model is being built
        return build(exp, **kwargs)

    replace_build(monkeypatch, build_then_ctrl_c)
    result = invoke("find", tiny_yaml, "--out", tmp_path / "f", "--seeds", "2", "--no-plot")
    assert result.exit_code == 130
    data = json.loads((tmp_path / "f" / "find.json").read_text())
    assert data["seeds_finished"] == 1 and [s["seed"] for s in data["seeds"]] == [0]
    assert data["suggested_lr"] == pytest.approx(data["seeds"][0]["suggested_lr"])


# --- resume -------------------------------------------------------------------------------


@pytest.fixture
def cut_run(tiny_yaml, tmp_path, monkeypatch):
    """A train run stopped by Ctrl-C in its second epoch (7 steps an epoch): its folder."""
    folder = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr("lrtool.report.train_progress", interrupting_training(10))
        stopped = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", folder, "--no-plot")
    assert stopped.exit_code == 130
    return folder, stopped


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        (["--set", "seed=4"], "seed: 0 → 4"),
        (
            ["--set", "optimizer.args.weight_decay=0.01"],
            "optimizer.args.weight_decay: '(unset)' → 0.01",
        ),
        (["--set", "data.batch_size=8"], "data.batch_size: 16 → 8"),
        (["--set", "optimizer.name=rmsprop"], "optimizer.name: 'sgd' → 'rmsprop'"),
        (["--set", "model.args.hidden=[16]"], "model.args.hidden: [8] → [16]"),
    ],
    ids=["seed", "weight_decay", "batch_size", "optimizer", "model"],
)
def test_resume_refuses_a_changed_run_listing_each_key(tiny_yaml, cut_run, change, listed):
    folder, _ = cut_run
    config = (folder / "config.yaml").read_text()
    result = invoke("train", tiny_yaml, "--resume", folder, *change, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert listed in result.output and "checkpoint → now" in result.output
    assert (folder / "config.yaml").read_text() == config  # nothing rewritten


def test_resume_conflicts_ignores_what_does_not_change_the_run():
    saved = {
        "name": "a",
        "seed": 0,
        "device": "cpu",
        "output_dir": "runs",
        "find": {"num_steps": 100},
        "train": {"epochs": 5, "eval_every": "epoch", "lr_max": "auto"},
        "optimizer": {"name": "sgd", "args": {}},
    }
    current = {
        "name": "b",
        "seed": 0,
        "device": "cuda",
        "output_dir": "elsewhere",
        "find": {"num_steps": 30},
        "train": {"epochs": 5, "eval_every": 3, "lr_max": 0.1},
        "optimizer": {"name": "sgd", "args": {"weight_decay": 0.1}},
    }
    assert resume_conflicts(saved, current) == [("optimizer.args.weight_decay", "(unset)", 0.1)]


def test_resume_a_checkpoint_file_takes_its_rate_and_prints_how_to_resume(
    tiny_yaml, tmp_path, cut_run
):
    whole = tmp_path / "whole"
    assert invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", whole, "--no-plot").exit_code == 0
    folder, stopped = cut_run
    # The printed command resumes; the rate comes from the checkpoint (no --lr-max in it).
    line = next(x for x in stopped.output.splitlines() if x.startswith("to resume: "))
    words = shlex.split(line.removeprefix("to resume: "))
    assert words[:2] == ["lrtool", "train"] and "--lr-max" not in words
    assert words[-2:] == ["--resume", str(folder)]
    words[-1] = str(folder / "checkpoint.pt")  # the file works as well as the folder
    resumed = invoke(*words[1:])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(folder / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["lr_max"] == 0.1


def test_resume_of_an_auto_run_does_not_run_the_finder_again(tiny_yaml, tmp_path, monkeypatch):
    folder = tmp_path / "auto"
    with monkeypatch.context() as patch:
        patch.setattr("lrtool.report.train_progress", interrupting_training(10))
        stopped = invoke("train", tiny_yaml, "--lr-max", "auto", "--out", folder, "--no-plot")
    assert stopped.exit_code == 130
    found = json.loads((folder / "find.json").read_text())

    def no_finder(*args, **kwargs):
        raise AssertionError("resume ran the finder again")

    monkeypatch.setattr("lrtool.run.find_built", no_finder)
    for k, lr_max in enumerate(([], ["--lr-max", "auto"])):
        cut = shutil.copytree(folder, tmp_path / f"cut-{k}")  # a finished run is not resumed
        resumed = invoke("train", tiny_yaml, *lr_max, "--resume", cut, "--json")
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["lr_max"] == pytest.approx(found["suggested_lr"])
        assert json.loads((cut / "find.json").read_text()) == found


def test_after_ctrl_c_model_pt_holds_the_weights_final_describes(cut_run):
    folder, _ = cut_run
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)
    model = torch.load(folder / "model.pt", weights_only=True)
    assert all(torch.equal(saved["model"][k], model[k]) for k in model)
    data = json.loads((folder / "train.json").read_text())
    assert data["final"]["val_loss"] == data["epochs"][-1]["val_loss"] is not None
    assert len(data["history"]["step"]) > saved["progress"]["step"]  # the partial epoch kept


def test_ctrl_c_in_the_first_epoch_writes_no_model_and_says_so(tiny_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr("lrtool.report.train_progress", interrupting_training(3))
    out = tmp_path / "early"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", out, "--no-plot")
    assert result.exit_code == 130
    assert "no checkpoint to resume from" in result.output
    assert not (out / "model.pt").exists() and (out / "train.json").exists()


# --- files are as readable as any other ------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_follow_the_umask(tiny_yaml, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        result = invoke("train", tiny_yaml, "--lr-max", "auto", "--out", out, "--no-plot")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert {"find.json", "train.csv", "config.yaml", "model.pt", "checkpoint.pt"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}


# --- the refind advice --------------------------------------------------------------------


def flat_noisy_then_rising(seed: int):
    """A re-find curve like digits' after training: flat at 0.02 with batch noise of e^(±0.5)
    (a trained model's batch losses vary tenfold), rising as lr^3 from 1.0, cut where the
    sweep's smoothed loss passes 4x its best (the finder's stop). Returns lr, raw, EMA loss."""
    rng = np.random.default_rng(seed)
    lr = np.geomspace(1e-5, 10, 100)
    loss = 0.02 * np.exp(0.5 * rng.standard_normal(lr.size))
    loss *= np.where(lr > 1.0, lr**3, 1.0)
    smoothed, average = [], 0.0
    for i, value in enumerate(loss, start=1):  # bias-corrected EMA, beta 0.98, as find_lr
        average = 0.98 * average + 0.02 * value
        smoothed.append(average / (1 - 0.98**i))
    smoothed = np.array(smoothed)
    stop = int(np.flatnonzero(smoothed > 4 * np.minimum.accumulate(smoothed))[0]) + 1
    return lr[:stop], loss[:stop], smoothed[:stop]


@pytest.mark.parametrize("seed", range(6))
def test_refind_rise_is_found_where_the_curve_rises_not_in_the_noise(seed):
    lr, loss, _ = flat_noisy_then_rising(seed)
    assert 1.0 / 4 < refind_rise(lr, loss) < 1.0 * 1.5


def test_refind_rise_needs_a_rise():
    lr = np.geomspace(1e-6, 1, 60)
    assert refind_rise(lr, np.full(60, 0.3)) is None
    assert refind_rise(lr, 0.3 * (1 + 0.05 * np.sin(np.arange(60)))) is None
    assert refind_rise(lr[:3], [0.3, 0.3, 3.0]) is None


def test_refind_advice_reads_the_raw_loss_not_the_noisy_start():
    # On this curve the old rule (running minimum of the EMA + 10 % of its range) said 1.7e-05:
    # the EMA's first, least averaged, steps.
    lr, loss, smoothed = flat_noisy_then_rising(2)
    refound = type("Refound", (), {})()
    refound.lr, refound.loss, refound.smoothed_loss = list(lr), list(loss), list(smoothed)
    advice = refind_advice(refound)
    rise = float(advice.split("near ")[1].split(";")[0])
    assert 1.0 / 4 < rise < 1.0 * 1.5, advice
    assert f"use about {rise / 10:.2e}" in advice


# --- one step numbering, and --json says where the files went ------------------------------


def test_find_and_train_count_steps_from_one(tiny_yaml, tmp_path):
    invoke("train", tiny_yaml, "--lr-max", "auto", "--out", tmp_path / "t", "--no-plot")
    with (tmp_path / "t" / "find.csv").open() as f:
        find_rows = list(csv.DictReader(f))
    with (tmp_path / "t" / "train.csv").open() as f:
        train_rows = list(csv.DictReader(f))
    assert find_rows[0]["step"] == train_rows[0]["step"] == "1"
    assert int(find_rows[-1]["step"]) == len(find_rows)
    data = json.loads((tmp_path / "t" / "train.json").read_text())
    assert data["history"]["step"][0] == 1
    assert [int(r["step"]) for r in train_rows] == data["history"]["step"]


def test_json_says_where_the_files_went(write_yaml, tmp_path, monkeypatch):
    from conftest import TINY

    monkeypatch.chdir(tmp_path)
    path = write_yaml(TINY)
    found = json.loads(invoke("find", path, "--json").stdout)
    assert Path(found["folder"]).parent == Path("runs/tiny")
    assert (tmp_path / found["folder"] / "find.json").is_file()
    trained = invoke("train", path, "--lr-max", "0.1", "--out", tmp_path / "t", "--json")
    assert json.loads(trained.stdout)["folder"] == str(tmp_path / "t")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _project(tmp_path, cut_run, checkpoint_name, **files):
    """A folder of the user's holding a copy of the cut run's checkpoint and `files`."""
    folder, _ = cut_run
    project = tmp_path / "project"
    project.mkdir()
    (project / checkpoint_name).write_bytes((folder / "checkpoint.pt").read_bytes())
    for name, text in files.items():
        (project / name.replace("_", ".")).write_text(text)
    return project


def test_resume_from_a_checkpoint_under_another_name_is_refused(tiny_yaml, tmp_path, cut_run):
    project = _project(
        tmp_path, cut_run, "mine.pt", config_yaml="my own settings\n", model_pt="my own model"
    )
    before = _snapshot(project)
    result = invoke("train", tiny_yaml, "--resume", project / "mine.pt", "--no-plot")
    assert result.exit_code == 2, result.output
    assert "not named checkpoint.pt" in one_line(result.output)
    assert _snapshot(project) == before  # nothing of the user's replaced, nothing added


def test_resume_into_a_folder_with_the_users_files_is_refused(tiny_yaml, tmp_path, cut_run):
    project = _project(tmp_path, cut_run, "checkpoint.pt", notes_txt="mine\n")
    before = _snapshot(project)
    result = invoke("train", tiny_yaml, "--resume", project, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "notes.txt" in one_line(result.output)
    assert _snapshot(project) == before


def test_resume_beside_another_runs_folder_inside_resumes_and_leaves_it(
    tiny_yaml, tmp_path, cut_run
):
    """`--out run/sub` inside an interrupted run's folder made the run unresumable ("holds
    files an lrtool run did not write (sub)"): a folder inside is nothing a resume replaces."""
    folder, _ = cut_run
    inner = folder / "sub"
    found = invoke("find", tiny_yaml, "--out", inner, "--no-plot")
    assert found.exit_code == 0, found.output
    before = _snapshot(inner)
    result = invoke("train", tiny_yaml, "--resume", folder, "--no-plot")
    assert result.exit_code == 0, result.output
    assert _snapshot(inner) == before


def test_resume_beside_a_config_yaml_that_is_not_the_runs_is_refused(tiny_yaml, tmp_path, cut_run):
    project = _project(tmp_path, cut_run, "checkpoint.pt", config_yaml="name: something else\n")
    before = _snapshot(project)
    result = invoke("train", tiny_yaml, "--resume", project, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "not the configuration the checkpoint was written with" in one_line(result.output)
    assert _snapshot(project) == before


def test_a_checkpoint_copied_alone_into_an_empty_folder_resumes(tiny_yaml, tmp_path, cut_run):
    fresh = _project(tmp_path, cut_run, "checkpoint.pt")
    result = invoke("train", tiny_yaml, "--resume", fresh, "--no-plot")
    assert result.exit_code == 0, result.output
    assert (fresh / "train.json").is_file() and (fresh / "model.pt").is_file()


def test_a_run_whose_loss_became_nan_saves_no_model(tiny_yaml, tmp_path):
    folder = tmp_path / "nan"
    result = invoke("train", tiny_yaml, "--lr-max", "1e6", "--out", folder, "--no-plot")
    assert result.exit_code == 1, result.output
    assert json.loads((folder / "train.json").read_text())["stop_reason"] == "nan"
    assert not (folder / "model.pt").exists()  # its weights would be NaN


def test_ctrl_c_with_eval_every_in_steps_reports_the_model_it_keeps(
    tiny_yaml, tmp_path, monkeypatch
):
    """Evaluations every 5 steps, checkpoints at each epoch's end (7 steps an epoch): Ctrl-C
    at step 11 keeps the step-7 weights; `final` must describe those, not the step-5 ones."""
    from lrtool.build import build
    from lrtool.config import load_experiment
    from lrtool.engine import evaluate

    folder = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr("lrtool.report.train_progress", interrupting_training(11))
        stopped = invoke(
            "train",
            tiny_yaml,
            "--lr-max",
            "0.1",
            "--out",
            folder,
            "--no-plot",
            "--set",
            "train.eval_every=5",
        )
    assert stopped.exit_code == 130, stopped.output
    data = json.loads((folder / "train.json").read_text())
    assert max(e["step"] for e in data["evals"]) == 7  # nothing after the kept weights
    built = build(load_experiment(tiny_yaml))
    built.model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    values = evaluate(built.model, built.val_data, built.loss_fn, built.metrics)
    assert data["final"]["val_loss"] == pytest.approx(values["val_loss"], rel=1e-6)
    assert data["final"]["accuracy"] == pytest.approx(values["accuracy"])


def test_a_second_run_into_a_folder_another_run_holds_is_refused(tiny_yaml, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / ".lrtool-lock").write_text(str(holder.pid))
        result = invoke("find", tiny_yaml, "--out", folder, "--no-plot")
        assert result.exit_code == 2, result.output
        assert f"another lrtool run (process {holder.pid})" in one_line(result.output)
        assert sorted(p.name for p in folder.iterdir()) == [".lrtool-lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_and_removed(tiny_yaml, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".lrtool-lock").write_text(str(dead.pid))
    result = invoke("find", tiny_yaml, "--out", folder, "--no-plot")
    assert result.exit_code == 0, result.output
    assert (folder / "find.json").is_file() and not (folder / ".lrtool-lock").exists()


def test_a_run_holds_its_folder_while_it_writes(tiny_yaml, tmp_path, monkeypatch):
    from lrtool import history

    seen = []
    real = history.write_text_atomic

    def spy(path, text):
        seen.append((Path(path).parent / ".lrtool-lock").read_text())
        return real(path, text)

    monkeypatch.setattr(history, "write_text_atomic", spy)
    folder = tmp_path / "run"
    assert invoke("find", tiny_yaml, "--out", folder, "--no-plot").exit_code == 0
    assert seen and set(seen) == {str(os.getpid())}
    assert not (folder / ".lrtool-lock").exists()


def test_resume_from_another_folder_with_a_relative_data_path(tmp_path, monkeypatch):
    """The CSV sits beside the YAML and is named relative to it: the run is started from the
    parent folder and resumed from inside the YAML's folder. Both name the same file."""
    sub = tmp_path / "sub"
    sub.mkdir()
    rows = ["a,b,c,d,label"] + [
        f"{i % 7},{(3 * i) % 5},{i % 3},{(i * i) % 11},{'xyz'[i % 3]}" for i in range(60)
    ]
    (sub / "data.csv").write_text("\n".join(rows) + "\n")
    (sub / "exp.yaml").write_text(
        "name: rel\nmodel: {name: mlp, args: {in_features: 4, hidden: [8], num_classes: 3}}\n"
        "data: {name: csv, args: {path: data.csv, target: label}, batch_size: 8}\n"
        "train: {epochs: 2}\n"
    )
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr("lrtool.report.train_progress", interrupting_training(8))
        stopped = invoke("train", "sub/exp.yaml", "--lr-max", "0.1", "--out", folder, "--no-plot")
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.chdir(sub)
    resumed = invoke("train", "exp.yaml", "--resume", folder, "--no-plot")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((folder / "train.json").read_text())["stop_reason"] == "completed"


def test_resume_beside_result_files_without_a_config_yaml_is_refused(tiny_yaml, tmp_path, cut_run):
    """A killed run leaves its checkpoint alone; a model.pt or train.csv beside it without
    the config.yaml lrtool writes with them is the user's."""
    project = _project(
        tmp_path, cut_run, "checkpoint.pt", model_pt="my own model", train_csv="a,b\n"
    )
    before = _snapshot(project)
    result = invoke("train", tiny_yaml, "--resume", project, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "model.pt, train.csv but no config.yaml" in one_line(result.output)
    assert _snapshot(project) == before


def test_a_held_folder_refuses_smoke_runs_and_resumes_naming_the_flag(tiny_yaml, tmp_path, cut_run):
    folder, _ = cut_run
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for target in (folder, tmp_path / "other"):
            target.mkdir(exist_ok=True)
            (target / ".lrtool-lock").write_text(str(holder.pid))
        resumed = invoke("train", tiny_yaml, "--resume", folder, "--no-plot")
        assert resumed.exit_code == 2 and "--resume: another lrtool run" in one_line(resumed.output)
        assert str(folder / ".lrtool-lock") in one_line(resumed.output)  # how to clear it
        smoke = invoke("find", tiny_yaml, "--smoke", "--out", tmp_path / "other")
        assert smoke.exit_code == 2 and "another lrtool run" in one_line(smoke.output)
        assert sorted(p.name for p in (tmp_path / "other").iterdir()) == [".lrtool-lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_that_is_a_folder_is_one_clear_error(tiny_yaml, tmp_path):
    (tmp_path / "d" / ".lrtool-lock").mkdir(parents=True)
    result = invoke("find", tiny_yaml, "--out", tmp_path / "d", "--no-plot")
    assert result.exit_code == 2, result.output
    assert "cannot claim" in one_line(result.output) and "Traceback" not in result.output


def test_train_auto_shows_the_finders_warning(tiny_yaml, tmp_path):
    result = invoke(
        "train",
        tiny_yaml,
        "--lr-max",
        "auto",
        "--out",
        tmp_path / "t",
        "--no-plot",
        "--set",
        "find.start_lr=1e-4",
        "--set",
        "find.end_lr=0.03",
        "--set",
        "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    warning = json.loads((tmp_path / "t" / "find.json").read_text())["warning"]
    assert "still falling" in warning and warning[:40] in one_line(result.output)


def test_a_path_written_relative_by_an_older_run_is_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b\n")
    saved = {"data": {"args": {"path": "d.csv"}}}
    current = {"data": {"args": {"path": str(tmp_path / "d.csv")}}}
    assert resume_conflicts(saved, current) == []
    other = {"data": {"args": {"path": str(tmp_path / "e.csv")}}}
    assert resume_conflicts(saved, other) == [
        ("data.args.path", "d.csv", other["data"]["args"]["path"])
    ]


def test_ctrl_c_in_the_first_seed_says_whose_curve_was_saved(tiny_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr("lrtool.report.sweep_progress", interrupting_sweep("find (seed 0)", 5))
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--seeds", "0,3", "--no-plot")
    assert result.exit_code == 130
    data = json.loads((tmp_path / "find.json").read_text())
    assert data["steps"] == 5 and data["suggested_lr"] is None
    text = one_line(result.output)
    assert "before any of the 2 seeds finished" in text and "seed 0's sweep" in text
    assert "the consensus and the curve are theirs" not in text


STOPPER = """
import torch.nn.functional as F

STATE = {"calls": 0, "stop_at": 0, "nan_at": 0}


def ce(output, target):
    STATE["calls"] += 1
    if STATE["calls"] == STATE["stop_at"]:
        raise KeyboardInterrupt
    loss = F.cross_entropy(output, target)
    return loss * float("nan") if STATE["nan_at"] and STATE["calls"] >= STATE["nan_at"] else loss
"""


@pytest.fixture
def state(tmp_path, monkeypatch):
    """STOPPER's STATE: its loss raises Ctrl-C at call `stop_at` and is NaN from `nan_at`."""
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "stopper_loss.py").write_text(STOPPER)
    # This test's own file, as lrtool imports it (not another test's, cached by name).
    monkeypatch.delitem(sys.modules, "stopper_loss", raising=False)
    module = importlib.import_module("stopper_loss")
    module.STATE.update(calls=0, stop_at=0, nan_at=0)
    return module.STATE


def test_a_resumed_run_that_hits_nan_keeps_no_model_pt_of_other_weights(tiny_yaml, tmp_path, state):
    import lrtool

    exp = lrtool.load_experiment(tiny_yaml, {"loss.name": "stopper_loss:ce", "train.epochs": 3})
    run = tmp_path / "run"
    # Ctrl-C in epoch 2: model.pt holds epoch 1's weights, as checkpoint.pt does.
    state.update(calls=0, stop_at=14)
    first = lrtool.run_train(exp, 0.1, folder=run)
    assert first.train.stop_reason == "interrupted" and (run / "model.pt").is_file()
    # The resumed run goes NaN later: train.json now describes a run that kept no weights.
    state.update(calls=0, stop_at=0, nan_at=14)
    resumed = lrtool.run_train(exp, resume=run)
    assert resumed.train.stop_reason == "nan"
    assert not (run / "model.pt").exists() and (run / "checkpoint.pt").is_file()
    assert json.loads((run / "train.json").read_text())["stop_reason"] == "nan"


def test_resuming_with_fewer_epochs_is_a_conflict_not_a_finished_run(tiny_yaml, tmp_path, state):
    import lrtool
    from lrtool.errors import ConfigError

    exp = lrtool.load_experiment(tiny_yaml, {"loss.name": "stopper_loss:ce", "train.epochs": 4})
    state.update(calls=0, stop_at=22, nan_at=0)  # in epoch 3: the checkpoint holds epoch 2
    first = lrtool.run_train(exp, 0.1, folder=tmp_path / "run")
    assert first.train.stop_reason == "interrupted" and len(first.train.epochs) == 2
    state.update(calls=0, stop_at=0)
    forgot = lrtool.load_experiment(tiny_yaml, {"loss.name": "stopper_loss:ce"})  # epochs 2
    with pytest.raises(ConfigError) as err:
        lrtool.run_train(forgot, resume=tmp_path / "run")
    assert "train.epochs: 4 → 2" in str(err.value) and "finished" not in str(err.value)


def test_an_interrupted_run_folder_advises_resuming_it(tiny_yaml, tmp_path, state):
    import lrtool

    exp = lrtool.load_experiment(tiny_yaml, {"loss.name": "stopper_loss:ce", "train.epochs": 3})
    state.update(calls=0, stop_at=14, nan_at=0)  # in epoch 2, after the first checkpoint
    assert lrtool.run_train(exp, 0.1, folder=tmp_path / "run").train.stop_reason == "interrupted"
    state.update(calls=0, stop_at=0)
    result = invoke("find", tiny_yaml, "--no-plot", "--out", tmp_path / "run")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"lrtool train {tmp_path / 'run' / 'config.yaml'} --resume {tmp_path / 'run'}" in text


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_a_result_is_saved_waits_for_its_last_file(
    tiny_yaml, tmp_path, monkeypatch, sig
):
    import signal

    import lrtool
    from lrtool import history
    from lrtool.results import write_result

    exp = lrtool.load_experiment(tiny_yaml)
    found = lrtool.run_find(exp)
    first_write = history.write_json

    def signalled(*args, **kwargs):  # the signal arrives once the first file is written
        out = first_write(*args, **kwargs)
        os.kill(os.getpid(), getattr(signal, sig))
        return out

    def interrupt(signum, frame):  # as the CLI has it (interrupt_on_sigterm)
        raise KeyboardInterrupt

    monkeypatch.setattr(history, "write_json", signalled)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_result(tmp_path / "f", found, exp)
        assert signal.getsignal(signal.SIGTERM) is interrupt  # handlers put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "config.yaml", "find.csv", "find.json"
    ]  # fmt: skip


def test_a_cycle_cut_short_records_the_epochs_it_trained(tiny_yaml, tmp_path, state):
    import lrtool

    overrides = {"loss.name": "stopper_loss:ce", "train.epochs": 4, "train.cycles": 2}
    exp = lrtool.load_experiment(tiny_yaml, overrides)
    state.update(calls=0, stop_at=13, nan_at=0)  # in the second epoch of cycle 1
    run = lrtool.run_train(exp, 0.1, folder=tmp_path / "run")
    assert run.train.stop_reason == "interrupted" and len(run.train.epochs) == 1
    assert [c["epochs"] for c in run.train.cycles] == [1]
    saved = json.loads((tmp_path / "run" / "train.json").read_text())
    assert [c["epochs"] for c in saved["cycles"]] == [1]
    # One cycle, stopped the same way: the record says 1 epoch of the 4 planned.
    state.update(calls=0, stop_at=13)
    single = lrtool.load_experiment(tiny_yaml, {"loss.name": "stopper_loss:ce", "train.epochs": 4})
    run = lrtool.run_train(single, 0.1, folder=tmp_path / "one")
    assert run.train.stop_reason == "interrupted" and run.train.cycles[0]["epochs"] == 1


def test_a_second_ctrl_c_while_a_stopped_find_gathers_its_seeds_loses_nothing(
    tiny_yaml, tmp_path, monkeypatch
):
    import signal

    import lrtool
    from lrtool import run

    sweeps, combine = [], run.combine_seeds
    find_built = run.find_built

    def sweep(built, on_step=None):
        sweeps.append(1)
        if len(sweeps) == 2:  # the first Ctrl-C, as the second seed starts
            os.kill(os.getpid(), signal.SIGINT)
        return find_built(built, on_step)

    def gather(*args, **kwargs):  # the second, while the finished seed is gathered
        os.kill(os.getpid(), signal.SIGINT)
        return combine(*args, **kwargs)

    monkeypatch.setattr(run, "find_built", sweep)
    monkeypatch.setattr(run, "combine_seeds", gather)
    try:
        result = lrtool.run_find(lrtool.load_experiment(tiny_yaml), "2", folder=tmp_path / "f")
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped, and the finished seed was not saved")
    assert result.stop_reason == "interrupted" and result.seeds_finished == 1
    saved = json.loads((tmp_path / "f" / "find.json").read_text())
    assert saved["seeds_finished"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_resume_of_a_folder_that_does_not_exist_says_so(tiny_yaml, tmp_path):
    """It spoke of a lock file that could not be created."""
    result = invoke("train", tiny_yaml, "--resume", tmp_path / "no-such-run", "--no-plot")
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert "no-such-run does not exist" in text and "lock" not in text
    assert not (tmp_path / "no-such-run").exists()


def test_out_on_a_dangling_symbolic_link_is_named_as_one(tiny_yaml, tmp_path):
    """It was called "a file, not a folder", which sends the user looking for a file."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    result = invoke("find", tiny_yaml, "--out", link, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "is a symbolic link to" in one_line(result.output) and "does not exist" in one_line(
        result.output
    )
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_a_folder_claimed_twice_by_one_process_passes_errors_through_and_keeps_its_lock(
    tmp_path,
):
    """The CLI claims --out and the workflow it calls claims it again: the inner claim must
    neither swallow an error (a ValueError from the user's model became "generator didn't
    stop after throw()") nor release the outer claim's lock."""
    from lrtool.history import LOCK_NAME, claimed

    with claimed(tmp_path):
        with pytest.raises(ValueError, match="boom"):
            with claimed(tmp_path):
                raise ValueError("boom")
        assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()
