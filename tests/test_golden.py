"""Golden files: what find, train, verify and compare write, pinned before the CLI was thinned.

The CLI's orchestration moved into `lrtool.workflows`; these tests say the move changed no
file name, JSON key, CSV header or exit code. Values are not pinned (other tests judge them),
except that the JSON printed with --json is the JSON saved, plus the folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lrtool.cli import app

runner = CliRunner()

FIND_KEYS = {
    "config": ...,
    "device": None,
    "effective_batch_size": None,
    "elapsed_s": None,
    # Added in 0.3 (find.extend_decades): the last rate a flat sweep went on to, else null.
    "extended_to": None,
    "history": {"loss": None, "lr": None, "smoothed_loss": None},
    "kind": None,
    "seed": None,
    "steps": None,
    "stop_reason": None,
    "suggested_lr": None,
    "suggestion_method": None,
    "suggestions": ...,
    "versions": ...,
    "warning": None,
    "world_size": None,
}
TRAIN_KEYS = {
    "config": ...,
    # Added with train.cycles (issue 11): one record per cycle, one for a default run.
    "cycles": [
        {
            "cycle": None,
            "epochs": None,
            "final": {"accuracy": None, "val_loss": None},
            "first_step": None,
            "frozen": None,
            "lr_from": None,
            "lr_max": None,
            "refind_suggested_lr": None,
        }
    ],
    "device": None,
    "effective_batch_size": None,
    "elapsed_s": None,
    "epochs": [
        {
            "accuracy": None,
            "epoch": None,
            "phase": None,
            "seconds": None,
            "train_loss": None,
            "val_loss": None,
        }
    ],
    "evals": [{"accuracy": None, "epoch": None, "step": None, "val_loss": None}],
    "final": {"accuracy": None, "val_loss": None},
    "group_lrs_at_peak": None,
    "group_names": None,
    "history": {"loss": None, "lr": None, "momentum": None, "step": None},
    "kind": None,
    "lr_max": None,
    "nan_lr": None,
    "nan_step": None,
    "seed": None,
    "stop_reason": None,
    "versions": ...,
    "world_size": None,
}
VERIFY_KEYS = {
    "best_lr": None,
    "budget_epochs_total": None,
    "candidates": [
        {
            "lr": None,
            "rounds": [
                {
                    "accuracy": None,
                    "batches": None,
                    "elapsed_s": None,
                    "epochs": None,
                    "kept": None,
                    "rank": None,
                    "round": None,
                    "stop_reason": None,
                    "val_loss": None,
                }
            ],
        }
    ],
    "centre": None,
    "centre_lr": None,
    "config": ...,
    "cost_vs_one_training": None,
    "device": None,
    "effective_batch_size": None,
    "elapsed_s": None,
    "full_epochs": None,
    "kind": None,
    "metric": None,
    "model_lr": None,
    "schedule": [{"batches": None, "candidates": None, "epochs": None, "run_epochs": None}],
    "seed": None,
    "stop_reason": None,
    "suggested_lr": None,
    "versions": ...,
    "widened": None,
    "world_size": None,
}
FIND_CSV = ["step", "lr", "loss", "smoothed_loss"]


def shape(value: Any) -> Any:
    """The key tree of a JSON value: nested dicts and the first item of lists of dicts.

    `config` (the experiment, whose keys other work extends), `versions` and `suggestions`
    (one key per suggestion method) are pinned only as present.
    """
    if isinstance(value, dict):
        return {
            k: ... if k in ("config", "versions", "suggestions") else shape(v)
            for k, v in sorted(value.items())
        }
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [shape(value[0])]
    return None


def header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def printed_json(result: Any, folder: Path) -> dict[str, Any]:
    data = json.loads(result.stdout)
    assert data.pop("folder") == str(folder)
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """find, train --lr-max auto --refind and verify, once each, with --json."""
    from conftest import TINY

    root = tmp_path_factory.mktemp("golden")
    exp = root / "exp.yaml"
    exp.write_text(TINY)
    return {
        "root": root,
        "find": invoke("find", exp, "--out", root / "find", "--json"),
        "train": invoke(
            "train", exp, "--lr-max", "auto", "--refind", "--out", root / "train", "--json"
        ),
        "verify": invoke(
            "verify", exp, "--lrs", "1e-2,1e-1", "--epochs", "1", "--out", root / "verify", "--json"
        ),
    }


def test_find_files_keys_and_headers(runs):
    folder = runs["root"] / "find"
    assert runs["find"].exit_code == 0, runs["find"].output
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "find.csv", "find.json"]
    saved = json.loads((folder / "find.json").read_text())
    assert shape(saved) == FIND_KEYS
    assert printed_json(runs["find"], folder) == saved
    assert header(folder / "find.csv") == FIND_CSV


def test_train_auto_refind_files_keys_and_headers(runs):
    folder = runs["root"] / "train"
    result = runs["train"]
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint.pt",
        "config.yaml",
        "epochs.csv",
        "find.csv",
        "find.json",
        "model.pt",
        "refind.csv",
        "refind.json",
        "train.csv",
        "train.json",
    ]
    saved = json.loads((folder / "train.json").read_text())
    assert shape(saved) == TRAIN_KEYS
    assert printed_json(result, folder) == saved
    for stem in ("find", "refind"):
        assert shape(json.loads((folder / f"{stem}.json").read_text())) == FIND_KEYS
        assert header(folder / f"{stem}.csv") == FIND_CSV
    assert json.loads((folder / "refind.json").read_text())["kind"] == "refind"
    found = json.loads((folder / "find.json").read_text())
    assert saved["lr_max"] == pytest.approx(found["suggested_lr"])
    assert header(folder / "train.csv") == ["step", "lr", "momentum", "loss"]
    assert header(folder / "epochs.csv") == [
        "epoch",
        "phase",
        "train_loss",
        "val_loss",
        "accuracy",
        "seconds",
    ]
    assert "--lr-max auto: training at" in result.output
    assert "refind:" in result.output


def test_verify_files_keys(runs):
    folder = runs["root"] / "verify"
    result = runs["verify"]
    assert result.exit_code == 0, result.output
    # model.pt: the winner's full-length run, and config.yaml, the experiment that ran (both
    # added after the golden files were first pinned).
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.pt", "verify.json"]
    saved = json.loads((folder / "verify.json").read_text())
    assert shape(saved) == VERIFY_KEYS
    assert printed_json(result, folder) == saved
    rates = [c["lr"] for c in saved["candidates"]]
    assert 1e-2 in rates and 1e-1 in rates  # and the rates a winner at the edge widened to
    assert "verify: 2 candidates" in result.output and "best_lr =" in result.output


def test_compare_tabulates_a_find_and_a_refind(runs):
    root = runs["root"]
    result = invoke(
        "compare", root / "find" / "find.json", root / "train" / "refind.json", "--no-plot"
    )
    assert result.exit_code == 0, result.output
    for row in ("suggested_lr", "stop reason", "steps"):
        assert row in result.output
    mixed = invoke("compare", root / "find" / "find.json", root / "train" / "train.json")
    assert mixed.exit_code == 2


def test_bad_input_and_no_suggestion_exit_codes(runs, tmp_path):
    from conftest import TINY

    exp = tmp_path / "exp.yaml"
    exp.write_text(TINY)
    assert invoke("train", exp, "--out", tmp_path / "t").exit_code == 2  # no lr_max
    assert invoke("find", exp, "--seeds", "x").exit_code == 2
    assert invoke("verify", exp, "--lrs", "1", "--from", exp).exit_code == 2
