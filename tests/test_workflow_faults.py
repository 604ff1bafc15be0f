"""Faults of the fourth adversarial pass, on the training workflows: a verify whose every run
diverged, resume of a finished run, Ctrl-C in a multi-cycle run, epochs recorded past the kept
checkpoint, and accumulation longer than an epoch."""

from __future__ import annotations

import json
from contextlib import contextmanager

from typer.testing import CliRunner

from lrtool.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


# --- verify: every candidate diverged ------------------------------------------------------


def test_a_verify_whose_every_run_diverged_fails_and_ranks_none(tiny_yaml, tmp_path):
    out = tmp_path / "v"
    result = invoke("verify", tiny_yaml, "--lrs", "1e3,1e4", "--out", out, "--no-plot")
    assert result.exit_code == 1, result.output
    assert "every full-length run diverged" in result.output
    assert "Traceback" not in result.output
    data = json.loads((out / "verify.json").read_text())
    assert data["best_lr"] is None and data["model_lr"] is None
    runs = [run for c in data["candidates"] for run in c["rounds"]]
    assert runs and all(run["stop_reason"] == "nan" for run in runs)
    # A diverged run has no rank and was not kept as the winner.
    assert all(run["rank"] is None and run["kept"] is False for run in runs)
    # It cost what it trained before the NaN, not its whole plan (2 runs x 2 epochs).
    assert 0 < data["budget_epochs_total"] < 4
    assert not (out / "model.pt").exists()


# --- resume: a finished run, a checkpoint cut by Ctrl-C, several cycles --------------------


def test_a_finished_run_is_not_resumed_and_its_files_stay(tiny_yaml, tmp_path):
    out = tmp_path / "run"
    assert invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", out, "--no-plot").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke("train", tiny_yaml, "--resume", out, "--no-plot")
    assert result.exit_code == 2, result.output
    assert "finished (all 2 epochs)" in result.output and "nothing to resume" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_epoch_whose_checkpoint_ctrl_c_cut_is_not_reported(tiny_yaml, tmp_path, monkeypatch):
    """Ctrl-C while epoch 2's checkpoint is written: train.json lists epoch 1 only, the one
    whose weights model.pt holds."""
    import lrtool.train as train_module

    real = train_module.save_checkpoint
    calls = []

    def save_then_ctrl_c(folder, state):
        calls.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # before the new checkpoint replaced epoch 1's
        return real(folder, state)

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_ctrl_c)
    out = tmp_path / "run"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--epochs", "3", "--out", out)
    assert result.exit_code == 130, result.output
    assert calls == [1, 2]
    saved = json.loads((out / "train.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1]
    assert saved["final"]["val_loss"] == saved["epochs"][0]["val_loss"]
    assert (out / "model.pt").exists() and (out / "checkpoint.pt").exists()


def test_ctrl_c_in_a_multi_cycle_run_says_why_nothing_resumes(tiny_yaml, tmp_path, monkeypatch):
    import lrtool.run

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lrtool.run, "find_built", interrupted)  # as cycle 2's re-find starts
    out = tmp_path / "run"
    result = invoke(
        "train", tiny_yaml, "--lr-max", "0.1", "--cycles", "2", "--out", out, "--no-plot"
    )
    assert result.exit_code == 130, result.output
    text = " ".join(result.output.split())
    assert "before the first epoch ended" not in text
    assert "cannot be resumed" in text and "no model.pt" in text
    assert not (out / "model.pt").exists()
    again = invoke("train", tiny_yaml, "--cycles", "2", "--resume", out, "--no-plot")
    assert again.exit_code == 2 and "cannot be resumed" in " ".join(again.output.split())


# --- accumulation longer than an epoch ----------------------------------------------------


def test_accumulating_more_batches_than_an_epoch_holds_is_refused(tiny_yaml, tmp_path):
    # iris: 120 training samples, batch 16 -> 7 whole mini-batches (the last is dropped)
    out = tmp_path / "run"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--grad-accum", "100", "--out", out)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "train.grad_accum is 100, more than the 7 mini-batches of an epoch" in text
    assert not out.exists()
    assert invoke("check", tiny_yaml, "--set", "train.grad_accum=100").exit_code == 2
    ok = invoke("train", tiny_yaml, "--lr-max", "0.1", "--grad-accum", "7", "--out", out, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["effective_batch_size"] == 16 * 7


def test_progress_lines_number_epochs_on_across_cycles(tiny_yaml, tmp_path):
    from lrtool.workflows import load_experiment, run_train

    told: list[int] = []

    @contextmanager
    def progress(steps_per_epoch, epochs):
        yield None, lambda record: told.append(record["epoch"])

    exp = load_experiment(tiny_yaml, {"train.cycles": 2, "train.epochs": 4})
    run = run_train(exp, 0.1, train_progress=progress)
    assert told == [1, 2, 3, 4] == [e["epoch"] for e in run.train.epochs]


# --- --smoke leaves no temporary folder behind -------------------------------------------------


def test_smoke_without_out_leaves_no_folder_unless_json_names_it(tiny_yaml, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = invoke("find", tiny_yaml, "--smoke")
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob("lrtool-smoke-*"))
    result = invoke("find", tiny_yaml, "--smoke", "--json")
    assert result.exit_code == 0, result.output
    kept = list(tmp_path.glob("lrtool-smoke-*"))
    assert len(kept) == 1
    printed = result.stdout[: result.stdout.rindex("}") + 1]  # the JSON, before the summary
    assert json.loads(printed)["folder"] == str(kept[0])
    assert (kept[0] / "find.json").is_file()


def test_the_real_progress_display_survives_cycles_of_several_epochs(tiny_yaml, tmp_path):
    """Each cycle has its own display, sized to its epochs, while the records number on: the
    display must count its own epochs (it removed its bar at epoch 3 of a 2-epoch cycle)."""
    import io
    import re

    from rich.console import Console

    from lrtool import report
    from lrtool.workflows import load_experiment, run_train

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    exp = load_experiment(tiny_yaml, {"train.cycles": 2, "train.epochs": 4})
    run = run_train(
        exp,
        0.1,
        folder=tmp_path / "run",
        train_progress=lambda steps, epochs: report.train_progress(console, steps, epochs),
    )
    assert run.train.stop_reason == "completed"
    assert [e["epoch"] for e in run.train.epochs] == [1, 2, 3, 4]
    printed = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", console.file.getvalue())
    assert all(f"epoch {n}:" in printed for n in (1, 2, 3, 4)), printed
    assert (tmp_path / "run" / "train.json").is_file()
