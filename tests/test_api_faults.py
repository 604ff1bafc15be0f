"""The notebook API's faults of the fourth adversarial pass: what a wrong argument raises (an
LrtoolError with a clear message, never a raw error from deep inside), and `folder=` given the
same protections as `--out`."""

from __future__ import annotations

import json
import math

import pytest

from lrtool.errors import ConfigError, RunFailed
from lrtool.results import save
from lrtool.workflows import (
    load_experiment,
    run_check,
    run_find,
    run_smoke,
    run_train,
    run_verify,
)


@pytest.fixture
def exp(tiny_yaml):
    return load_experiment(tiny_yaml)


@pytest.mark.parametrize(
    "seeds, message",
    [
        ([-1, 2], "from 0 to"),
        ([2**40], "from 0 to"),
        ([1, 1], "twice"),
        (["1", "2"], "whole number"),
        ([], "non-empty list"),
        (3.0, "non-empty list"),
    ],
)
def test_run_find_checks_a_list_of_seeds_as_the_flag_does(exp, tmp_path, seeds, message):
    with pytest.raises(ConfigError, match=message):
        run_find(exp, seeds, folder=tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_folder_gets_the_protections_of_out(exp, tiny_yaml, tmp_path):
    taken = tmp_path / "t"
    run_train(exp, 0.1, folder=taken)
    before = {p.name: p.read_bytes() for p in taken.iterdir()}
    for call in (
        lambda: run_find(exp, folder=taken),
        lambda: run_train(exp, 0.1, folder=taken),
        lambda: run_verify(exp, lrs=[0.01, 0.1], folder=taken),
        lambda: run_smoke("find", exp).save(taken),
    ):
        with pytest.raises(ConfigError, match="already holds another run's files"):
            call()
    assert {p.name: p.read_bytes() for p in taken.iterdir()} == before
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    with pytest.raises(ConfigError, match="cannot write files to"):
        run_train(exp, 0.1, folder=a_file)
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("lr_max", ["fast", -1, math.nan, {"a": 1}])
def test_a_bad_rate_in_python_is_a_config_error_naming_the_key(exp, lr_max):
    with pytest.raises(ConfigError, match="lr_max"):
        run_train(exp, lr_max)


def test_wrong_argument_types_are_config_errors(exp, tiny_yaml, tmp_path):
    for call, message in (
        (lambda: run_find(str(tiny_yaml)), "takes an Experiment.*load_experiment"),
        (lambda: run_check(None), "takes an Experiment"),
        (lambda: run_verify(exp, lrs=0.1), "at least two rates"),
        (lambda: run_verify(exp, lrs=["a", 0.1]), "'a' in"),
        (lambda: run_verify(exp, lrs="0.1,,0.2"), "empty item"),
        (lambda: run_smoke("find", exp, batches=0), "1 or more"),
        (lambda: run_smoke("find", exp, batches=-1), "1 or more"),
        (lambda: load_experiment(None), "takes the file's path"),
        (lambda: load_experiment(tiny_yaml, [("train.epochs", 3)]), "--set strings"),
        (lambda: load_experiment(tiny_yaml, {3: 3}), "dotted names"),
        (lambda: save(tmp_path, {}), "expected a FindResult"),
    ):
        with pytest.raises(ConfigError, match=message):
            call()


def test_one_set_string_is_one_override(tiny_yaml):
    assert load_experiment(tiny_yaml, "train.epochs=3").train.epochs == 3


def test_a_nan_run_without_a_folder_does_not_name_one(exp):
    run = run_train(exp, 1e6)
    with pytest.raises(RunFailed) as info:
        run.raise_for_stop()
    assert "None" not in str(info.value) and "history up to then" not in str(info.value)
    assert json.dumps(run.train.to_dict(), allow_nan=False)


def test_redrawing_a_seeds_find_at_its_own_smoothing_changes_nothing(exp, tmp_path):
    from lrtool.saved import resuggested

    run_find(exp, 2, folder=tmp_path / "f")
    data = json.loads((tmp_path / "f" / "find.json").read_text())
    same = resuggested(data, {"smoothing": data["config"]["find"]["smoothing"]}, "find.json")
    assert same["suggested_lr"] == pytest.approx(data["suggested_lr"])
    assert same["suggestions"] == pytest.approx(data["suggestions"])
    assert same["history"]["smoothed_loss"] == pytest.approx(data["history"]["smoothed_loss"])
    valley = resuggested(data, {"suggest": "valley"}, "find.json")
    assert valley["suggested_lr"] == valley["consensus_lr"] == data["suggestions"]["valley"]
    assert [s["suggested_lr"] for s in valley["seeds"]] == [
        s["suggestions"]["valley"] for s in data["seeds"]
    ]


def test_a_seeds_find_keeps_what_its_seeds_warned_of(tiny_yaml):
    # 20 steps up to 0.3: every seed's loss is still falling at end_lr, and says so.
    settings = {"find.num_steps": 20, "find.end_lr": 0.3, "find.extend_decades": 0}
    exp = load_experiment(tiny_yaml, settings)
    one = run_find(exp)
    assert one.suggested_lr is not None and "still falling" in (one.warning or "")
    both = run_find(exp, [0, 1])
    assert both.suggested_lr is not None
    assert "2 of 2 seeds warned" in both.warning and "still falling" in both.warning
