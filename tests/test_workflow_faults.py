"""Faults of the fourth adversarial pass, on the training workflows: a verify whose every run
diverged, resume of a finished run, Ctrl-C in a multi-cycle run, epochs recorded past the kept
checkpoint, and accumulation longer than an epoch."""

from __future__ import annotations

import json

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
