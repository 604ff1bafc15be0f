"""The command-line surface is the same everywhere: a flag for every find:/train: key, --seed,
--set and --debug wherever an experiment or a file is read, --no-plot wherever a chart is
drawn; plot reads verify.json; charts without colour tell their series apart."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from lrtool.cli import app
from lrtool.config import FindSpec, TrainSpec
from lrtool.finder import smooth
from lrtool.saved import redraw_settings, resuggested

runner = CliRunner()
COMMAND = typer.main.get_command(app)


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def flags(command: str) -> set[str]:
    params = COMMAND.commands[command].params  # type: ignore[attr-defined]
    return {opt for p in params for opt in (*p.opts, *p.secondary_opts)}


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


@pytest.mark.parametrize(("command", "spec"), [("find", FindSpec), ("train", TrainSpec)])
def test_every_key_of_the_section_has_a_flag(command: str, spec: type) -> None:
    missing = [flag(key) for key in spec.model_fields if flag(key) not in flags(command)]
    assert not missing, f"{command} lacks {missing}"


@pytest.mark.parametrize("command", ["check", "find", "train", "verify", "plot", "compare"])
def test_set_and_debug_wherever_an_experiment_or_a_file_is_read(command: str) -> None:
    assert {"--set", "--debug"} <= flags(command)


@pytest.mark.parametrize("command", ["check", "find", "train", "verify"])
def test_seed_is_a_flag(command: str) -> None:
    assert "--seed" in flags(command)


@pytest.mark.parametrize("command", ["find", "train", "verify", "plot", "compare"])
def test_no_plot_wherever_a_chart_is_drawn(command: str) -> None:
    assert {"--plot", "--no-plot"} <= flags(command)


def test_val_batches_and_seed_reach_the_run(tiny_yaml, tmp_path) -> None:
    out = tmp_path / "out"
    result = invoke(
        "find", tiny_yaml, "--out", out, "--no-plot", "--seed", "7", "--val-batches", "2"
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "find.json").read_text())
    assert data["seed"] == 7 and data["config"]["seed"] == 7
    assert data["config"]["find"]["val_batches"] == 2


@pytest.fixture
def saved(tiny_yaml, tmp_path):
    """A find.json, a train.json and a verify.json from real tiny runs."""
    for command, extra in (
        ("find", []),
        ("train", ["--lr-max", "0.1"]),
        ("verify", ["--lrs", "0.01,0.1,1"]),
    ):
        result = invoke(command, tiny_yaml, "--out", tmp_path / command, "--no-plot", *extra)
        assert result.exit_code == 0, result.output
    return {c: tmp_path / c / f"{c}.json" for c in ("find", "train", "verify")}


def test_plot_draws_verify_json(saved) -> None:
    result = invoke("plot", saved["verify"])
    assert result.exit_code == 0, result.output
    data = json.loads(saved["verify"].read_text())
    assert f"{data['metric']} after round 1 vs peak learning rate" in result.stdout
    assert f"best {data['best_lr']:.1e}" in result.stdout
    table = invoke("plot", saved["verify"], "--no-plot")
    assert table.exit_code == 0, table.output
    assert "Verified rates" in table.stdout and "┌" not in table.stdout  # a table, no chart
    assert f"{data['best_lr']:.2e}" in table.stdout


def test_compare_and_plot_take_no_plot(saved) -> None:
    result = invoke("compare", saved["find"], saved["find"], "--labels", "a,b", "--no-plot")
    assert result.exit_code == 0, result.output
    assert "Suggestions" in result.stdout and "learning rate" not in result.stdout
    plotted = invoke("plot", saved["train"], "--no-plot")
    assert plotted.exit_code == 0, plotted.output
    assert "Final metrics" in plotted.stdout and "schedule" not in plotted.stdout


def test_without_colour_the_series_differ_by_glyph(saved) -> None:
    """CliRunner's stdout is no terminal: the charts must not rely on colour."""
    result = invoke("compare", saved["find"], saved["find"], "--labels", "first,second")
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout
    assert "▚ first" in result.stdout and "• second" in result.stdout
    assert "•" in result.stdout.split("▚ first")[0]  # the second curve is drawn in its glyph
    train = invoke("plot", saved["train"])
    assert "▚ lr (left axis)" in train.stdout and "• momentum (right axis)" in train.stdout


def test_plot_and_compare_redraw_with_another_method_or_smoothing(saved) -> None:
    data = json.loads(saved["find"].read_text())
    result = invoke("plot", saved["find"], "--set", "find.suggest=valley")
    assert result.exit_code == 0, result.output
    assert f"valley {data['suggestions']['valley']:.1e} (default)" in result.stdout
    table = invoke("compare", saved["find"], "--set", "find.suggest=steep", "--no-plot")
    row = next(line for line in table.stdout.splitlines() if "suggested_lr" in line)
    assert f"{data['suggestions']['steep']:.2e}" in row
    again = resuggested(data, redraw_settings(["find.smoothing=0.5"]), "find.json")
    assert again["history"]["smoothed_loss"] == smooth(data["history"]["loss"], 0.5)
    assert again["suggested_lr"] == again["suggestions"][data["suggestion_method"]]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "train.epochs=3"], "--set train.epochs: a saved result is redrawn"),
        (["--set", "find.smoothing=1.5"], "find.smoothing"),
        (["--set", "find.suggest=nope"], "unknown method 'nope'"),
    ],
)
def test_plot_set_rejects_what_a_redraw_cannot_change(saved, args, words) -> None:
    result = invoke("plot", saved["find"], *args)
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output


def test_plot_set_on_a_training_history_says_why_not(saved) -> None:
    result = invoke("plot", saved["train"], "--set", "find.suggest=valley")
    assert result.exit_code == 2
    assert "redraws LR range tests" in result.output
