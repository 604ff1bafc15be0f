"""Saved results edited by hand or cut short: results.read_json (the one reader of saved JSON:
plot, compare, verify --from, results.read) refuses them with a ConfigError (exit 2) naming the
file and the field, never an internal error or a silently wrong chart; what lrtool itself
writes (nulls for NaN losses included) reads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY
from typer.testing import CliRunner

import lrtool
from lrtool import results, workflows
from lrtool.cli import app
from lrtool.errors import ConfigError

runner = CliRunner()
Edit = Callable[[dict[str, Any]], None]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The JSON of a real find, train and verify of a tiny MLP on iris (12 sweep steps)."""
    root = tmp_path_factory.mktemp("saved")
    exp_file = root / "exp.yaml"
    exp_file.write_text(
        TINY.replace("num_steps: 30", "num_steps: 12").replace("epochs: 2", "epochs: 1")
    )
    exp = lrtool.load_experiment(exp_file)
    workflows.run_find(exp, folder=root / "f")
    workflows.run_train(exp, 0.1, folder=root / "t")
    workflows.run_verify(exp, lrs=[0.01, 0.1], folder=root / "v")
    files = {"find": root / "f" / "find.json", "train": root / "t" / "train.json"}
    files["verify"] = root / "v" / "verify.json"
    return {kind: json.loads(path.read_text()) for kind, path in files.items()}


def written(folder: Path, saved: dict[str, dict[str, Any]], kind: str, edit: Edit) -> Path:
    """The saved `kind` file with `edit` applied, as find.json / train.json / verify.json."""
    data = copy.deepcopy(saved[kind])
    edit(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.json"
    path.write_text(json.dumps(data))
    return path


def refused_by_reader(path: Path, *texts: str) -> str:
    """results.read_json raises one ConfigError naming the file and holding every text."""
    with pytest.raises(ConfigError) as caught:
        results.read_json(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in texts:
        assert part in message, message
    return message


def refused(result, *texts: str) -> str:
    """Exit 2 with one paragraph holding every text; no internal error."""
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "please report" not in text and "Traceback" not in text
    for part in texts:
        assert part in text, text
    return text


def _set(path: str, value: Any) -> Edit:
    """Set a dotted key (history.lr) to value."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


def _drop(path: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return edit


def _cell(column: str, index: int, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["history"][column][index] = value

    return edit


def _cut(column: str, n: int) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["history"][column] = data["history"][column][:n]

    return edit


def _first_candidate(key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["candidates"][0][key] = value

    return edit


def _drop_metric(data: dict[str, Any]) -> None:
    del data["candidates"][0]["rounds"][0][data["metric"]]


FIND_FAULTS = [
    (_set("history", [1, 2]), "history is a list, expected an object of columns"),
    (_set("history", None), "history is null"),
    (_drop("history.smoothed_loss"), "history.smoothed_loss is missing"),
    (_cut("lr", 5), "history.lr has 5 entries but history.loss has 12"),
    (_cell("lr", 0, -1e-7), "history.lr[0] is -1e-07, expected a learning rate"),
    (_cell("lr", 3, "abc"), 'history.lr[3] is "abc", expected a learning rate'),
    (_cell("lr", 3, None), "history.lr[3] is null"),
    (_cell("lr", 5, 1e-9), "history.lr[5] is 1e-09, below history.lr[4]"),
    (_cell("loss", 2, "x"), 'history.loss[2] is "x", expected a number, or null'),
    (_cell("loss", 2, 10**400), "history.loss[2] is 1000"),  # no float holds it
    (_set("suggestions", [1]), "suggestions is a list, expected an object"),
    (_set("suggestions.valley", "x"), 'suggestions.valley is "x"'),
    (_set("suggested_lr", "high"), 'suggested_lr is "high"'),
    (_set("kind", "curve"), 'kind is "curve", expected find, refind, train or verify'),
    (
        _set("seeds", [{"history": {"lr": [1e-3], "loss": [], "smoothed_loss": []}}]),
        "seeds[0].history.lr has 1 entry but seeds[0].history.loss has 0",
    ),
]


@pytest.mark.parametrize(("edit", "says"), FIND_FAULTS)
def test_a_broken_find_json_is_refused_naming_the_field(saved, tmp_path, edit, says):
    path = written(tmp_path, saved, "find", edit)
    refused_by_reader(path, says, "not a whole FindResult", "run `lrtool find` again")


TRAIN_FAULTS = [
    (_drop("history.step"), "history.step is missing"),
    (_cut("loss", 3), "entries but history.loss has 3"),
    (_cell("step", 0, "one"), 'history.step[0] is "one"'),
    (_set("history.momentum", "x"), 'history.momentum is "x"'),
    (_set("epochs", None), "epochs is null, expected a list"),
    (_set("final", None), "final is null, expected an object"),
    (_set("cycles", [{"first_step": "x"}]), 'cycles[0].first_step is "x"'),
    (_set("lr_max", "auto"), 'lr_max is "auto"'),
]


@pytest.mark.parametrize(("edit", "says"), TRAIN_FAULTS)
def test_a_broken_train_json_is_refused_naming_the_field(saved, tmp_path, edit, says):
    path = written(tmp_path, saved, "train", edit)
    refused_by_reader(path, says, "not a whole TrainResult", "run `lrtool train` again")


def test_a_file_saying_it_is_a_train_json_is_checked_as_one(saved, tmp_path):
    path = written(tmp_path, saved, "find", _set("kind", "train"))  # a find.json relabelled
    refused_by_reader(path, "epochs is missing; history.step is missing")


VERIFY_FAULTS = [
    (_set("candidates", 5), "candidates is 5, expected a list of candidates"),
    (_first_candidate("lr", "x"), 'candidates[0].lr is "x"'),
    (_first_candidate("rounds", None), "candidates[0].rounds is null"),
    (_drop_metric, "candidates[0].rounds[0] has no"),
    (_set("best_lr", [0.1]), "best_lr is a list"),
    (_set("schedule", [{"candidates": 2}]), "schedule[0].epochs is missing"),
]


@pytest.mark.parametrize(("edit", "says"), VERIFY_FAULTS)
def test_a_broken_verify_json_is_refused_naming_the_field(saved, tmp_path, edit, says):
    path = written(tmp_path, saved, "verify", edit)
    refused_by_reader(path, says, "not a whole VerifyResult", "run `lrtool verify` again")


def test_many_problems_are_listed_up_to_a_few(saved, tmp_path):
    def edit(data: dict[str, Any]) -> None:
        for key in ("suggested_lr", "suggestion_method", "stop_reason", "steps", "device", "seed"):
            data[key] = [key]

    message = refused_by_reader(written(tmp_path, saved, "find", edit), "; and 1 more.")
    assert message.count(" is a list, expected ") == 5


@pytest.mark.parametrize("draw", [[], ["--no-plot"]])
def test_plot_refuses_a_broken_file_with_exit_2(saved, tmp_path, draw):
    for kind, faults in (("find", FIND_FAULTS), ("train", TRAIN_FAULTS), ("verify", VERIFY_FAULTS)):
        edit, says = faults[0]
        path = written(tmp_path / kind, saved, kind, edit)
        refused(invoke("plot", path, *draw), f"{path}: {says}")


def test_redrawing_with_another_smoothing_refuses_a_string_rate(saved, tmp_path):
    path = written(tmp_path, saved, "find", _cell("lr", 3, "abc"))
    result = invoke("plot", path, "--set", "find.smoothing=0.5", "--no-plot")
    refused(result, 'history.lr[3] is "abc"')


def test_compare_refuses_a_broken_file_before_printing_anything(saved, tmp_path):
    good = written(tmp_path / "good", saved, "find", lambda data: None)
    bad = written(tmp_path / "bad", saved, "find", _set("history", [1, 2]))
    result = invoke("compare", good, bad, "--no-plot")
    refused(result, f"{bad}: history is a list")
    assert "Suggestions" not in result.output


def test_verify_from_refuses_a_broken_find_json(saved, tmp_path, tiny_yaml):
    path = written(tmp_path, saved, "find", _cut("smoothed_loss", 4))
    result = invoke("verify", tiny_yaml, "--from", path, "--no-plot", "--out", tmp_path / "v")
    refused(result, f"{path}: history.lr has 12 entries but history.smoothed_loss has 4")


@pytest.mark.parametrize("kind", ["find", "train", "verify"])
def test_results_read_refuses_a_broken_file(saved, tmp_path, kind):
    edit = {"find": FIND_FAULTS, "train": TRAIN_FAULTS, "verify": VERIFY_FAULTS}[kind][0][0]
    with pytest.raises(ConfigError, match="not a whole"):
        results.read(written(tmp_path, saved, kind, edit))


def test_results_read_names_every_missing_field(saved, tmp_path):
    def edit(data: dict[str, Any]) -> None:
        del data["stop_reason"], data["device"]

    with pytest.raises(ConfigError, match="stop_reason is missing; device is missing"):
        results.read(written(tmp_path, saved, "find", edit))


def test_results_read_leaves_out_what_a_newer_lrtool_adds_to_a_round(saved, tmp_path):
    def edit(data: dict[str, Any]) -> None:
        data["schedule"][0]["screened_on"] = "gpu"

    verify = results.read(written(tmp_path, saved, "verify", edit))
    assert verify.schedule[0] == results.Round(**saved["verify"]["schedule"][0])


def test_nulls_where_the_writer_puts_them_still_read(saved, tmp_path):
    """NaN and inf are saved as null: in loss columns, scores and optional fields they read."""

    def find(data: dict[str, Any]) -> None:
        data["history"]["loss"][-1] = None
        data["history"]["smoothed_loss"][-1] = None
        data["suggestions"]["steep"] = None

    def train(data: dict[str, Any]) -> None:
        data["history"]["loss"][-1] = None
        data["history"]["momentum"] = None  # an optimizer without momentum
        data["final"]["val_loss"] = None

    def verify(data: dict[str, Any]) -> None:
        for run in data["candidates"][0]["rounds"]:
            run[data["metric"]] = None  # a run that diverged
            run["rank"] = run["kept"] = None  # a round Ctrl-C cut short

    for kind, edit in (("find", find), ("train", train), ("verify", verify)):
        path = written(tmp_path, saved, kind, edit)
        assert invoke("plot", path, "--no-plot").exit_code == 0, kind
        assert invoke("plot", path).exit_code == 0, kind
        assert results.read(path).to_dict()["kind"] == kind


def test_what_lrtool_writes_reads_back_unchanged(saved, tmp_path):
    for kind in ("find", "train", "verify"):
        path = written(tmp_path, saved, kind, lambda data: None)
        assert results.read_json(path) == saved[kind]
        assert invoke("plot", path, "--no-plot").exit_code == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"history": ' + "[" * 100_000 + "]" * 100_000 + "}",  # nested past Python's stack
        '{"history": {"lr": [' + "9" * 5000 + "]}}",  # past Python's 4300-digit limit
    ],
)
def test_json_python_cannot_parse_is_invalid_json(tmp_path, text):
    path = tmp_path / "find.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is not valid JSON"):
        results.read_json(path)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_a_saved_result_read_through_a_pipe_is_read(tiny_yaml, tmp_path):
    """`lrtool plot <(cat find.json)` said the file "does not exist" (it is a pipe)."""
    import os
    import threading

    lrtool.run_find(lrtool.load_experiment(tiny_yaml), folder=tmp_path / "f")
    text = (tmp_path / "f" / "find.json").read_text()
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(text), daemon=True)
    writer.start()
    try:
        result = CliRunner().invoke(lrtool.cli.app, ["plot", str(pipe), "--no-plot"])
    finally:
        writer.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert "robust_minimum" in result.output
