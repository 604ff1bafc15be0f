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
    assert data.pop("folder") == str(tmp_path)  # stdout also says where the files went
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
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes in the file


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
        "find",
        tiny_yaml,
        "--out",
        tmp_path / "loose",
        "--no-plot",
        "--start-lr",
        "100",
        "--end-lr",
        "1e6",
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
    typo = invoke("find", tiny_yaml, "--seeds", "0,,2")  # not silently seeds 0 and 2
    assert typo.exit_code == 2 and "'0,,2'" in typo.output
    huge = invoke("find", tiny_yaml, "--seeds", "0,99999999999999999999")
    assert huge.exit_code == 2 and "every seed must be from 0 to" in huge.output


def test_a_folder_where_a_saved_file_is_expected_says_so(tiny_yaml, tmp_path):
    result = invoke("plot", tmp_path)
    assert result.exit_code == 2
    assert "is a folder; give one of the files in it" in " ".join(result.output.split())


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


# --- train --------------------------------------------------------------------------------


def test_train_writes_every_file(tiny_yaml, tmp_path):
    out = tmp_path / "t"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", out, "--no-plot")
    assert result.exit_code == 0, result.output
    for name in (
        "train.json",
        "train.csv",
        "epochs.csv",
        "model.pt",
        "checkpoint.pt",
        "config.yaml",
    ):
        assert (out / name).exists(), name
    data = json.loads((out / "train.json").read_text())
    assert data["lr_max"] == 0.1
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert set(data["epochs"][0]) >= {"epoch", "train_loss", "val_loss", "accuracy", "seconds"}
    assert set(data["final"]) == {"val_loss", "accuracy"}
    assert set(data["history"]) == {"step", "lr", "momentum", "loss"}
    with (out / "train.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "lr", "momentum", "loss"] and len(rows) == 1 + 2 * 7
    with (out / "epochs.csv").open() as f:
        assert len(list(csv.reader(f))) == 3
    import torch

    state = torch.load(out / "model.pt", weights_only=True)
    assert set(state) == {"1.0.weight", "1.0.bias", "2.weight", "2.bias"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("0.05", [0.05, 0.05]), ("1e-3:1e-1", [1e-3, 1e-1]), (":0.1", [0.01, 0.1])],
)
def test_train_lr_max_forms_reach_each_group(tiny_yaml, tmp_path, spec, expected):
    result = invoke("train", tiny_yaml, "--lr-max", spec, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    peak = json.loads(result.stdout)["group_lrs_at_peak"]
    # OneCycleLR's peak falls between two of the 14 steps, so the highest rate reached is a
    # little under lr_max; the ratios between the groups are exact.
    assert peak[-1] == pytest.approx(expected[-1], rel=0.05) and peak[-1] <= expected[-1]
    assert peak[0] / peak[-1] == pytest.approx(expected[0] / expected[-1], rel=1e-9)


def test_train_lr_max_auto_finds_first_and_trains_at_the_suggestion(tiny_yaml, tmp_path):
    result = invoke("train", tiny_yaml, "--lr-max", "auto", "--out", tmp_path, "--no-plot")
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "find.json").read_text())
    trained = json.loads((tmp_path / "train.json").read_text())
    assert trained["lr_max"] == pytest.approx(found["suggested_lr"])


def test_train_without_a_rate_is_bad_input(tiny_yaml):
    result = invoke("train", tiny_yaml)
    assert result.exit_code == 2 and "--lr-max" in result.output


def test_train_nan_exits_1_naming_step_and_rate(tiny_yaml, tmp_path):
    result = invoke("train", tiny_yaml, "--lr-max", "1e30", "--out", tmp_path, "--no-plot")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "became NaN/inf at step" in text and "(lr " in text
    assert json.loads((tmp_path / "train.json").read_text())["stop_reason"] == "nan"


def _interrupting_progress(at_step: int):
    """Stand-ins for report's progress helpers whose callback presses Ctrl-C."""
    from contextlib import contextmanager

    def on_step(step, *args):
        if step == at_step:
            raise KeyboardInterrupt

    @contextmanager
    def sweep(console, total, label="find"):
        yield on_step

    @contextmanager
    def training(console, steps, epochs):
        yield on_step, lambda record: None

    return sweep, training


def test_find_interrupted_exits_130_and_keeps_the_partial_history(tiny_yaml, tmp_path, monkeypatch):
    sweep, _ = _interrupting_progress(5)
    monkeypatch.setattr("lrtool.report.sweep_progress", sweep)
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--no-plot")
    assert result.exit_code == 130
    data = json.loads((tmp_path / "find.json").read_text())
    assert data["stop_reason"] == "interrupted" and data["steps"] == 5


def test_train_interrupted_then_resumed_matches_an_uninterrupted_run(
    tiny_yaml, tmp_path, monkeypatch
):
    import torch

    whole = tmp_path / "whole"
    assert invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", whole, "--no-plot").exit_code == 0
    cut = tmp_path / "cut"
    _, training = _interrupting_progress(10)  # epoch 2 of 7 steps each
    with monkeypatch.context() as patch:
        patch.setattr("lrtool.report.train_progress", training)
        stopped = invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", cut, "--no-plot")
    assert stopped.exit_code == 130
    partial = json.loads((cut / "train.json").read_text())
    assert partial["stop_reason"] == "interrupted" and len(partial["epochs"]) == 1
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = invoke("train", tiny_yaml, "--lr-max", "0.1", "--resume", cut, "--no-plot")
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(cut / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_refind_saves_a_second_curve(tiny_yaml, tmp_path):
    result = invoke(
        "train", tiny_yaml, "--lr-max", "0.1", "--out", tmp_path, "--refind", "--no-plot"
    )
    assert result.exit_code == 0, result.output
    refind = json.loads((tmp_path / "refind.json").read_text())
    assert refind["kind"] == "refind" and refind["steps"] > 5
    assert "refind:" in result.output


# --- verify and compare -------------------------------------------------------------------


def test_verify_with_explicit_rates_writes_verify_json(tiny_yaml, tmp_path):
    result = invoke(
        "verify",
        tiny_yaml,
        "--lrs",
        "1e-3,1e-1",
        "--out",
        tmp_path,
        "--no-plot",
        "--epochs",
        "1",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "verify.json").read_text())
    # 0.1 wins at the top edge of the two rates: 10, one spacing higher, is tried and diverges.
    assert [c["lr"] for c in data["candidates"]] == pytest.approx([1e-3, 1e-1, 10.0])
    assert data["best_lr"] == 1e-1 and data["suggested_lr"] is None
    assert data["widened"] == pytest.approx([10.0])
    assert data["budget_epochs_total"] == 3 and data["cost_vs_one_training"] == 3
    assert "verify round 1" in result.output


def test_verify_from_a_saved_find(tiny_yaml, tmp_path):
    invoke("find", tiny_yaml, "--out", tmp_path / "f", "--no-plot")
    found = json.loads((tmp_path / "f" / "find.json").read_text())
    result = invoke(
        "verify",
        tiny_yaml,
        "--from",
        tmp_path / "f" / "find.json",
        "--out",
        tmp_path / "v",
        "--json",
        "--epochs",
        "1",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["suggested_lr"] == pytest.approx(found["suggested_lr"])
    from lrtool.verify import candidate_rates

    tried = [c["lr"] for c in data["candidates"]]
    assert set(candidate_rates(found["suggested_lr"])) <= set(tried)  # plus any widening
    both = invoke("verify", tiny_yaml, "--lrs", "1,2", "--from", tmp_path / "f" / "find.json")
    assert both.exit_code == 2


def test_compare_overlays_finds_and_rejects_mixed_kinds(tiny_yaml, tmp_path):
    invoke("train", tiny_yaml, "--lr-max", "0.1", "--out", tmp_path, "--refind", "--no-plot")
    invoke("find", tiny_yaml, "--out", tmp_path / "f", "--no-plot")
    ok = invoke(
        "compare",
        tmp_path / "f" / "find.json",
        tmp_path / "refind.json",
        "--labels",
        "before,after",
    )
    assert ok.exit_code == 0, ok.output
    assert "before" in ok.stdout and "after" in ok.stdout and "Suggestions" in ok.stdout
    mixed = invoke("compare", tmp_path / "refind.json", tmp_path / "train.json")
    assert mixed.exit_code == 2 and "results of one kind" in mixed.output
    labels = invoke("compare", tmp_path / "refind.json", "--labels", "a,b")
    assert labels.exit_code == 2 and "--labels" in labels.output


def test_plot_save_writes_a_png(tiny_yaml, tmp_path):
    pytest.importorskip("matplotlib")
    invoke("find", tiny_yaml, "--out", tmp_path, "--no-plot")
    result = invoke("plot", tmp_path / "find.json", "--save", tmp_path / "curve.png")
    assert result.exit_code == 0
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_multi_seed_find_reports_a_consensus(tiny_yaml, tmp_path):
    result = invoke("find", tiny_yaml, "--out", tmp_path, "--seeds", "0,3,7", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["seed"] for s in data["seeds"]] == [0, 3, 7]
    per_seed = [s["suggested_lr"] for s in data["seeds"]]
    from lrtool.suggest import consensus

    assert data["consensus_lr"] == pytest.approx(consensus(per_seed)[0])
    assert data["suggested_lr"] == data["consensus_lr"]
    assert data["spread"] == pytest.approx(max(per_seed) / min(per_seed))
    assert all(len(s["history"]["lr"]) == s["steps"] for s in data["seeds"])


def test_numeric_flags_are_judged_by_the_schema_in_its_words(tiny_yaml):
    """--cycles 0 and verify --epochs 0 get the schema's bullet naming the key and the flag,
    as every other numeric flag does (verify --epochs 0 was taken for no flag at all)."""
    for args, key in [
        (("train", tiny_yaml, "--lr-max", "0.1", "--cycles", "0"), "train.cycles (from --cycles)"),
        (("verify", tiny_yaml, "--epochs", "0"), "train.epochs (from --epochs)"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2 and key in result.output, result.output
