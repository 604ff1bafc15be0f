"""Faults the schema catches at load, so `check` rejects what find and train would.

Each case once passed `lrtool check` and then failed (or misbehaved) in find or train.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lrtool.build import build
from lrtool.cli import app
from lrtool.config import load_experiment
from lrtool.errors import ConfigError
from lrtool.finder import sweep_rates

runner = CliRunner()


def refused(path, *overrides: str) -> str:
    """The message load_experiment refuses the file (with `--set` overrides) with."""
    with pytest.raises(ConfigError) as info:
        load_experiment(path, list(overrides))
    return str(info.value)


# --- 1. name and output_dir keep runs inside the output folder -----------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", '""', "' '", ".", "..", "a\\b"])
def test_name_must_be_one_folder_name(tiny_yaml, name):
    text = refused(tiny_yaml, f"name={name}")
    assert "• name (from --set name): expected one folder name" in text
    assert "output_dir" in text  # where to go instead


@pytest.mark.parametrize("name", ["my-run", "run.v2", "digits_mlp"])
def test_plain_names_still_pass(tiny_yaml, name):
    assert load_experiment(tiny_yaml, [f"name={name}"]).name == name


@pytest.mark.parametrize("value", ['""', "' '"])
def test_output_dir_must_not_be_empty(tiny_yaml, value):
    text = refused(tiny_yaml, f"output_dir={value}")
    assert "• output_dir (from --set output_dir): expected a folder" in text


def test_a_stem_that_cannot_name_a_folder_asks_for_name(write_yaml):
    path = write_yaml("seed: 1\n", name="..yaml")  # its stem is "."
    with pytest.raises(ConfigError, match=r"Set name: in the file"):
        load_experiment(path)
    assert load_experiment(path, ["name=ok"]).name == "ok"


def test_check_refuses_an_escaping_name_with_exit_2(tiny_yaml):
    result = runner.invoke(app, ["check", str(tiny_yaml), "--set", "name=../../escaped"])
    assert result.exit_code == 2, result.output
    assert "name" in result.output and "one folder name" in result.output


# --- 2. cross-field rules of find and train ------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [("1", "1e-3"), ("1e-2", "1e-2")])
def test_sweep_must_rise(tiny_yaml, start, end):
    with pytest.raises(ConfigError):  # what find itself refuses ...
        sweep_rates(float(start), float(end), 10)
    text = refused(tiny_yaml, f"find.start_lr={start}", f"find.end_lr={end}")  # ... at load
    assert "• find.end_lr (from --set find.end_lr): expected a rate above find.start_lr" in text


def test_moms_first_and_last_must_match_as_train_wants(tiny_yaml):
    text = refused(tiny_yaml, "train.moms=[0.95, 0.85, 0.9]")
    assert "train.moms" in text and "first and last are equal" in text


# --- 3. non-finite numbers ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["find.start_lr", "find.end_lr"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_sweep_rates_must_be_finite(tiny_yaml, key, value):
    assert f"• {key} (from --set {key})" in refused(tiny_yaml, f"{key}={value}")


@pytest.mark.parametrize("value", [".nan", ".inf", "nan"])  # "nan" is text turned into a number
def test_optimizer_args_must_be_finite(tiny_yaml, value):
    text = refused(tiny_yaml, f"optimizer.args.weight_decay={value}")
    assert "• optimizer.args.weight_decay (from --set optimizer.args.weight_decay)" in text
    assert "expected finite numbers, got nan" in text or "got inf" in text


def test_optimizer_args_must_be_finite_inside_lists(write_yaml):
    path = write_yaml("optimizer: {name: adam, args: {betas: [0.9, .nan], eps: 1e-8}}\n")
    text = refused(path)
    assert "• optimizer.args.betas (line 1): expected finite numbers, got [0.9, nan]" in text
    exp = load_experiment(path, ["optimizer.args.betas=[0.9, 0.99]"])
    assert exp.optimizer.args["betas"] == [0.9, 0.99]


# --- 4. momentum range ----------------------------------------------------------------------


@pytest.mark.parametrize("moms", ["[1.5, 0.85, 1.5]", "[-0.5, 0.85, -0.5]", "[1, 0.85, 1]"])
def test_moms_must_lie_in_0_1(tiny_yaml, moms):
    text = refused(tiny_yaml, f"train.moms={moms}")
    assert "• train.moms (from --set train.moms): expected three momentums" in text
    assert "below 1" in text


def test_moms_at_the_edges_pass(tiny_yaml):
    assert load_experiment(tiny_yaml, ["train.moms=[0, 0.5, 0]"]).train.moms == (0, 0.5, 0)


# --- 5. seed range --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", str(2**32)])
def test_seed_outside_numpys_range_is_refused(tiny_yaml, seed):
    text = refused(tiny_yaml, f"seed={seed}")
    assert "• seed (from --set seed): expected a whole number from 0 to 4,294,967,295" in text


def test_largest_seed_builds(tiny_yaml):
    exp = load_experiment(tiny_yaml, [f"seed={2**32 - 1}"])
    assert build(exp).model is not None  # every RNG lrtool seeds takes it


# --- 6. Python tags are invalid YAML --------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('name: !!python/object/apply:os.system ["echo hi"]', "could not determine a constructor"),
        ("find: {end_lr: !!float abc}", "float 'abc'"),
    ],
)
def test_tags_plain_yaml_cannot_build_are_invalid_yaml(write_yaml, line, problem):
    result = runner.invoke(app, ["check", str(write_yaml(line + "\n"))])
    assert result.exit_code == 2, result.output
    assert "is not valid YAML at line 1" in result.output and problem in result.output
    assert "ConstructorError" not in result.output and "the run failed" not in result.output


# --- 7. booleans are not numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("find.num_steps", "a whole number"),
        ("data.batch_size", "a whole number"),
        ("train.epochs", "a whole number"),
        ("seed", "a whole number"),
        ("train.eval_every", "'epoch' or a whole number"),
        ("find.start_lr", "a number"),
        ("train.clip_grad_norm", "a number"),
    ],
)
def test_booleans_are_not_numbers(tiny_yaml, key, expected):
    text = refused(tiny_yaml, f"{key}=true")
    assert f"• {key} (from --set {key}): expected {expected}, got true" in text
    assert "(1 problem)" in text


# --- 8. every problem at once ---------------------------------------------------------------


def test_duplicate_keys_come_with_the_other_problems(write_yaml):
    text = refused(write_yaml("seed: 1\nseed: 2\ntrian: {epochs: 2}\n"))
    assert "(2 problems)" in text
    assert "• seed (line 2): written on lines 1 and 2" in text
    assert "• trian (line 3): unknown key; did you mean 'train'?" in text


@pytest.mark.parametrize("flag", ["--extend-decades", "--smoothing", "--group-ratio"])
def test_nan_for_a_bounded_number_is_called_not_a_number(tiny_yaml, flag):
    """pydantic said "less than or equal to 12 (got nan)", as if nan were too large."""
    command = ["train", "--lr-max", "0.1"] if flag == "--group-ratio" else ["find"]
    result = runner.invoke(app, [command[0], str(tiny_yaml), *command[1:], flag, "nan",
                                 "--no-plot"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "expected a number, got nan" in " ".join(result.output.split())
