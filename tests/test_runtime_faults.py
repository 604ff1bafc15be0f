"""Runtime faults that used to end in an internal error or in torch's words (QA pass).

Each test failed on the code before the fix: a model returning a tuple, a CSV target out of
range, a CSV too small to standardise or read with the wrong delimiter, an unreadable weights
or checkpoint file, and rates too large for float32.
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lrtool.build import build
from lrtool.checkpoint import load_checkpoint
from lrtool.cli import app
from lrtool.config import validate
from lrtool.errors import ComponentError, ConfigError
from lrtool.models import torch_load_reason
from lrtool.train import parse_lr_max
from lrtool.verify import parse_lrs

runner = CliRunner()

IRIS = {
    "device": "cpu",
    "data": {"name": "sklearn.iris", "batch_size": 16},
    "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [8], "num_classes": 3}},
    "find": {"num_steps": 5},
    "train": {"epochs": 1},
}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def experiment_file(tmp_path: Path, exp: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    return path


# --- what a model and a loss return -------------------------------------------------------

USER_CODE = """\
import torch
from torch import nn


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x):
        return self.layer(x), 1


def pair():
    return Pair()


def text_loss(output, target):
    return "loss"
"""


@pytest.fixture
def user_code(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runtime_faults_code.py").write_text(USER_CODE)


@pytest.mark.parametrize("command", [["check"], ["find", "--smoke"], ["find", "--no-plot"]])
def test_a_model_returning_a_tuple_is_bad_input_at_the_probe(tmp_path, user_code, command):
    exp = {**IRIS, "model": {"name": "runtime_faults_code:pair"}}
    result = invoke(*command, experiment_file(tmp_path, exp))
    assert result.exit_code == 2, result.output
    assert "model 'runtime_faults_code:pair' must return a tensor (the output of forward), got" in (
        " ".join(result.output.split())
    )
    assert "got tuple" in result.output
    assert "AttributeError" not in result.output and "please report" not in result.output


def test_a_loss_returning_text_must_return_a_tensor(tmp_path, user_code):
    exp = {**IRIS, "loss": {"name": "runtime_faults_code:text_loss"}}
    result = invoke("check", experiment_file(tmp_path, exp))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "loss 'runtime_faults_code:text_loss' must return a tensor" in text
    assert "got str" in text and "shape None" not in text


# --- CSV sources --------------------------------------------------------------------------


def csv_experiment(tmp_path: Path, text: str, **args) -> dict:
    (tmp_path / "d.csv").write_text(textwrap.dedent(text))
    return {
        **IRIS,
        "data": {
            "name": "csv",
            "batch_size": 16,
            "args": {"path": str(tmp_path / "d.csv"), **args},
        },
        "model": {"name": "mlp", "args": {"in_features": 2, "num_classes": 2}},
    }


ROWS = "a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(40))


def test_a_target_index_beyond_the_columns_names_the_key_and_the_columns(tmp_path):
    with pytest.raises(ConfigError) as info:
        build(validate(csv_experiment(tmp_path, ROWS, target=99)))
    text = str(info.value)
    assert text.startswith("data.args.target: column 99 is out of range")
    assert "has 3 columns (0 to 2): a, b, y" in text


def test_a_negative_target_index_counts_from_the_end(tmp_path):
    exp = csv_experiment(tmp_path, ROWS, target=-1, standardize=False)
    x, y = build(validate(exp)).train_data.tensors
    assert x.shape[1] == 2  # the target column is not a feature
    assert set(y.tolist()) == {0, 1}
    assert torch.equal(y, x[:, 0].long() % 2)


def test_two_rows_are_too_few_to_standardise_and_say_how_many(tmp_path):
    exp = validate(csv_experiment(tmp_path, "a,b,y\n1,2,0\n3,4,1\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's std() warning must not leak
        with pytest.raises(ComponentError) as info:
            build(exp)
    text = str(info.value)
    assert "2 rows are too few to standardise" in text
    assert "Give at least 3 rows, or set data.args.standardize: false" in text
    assert "NaN" not in text


def test_the_fewest_rows_named_are_enough(tmp_path):
    rows = "a,b,y\n1,2,0\n3,4,1\n5,7,0\n"
    exp = csv_experiment(tmp_path, rows)
    exp["model"]["args"]["num_classes"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = build(validate(exp))
    assert torch.isfinite(built.train_data.tensors[0]).all()


def test_a_wrong_delimiter_says_there_is_no_feature_column(tmp_path):
    exp = validate(csv_experiment(tmp_path, ROWS, delimiter=";"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ComponentError) as info:
            build(exp)
    text = str(info.value)
    assert "single column ('a,b,y')" in text and "no feature column" in text
    assert "data.args.delimiter: ','" in text
    assert "num_classes" not in text


def test_a_semicolon_file_read_with_commas_suggests_the_semicolon(tmp_path):
    exp = validate(csv_experiment(tmp_path, ROWS.replace(",", ";")))
    with pytest.raises(ComponentError, match="set data.args.delimiter: ';'"):
        build(exp)


def test_a_single_class_csv_for_a_classifier_is_refused(tmp_path):
    rows = "a,b,y\n" + "".join(f"{i},{i % 5},0\n" for i in range(20))
    with pytest.raises(ComponentError) as info:
        build(validate(csv_experiment(tmp_path, rows)))
    assert "a classifier needs at least two classes" in str(info.value)
    # A regression loss takes the same column as numbers.
    exp = csv_experiment(tmp_path, rows)
    exp["loss"] = {"name": "mse"}
    exp["metrics"] = ["mae"]
    exp["model"]["args"]["num_classes"] = 1
    assert build(validate(exp)).train_data.tensors[1].shape == (16, 1)


# --- weights and checkpoint files ---------------------------------------------------------


def unreadable_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "random": tmp_path / "random.pt",
        "json": tmp_path / "json.pt",
        "whole model": tmp_path / "whole.pt",
        "empty": tmp_path / "empty.pt",
        "truncated": tmp_path / "truncated.pt",
    }
    files["random"].write_bytes(bytes(torch.randint(0, 256, (300,), dtype=torch.uint8).tolist()))
    files["json"].write_text('{"weights": [1, 2]}')
    torch.save(torch.nn.Linear(2, 2), files["whole model"])
    files["empty"].write_bytes(b"")
    torch.save({"a": torch.zeros(4)}, tmp_path / "good.pt")
    files["truncated"].write_bytes((tmp_path / "good.pt").read_bytes()[:-40])
    return files


UNSAFE_ADVICE = ("weights_only", "Please file an issue", "will likely succeed", "\n")


@pytest.mark.parametrize("kind", ["random", "json", "whole model", "empty", "truncated"])
def test_unreadable_weights_are_one_paragraph_without_torchs_advice(tmp_path, kind):
    file = unreadable_files(tmp_path)[kind]
    exp = validate({**IRIS, "model": {**IRIS["model"], "weights": str(file)}})
    with pytest.raises(ComponentError) as info:
        build(exp)
    text = str(info.value)
    assert text.startswith(
        f"model.weights: {file} is not a PyTorch state_dict file lrtool can read (torch.load: "
    )
    assert not any(words in text for words in UNSAFE_ADVICE)


def test_the_reason_is_torchs_own_line():
    unpickler = RuntimeError(
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` "
        "will likely succeed.\nPlease file an issue: WeightsUnpickler error: \n\n"
        "Unsupported operand 123\n\nCheck the documentation"
    )
    assert torch_load_reason(unpickler) == "Unsupported operand 123"
    miniz = RuntimeError(
        "PytorchStreamReader failed reading zip archive: failed finding central directory. "
        "This is an internal miniz error. If you are seeing this error, ..."
    )
    assert torch_load_reason(miniz) == (
        "PytorchStreamReader failed reading zip archive: failed finding central directory"
    )
    assert torch_load_reason(EOFError()) == "EOFError: the file ends early"


def test_a_folder_for_weights_is_a_folder_not_a_missing_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    exp = validate({**IRIS, "model": {**IRIS["model"], "weights": str(folder)}})
    with pytest.raises(ComponentError) as info:
        build(exp)
    assert f"model.weights: {folder} is a folder, not a file" in str(info.value)
    assert "does not exist" not in str(info.value)
    (folder / "model.pt").write_bytes(b"")
    with pytest.raises(ComponentError, match="did you mean .*model.pt"):
        build(exp)


def test_resume_from_an_unreadable_file_names_the_flag(tmp_path):
    file = unreadable_files(tmp_path)["random"]
    with pytest.raises(ConfigError) as info:
        load_checkpoint(file)
    text = str(info.value)
    assert text.startswith(f"--resume: {file} is not a PyTorch checkpoint file lrtool can read")
    assert not any(words in text for words in UNSAFE_ADVICE)
    result = invoke("train", experiment_file(tmp_path, IRIS), "--lr-max", "0.1", "--resume", file)
    assert result.exit_code == 2, result.output
    assert "--resume:" in result.output and "Please file" not in result.output


# --- rates torch cannot hold --------------------------------------------------------------


@pytest.mark.parametrize("value", [1e39, "1e39", ":1e39", "1e-3:1e39", [1e-3, 1e39]])
def test_a_peak_rate_above_float32_is_refused(value):
    with pytest.raises(ConfigError) as info:
        parse_lr_max(value, 2)
    text = str(info.value)
    assert text.startswith("train.lr_max: expected rates up to 3.4e+38 (the largest float32")


def test_the_largest_float32_rate_still_parses():
    assert parse_lr_max(3.4e38, 1) == [3.4e38]


def test_train_with_lr_max_too_large_exits_2_in_the_keys_words(tmp_path):
    result = invoke(
        "train", experiment_file(tmp_path, IRIS), "--lr-max", "1e39", "--out", tmp_path / "o"
    )
    assert result.exit_code == 2, result.output
    assert "train.lr_max" in result.output and "the largest float32" in result.output
    assert "torch raised" not in result.output


def test_verify_lrs_too_large_is_refused_before_any_run(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_lrs("1e300,0.1")
    text = str(info.value)
    assert text.startswith("lrs (--lrs) expects comma-separated positive learning rates")
    assert "'1e300' in '1e300,0.1' is above 3.4e+38" in text
    result = invoke(
        "verify", experiment_file(tmp_path, IRIS), "--lrs", "1e300,0.1", "--out", tmp_path / "o"
    )
    assert result.exit_code == 2, result.output
    assert "round 1" not in result.output and "torch raised" not in result.output
