"""The command line end to end: exit codes, files written, what stdout carries."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from lrtool.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_check_prints_groups_sizes_and_device(tiny_yaml):
    result = invoke("check", tiny_yaml)
    assert result.exit_code == 0, result.output
    assert "train 120" in result.output and "val 30" in result.output
    assert "group 1" in result.output and "group 2" in result.output
    assert "cpu" in result.output
    assert "forward + backward ok" in result.output


def test_schema_is_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "find" in schema["properties"] and "train" in schema["properties"]


def test_find_writes_json_csv_and_config(tiny_yaml, tmp_path):
    out = tmp_path / "out"
    result = invoke("find", tiny_yaml, "--out", out, "--no-plot")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "find.json").read_text())
    for key in (
        "suggested_lr",
        "suggestion_method",
        "suggestions",
        "history",
        "stop_reason",
        "steps",
        "seed",
        "device",
        "elapsed_s",
        "config",
        "versions",
    ):
        assert key in data
    assert set(data["history"]) == {"lr", "loss", "smoothed_loss"}
    assert len(data["history"]["lr"]) == data["steps"]
    assert data["config"]["find"]["num_steps"] == 30
    with (out / "find.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "lr", "loss", "smoothed_loss"]
    assert len(rows) == data["steps"] + 1
    assert float(rows[1][1]) == pytest.approx(data["history"]["lr"][0])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "tiny" and config["find"]["start_lr"] == 1e-4
    assert not list(out.glob(".*tmp"))  # no temp files left behind


def test_find_flags_override_the_file(tiny_yaml, tmp_path):
    result = invoke(
        "find",
        tiny_yaml,
        "--out",
        tmp_path,
        "--no-plot",
        "--num-steps",
        "12",
        "--mode",
        "linear",
        "--start-lr",
        "0.001",
        "--end-lr",
        "0.01",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "find.json").read_text())
    assert data["history"]["lr"][:2] == pytest.approx([0.001, 0.001 + 0.009 / 11])
    assert data["config"]["find"]["mode"] == "linear"


def test_find_json_prints_only_json_to_stdout(tiny_yaml, tmp_path):
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == json.loads((tmp_path / "find.json").read_text())


def test_find_default_folder_is_under_output_dir(write_yaml, tmp_path, monkeypatch):
    from conftest import TINY

    monkeypatch.chdir(tmp_path)
    path = write_yaml(TINY + "output_dir: results\n")
    assert invoke("find", path, "--no-plot").exit_code == 0
    runs = list((tmp_path / "results" / "tiny").glob("*-find"))
    assert len(runs) == 1 and (runs[0] / "find.json").exists()


def test_find_plot_draws_the_curve(tiny_yaml, tmp_path):
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--plot")
    assert result.exit_code == 0
    assert "valley" in result.stdout and "1e-" in result.stdout


def test_strict_without_suggestion_exits_3(tiny_yaml, tmp_path):
    # A sweep that starts far too high: the loss only rises, so nothing can be suggested.
    result = invoke(
        "find",
        tiny_yaml,
        "--out",
        tmp_path,
        "--no-plot",
        "--start-lr",
        "100",
        "--end-lr",
        "1e6",
        "--strict",
    )
    assert result.exit_code == 3
    assert "no learning rate could be suggested" in result.output
    data = json.loads((tmp_path / "find.json").read_text())
    assert data["suggested_lr"] is None and data["warning"]
    loose = invoke(
        "find", tiny_yaml, "--out", tmp_path, "--no-plot", "--start-lr", "100", "--end-lr", "1e6"
    )
    assert loose.exit_code == 0 and "warning" in loose.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data:\n  batch_size: 0\n", "data.batch_size"),
        ("modle: {}\n", "did you mean 'model'"),
        ("optimizer: {name: sgdd}\n", "Unknown optimizer 'sgdd'"),
        ("model: [a\n", "not valid YAML at line"),
    ],
)
def test_bad_input_exits_2_without_traceback(write_yaml, text, message):
    result = invoke("check", write_yaml(text))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path):
    result = invoke("find", tmp_path / "absent.yaml")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_bad_set_and_seeds_exit_2(tiny_yaml):
    assert invoke("check", tiny_yaml, "--set", "train.epochs").exit_code == 2
    result = invoke("find", tiny_yaml, "--seeds", "x")
    assert result.exit_code == 2 and "--seeds" in result.output


def test_debug_shows_the_traceback(write_yaml):
    with pytest.raises(Exception, match="batch_size"):
        invoke("check", write_yaml("data:\n  batch_size: 0\n"), "--debug")


def test_plot_redraws_a_saved_find(tiny_yaml, tmp_path):
    invoke("find", tiny_yaml, "--out", tmp_path, "--no-plot")
    result = invoke("plot", tmp_path / "find.json")
    assert result.exit_code == 0 and "valley" in result.stdout
    (tmp_path / "junk.json").write_text("{}")
    bad = invoke("plot", tmp_path / "junk.json")
    assert bad.exit_code == 2 and "not an lrtool history" in bad.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "lrtool" in result.stdout
