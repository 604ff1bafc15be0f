"""Bad input is caught when the experiment is loaded (or built, for the data), in the user's words.

One test per reported case of issue 13: each failed on the code before the fix.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lrtool.build import build
from lrtool.cli import app
from lrtool.config import (
    LR_MAX_FORMS,
    RateSlice,
    load_experiment,
    lr_max_value,
    parse_yaml,
    resolved,
    validate,
)
from lrtool.errors import ComponentError, ConfigError
from lrtool.probe import first_step
from lrtool.train import parse_lr_max

runner = CliRunner()

IRIS = {
    "device": "cpu",
    "data": {"name": "sklearn.iris", "batch_size": 16},
    "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [8], "num_classes": 3}},
}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# --- the file itself ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n"])
def test_empty_file_is_an_error_naming_the_file(write_yaml, text):
    path = write_yaml(text, name="forgot.yaml")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in message(info) and "is empty" in message(info)
    assert "`{}`" in message(info)  # how to ask for the defaults on purpose


def test_explicit_empty_mapping_still_means_every_default(write_yaml):
    assert load_experiment(write_yaml("{}\n")).data.name == "sklearn.digits"


def test_duplicate_keys_name_both_lines(write_yaml):
    path = write_yaml("train:\n  epochs: 2\n  epochs: 3\nseed: 1\nseed: 2\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = message(info)
    assert "train.epochs (line 3): written on lines 2 and 3" in text
    assert "seed (line 5): written on lines 4 and 5" in text  # every duplicate at once


def test_same_key_in_different_sections_is_not_a_duplicate():
    assert parse_yaml("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n")["b"] == {"x": 2}


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_an_error_not_a_recursion_error(write_yaml, depth):
    value = "[" * depth + "]" * depth
    with pytest.raises(ConfigError, match="nested more than 100 levels deep"):
        load_experiment(write_yaml("seed: 0\n"), [f"model.args.x={value}"])
    with pytest.raises(ConfigError, match="nested more than 100 levels deep"):
        load_experiment(write_yaml(f"data: {{args: {{x: {value}}}}}\n"))


def test_aliases_cannot_build_an_endless_or_huge_tree(write_yaml):
    with pytest.raises(ConfigError, match="nested more than 100 levels deep through aliases"):
        load_experiment(write_yaml("data: {args: {x: &x [1, *x]}}\n"))
    levels = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcde", "bcdef", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    bomb = "data:\n  args:\n" + "".join(f"    {line}\n" for line in levels)
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        load_experiment(write_yaml(bomb))


def test_set_key_thousands_of_levels_deep_is_an_error(write_yaml):
    key = ".".join(["model", "args"] + ["a"] * 5000)
    with pytest.raises(ConfigError, match="levels deep"):
        load_experiment(write_yaml("seed: 0\n"), [f"{key}=1"])


# --- train.lr_max, parsed in the schema ---------------------------------------------------


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        ("auto", "auto"),
        ("Auto", "auto"),
        (" AUTO ", "auto"),
        (3e-3, 3e-3),
        ("3e-3", 3e-3),
        ([1e-4, "1e-3"], [1e-4, 1e-3]),
        ("1e-4,1e-3", [1e-4, 1e-3]),
        ("1e-5:1e-3", RateSlice(high=1e-3, low=1e-5)),
        (":1e-3", RateSlice(high=1e-3)),
    ],
)
def test_lr_max_is_parsed_into_a_typed_value(written, parsed):
    assert validate({"train": {"lr_max": written}}).train.lr_max == parsed


def test_lr_max_slice_is_saved_as_the_user_writes_it():
    exp = validate({"train": {"lr_max": "1e-5:1e-3"}})
    assert resolved(exp)["train"]["lr_max"] == "1e-05:0.001"
    assert lr_max_value(resolved(exp)["train"]["lr_max"]) == exp.train.lr_max
    assert parse_lr_max(exp.train.lr_max, 3) == pytest.approx([1e-5, 1e-4, 1e-3])


@pytest.mark.parametrize("bad", ["banana", 0, -1e-3, "1e-2:1e-4", [], "auto:1", True])
def test_bad_lr_max_is_caught_at_load_with_its_line(write_yaml, bad):
    path = write_yaml(f"seed: 0\ntrain:\n  lr_max: {json.dumps(bad)}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = message(info)
    assert "train.lr_max (line 3): expected" in text
    # Every accepted form is listed, auto and lists included.
    assert LR_MAX_FORMS in text and "auto" in LR_MAX_FORMS and "a list" in LR_MAX_FORMS


def test_check_rejects_lr_max_banana_before_loading_data(write_yaml):
    result = invoke("check", write_yaml("train: {lr_max: banana}\n"))
    assert result.exit_code == 2
    assert "train.lr_max (line 1)" in result.output and "'banana'" in result.output
    assert "first batch" not in result.output  # nothing was built


def test_lr_max_flag_accepts_any_case_of_auto(write_yaml):
    exp = load_experiment(write_yaml("seed: 0\n"), values={"train.lr_max": "Auto"})
    assert exp.train.lr_max == "auto"


def test_lr_max_list_of_the_wrong_length_is_refused_when_building():
    with pytest.raises(ConfigError, match=r"train.lr_max: 3 rates for 2 parameter groups"):
        build(validate({**IRIS, "train": {"lr_max": [1e-3, 1e-2, 1e-1]}}))


# --- where a value came from --------------------------------------------------------------


def test_command_line_values_are_reported_as_such(write_yaml):
    path = write_yaml("device: cpu\nfind:\n  num_steps: 50\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(
            path,
            ["optimizer.args.momentun=0.9"],
            {"find.num_steps": 1, "device": "gpu", "train.lr_max": "fast"},
        )
    text = message(info)
    assert "find.num_steps (from --num-steps):" in text
    assert "device (from --device):" in text
    assert "train.lr_max (from --lr-max):" in text
    assert "optimizer.args.momentun (from --set optimizer.args.momentun):" in text
    assert "(line" not in text  # the file's num_steps on line 3 is not what was wrong
    assert text.count("'gpu'") == 1 and text.count("'fast'") == 1  # said once, not "(got ...)"


# --- components, checked against their signatures at load ---------------------------------


def test_misspelt_optimizer_argument_says_did_you_mean(write_yaml):
    path = write_yaml("optimizer:\n  name: sgd\n  args: {momentun: 0.9}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "optimizer.args.momentun (line 3): unknown argument; did you mean 'momentum'?" in (
        message(info)
    )


def test_model_and_loss_arguments_are_checked_too():
    with pytest.raises(ConfigError) as info:
        validate(
            {
                "model": {"name": "mlp", "args": {"in_features": 4, "num_clases": 3}},
                "loss": {"name": "cross_entropy", "args": {"label_smothing": 0.1}},
                "metrics": ["acuracy"],
            }
        )
    text = message(info)
    assert "model.args.num_clases: unknown argument; did you mean 'num_classes'?" in text
    assert "model.args: missing required argument 'num_classes'" in text
    assert "loss.args.label_smothing: unknown argument; did you mean 'label_smoothing'?" in text
    assert "metrics.0: unknown metric; did you mean 'accuracy'?" in text


def test_numbers_written_as_strings_reach_torch_as_numbers():
    exp = validate(
        {
            **IRIS,
            "optimizer": {
                "name": "adamw",
                "args": {"weight_decay": "1e-3", "betas": ["0.9", "0.99"], "eps": "1e-8"},
            },
            "loss": {"name": "cross_entropy", "args": {"label_smoothing": "0.1"}},
        }
    )
    assert exp.optimizer.args == {"weight_decay": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8}
    built = build(exp)
    group = built.optimizer.param_groups[0]
    assert group["weight_decay"] == 1e-3 and isinstance(group["weight_decay"], float)
    assert built.loss_fn.label_smoothing == 0.1
    assert first_step(built) > 0


def test_optimizer_lr_is_not_dropped_silently():
    with pytest.raises(ConfigError) as info:
        validate({"optimizer": {"name": "adamw", "args": {"lr": "1e-3"}}})
    assert "optimizer.args.lr: lrtool sets the learning rate" in message(info)
    assert "train.lr_max" in message(info)


def test_optimizer_values_are_judged_by_the_optimizer_at_load():
    with pytest.raises(ConfigError, match=r"optimizer.args: SGD refuses them: .*momentum"):
        validate({"optimizer": {"name": "sgd", "args": {"momentum": -1}}})


@pytest.mark.parametrize(("name", "why"), [("lbfgs", "closure"), ("SparseAdam", "sparse")])
def test_unsupported_optimizers_are_refused_at_check(write_yaml, name, why):
    result = invoke("check", write_yaml(f"{{device: cpu, optimizer: {{name: {name}}}}}\n"))
    assert result.exit_code == 2
    assert "optimizer.name (line 1)" in result.output and "cannot be used" in result.output
    assert why in result.output
    assert "first batch" not in result.output


OPTIMIZER_SUBCLASS = """
import torch

class MyLBFGS(torch.optim.LBFGS):
    pass
"""


def test_unsupported_optimizer_subclass_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "bad_input_opt.py").write_text(OPTIMIZER_SUBCLASS)
    (tmp_path / "exp.yaml").write_text("optimizer: {name: 'bad_input_opt:MyLBFGS'}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="cannot be used with lrtool"):
        load_experiment(tmp_path / "exp.yaml")


BESIDE = """
from torch import nn

def build(width=8):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))

def loss(output, target, scale=1.0):
    return scale * nn.functional.cross_entropy(output, target)
"""


def test_import_paths_beside_the_yaml_work_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "bad_input_beside.py").write_text(BESIDE)
    (folder / "exp.yaml").write_text(
        textwrap.dedent(
            """\
            device: cpu
            data: {name: sklearn.iris, batch_size: 16}
            model: {name: "bad_input_beside:build", args: {width: "6"}}
            loss: {name: "bad_input_beside:loss", args: {scale: 2}}
            """
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    exp = load_experiment(Path("..") / "experiments" / "exp.yaml")
    assert exp.model.args == {"width": 6}  # a number written as text, as elsewhere
    built = build(exp)
    assert built.model[0].out_features == 6
    assert first_step(built) > 0


def test_a_module_that_raises_on_import_is_reported_with_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_input_broken.py").write_text("import torch\n\nundefined_name + 1\n")
    with pytest.raises(ConfigError) as info:
        validate({"model": {"name": "bad_input_broken:build"}})
    text = message(info)
    assert "model.name: model 'bad_input_broken:build': importing module" in text
    assert "NameError" in text and "bad_input_broken.py:3" in text


# --- data ---------------------------------------------------------------------------------


def csv_experiment(tmp_path: Path, text: str, **data) -> dict:
    (tmp_path / "d.csv").write_text(textwrap.dedent(text))
    return {
        **IRIS,
        "data": {"name": "csv", "args": {"path": str(tmp_path / "d.csv")}, **data},
        "model": {"name": "mlp", "args": {"in_features": 2, "num_classes": 2}},
    }


def test_nan_and_inf_in_a_csv_name_the_file_column_and_rows(tmp_path):
    exp = csv_experiment(tmp_path, "a,b,y\n1,2,0\n3,nan,1\n4,5,0\n6,inf,1\n7,8,0\n1,2,1\n")
    with pytest.raises(ComponentError) as info:
        build(validate(exp))
    text = message(info)
    assert str(tmp_path / "d.csv") in text
    assert "column 'b': inf, nan on lines 3 and 5" in text


def test_find_on_a_csv_with_nan_exits_2_before_sweeping(tmp_path):
    exp = csv_experiment(tmp_path, "a,b,y\n1,2,0\n3,nan,1\n4,5,0\n6,7,1\n7,8,0\n1,2,1\n")
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    result = invoke("find", path, "--no-plot", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "column 'b': nan on line 3" in result.output
    assert not (tmp_path / "out" / "find.json").exists()


def test_missing_csv_cells_say_which_row_and_column(tmp_path):
    exp = csv_experiment(tmp_path, "a,b,y\n1,2,0\n3,,1\n4,5,\n6,7,1\n7,8,0\n1,2,1\n")
    with pytest.raises(ComponentError) as info:
        build(validate(exp))
    text = message(info)
    assert "column 'b': empty on line 3" in text and "column 'y': empty on line 4" in text
    assert "one-hot" not in text  # an empty cell is not a category


def test_non_finite_in_memory_data_from_any_source_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_input_nan_data.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n\n"
        "def make():\n"
        "    x = torch.randn(40, 4)\n"
        "    x[7, 1] = float('nan')\n"
        "    return TensorDataset(x, torch.arange(40) % 3)\n"
    )
    exp = validate({**IRIS, "data": {"name": "bad_input_nan_data:make", "val_fraction": 0.5}})
    with pytest.raises(ComponentError, match="NaN or infinite inputs in 1 samples"):
        build(exp)


def test_text_labels_mapping_is_saved_with_the_results(tmp_path):
    rows = "".join(f"{i},{i % 5},{'dog' if i % 2 else 'cat'}\n" for i in range(40))
    exp = csv_experiment(tmp_path, "a,b,pet\n" + rows)
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps({**exp, "find": {"num_steps": 5}}))
    result = invoke("find", path, "--no-plot", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "find.json").read_text())
    assert saved["config"]["data"]["classes"] == ["cat", "dog"]


def test_data_classes_fixes_the_label_order(tmp_path):
    rows = "".join(f"{i},{i % 5},{'dog' if i % 2 else 'cat'}\n" for i in range(40))
    exp = csv_experiment(tmp_path, "a,b,pet\n" + rows, classes=["dog", "cat"])
    exp["data"]["args"]["standardize"] = False  # column a keeps the row number i
    built = build(validate(exp))
    x, y = built.train_data.tensors
    odd = x[:, 0].long() % 2 == 1
    assert y[odd].eq(0).all() and y[~odd].eq(1).all()  # dog (odd rows) is class 0 now
    assert built.experiment.data.classes == ["dog", "cat"]
    with pytest.raises(ComponentError, match="not in data.classes: 'dog'"):
        build(validate(csv_experiment(tmp_path, "a,b,pet\n" + rows, classes=["cat", "cow"])))


def test_more_classes_than_model_outputs_is_caught_at_check(tmp_path):
    rows = "".join(f"{i},{i % 5},{'xyz'[i % 3]}\n" for i in range(30))
    exp = csv_experiment(tmp_path, "a,b,label\n" + rows)  # 3 classes, num_classes 2
    with pytest.raises(ComponentError) as info:
        build(validate(exp))
    text = message(info)
    assert (
        "model.args.num_classes is 2, but the data has 3 classes (labels 0 to 2: x, y, z)" in text
    )
    with pytest.raises(ComponentError, match="out_features is 1 \\(its default\\)"):
        build(validate({**IRIS, "model": {"name": "linear", "args": {"in_features": 4}}}))


def test_first_batch_nan_loss_fails_check():
    exp = validate({**IRIS, "model": {"name": "mlp", "args": {"in_features": 4, "num_classes": 3}}})
    built = build(exp)
    with torch.no_grad():
        built.model[-1].bias.fill_(float("nan"))
    with pytest.raises(ComponentError, match="loss of the first batch is nan"):
        first_step(built)


# --- what loads code ----------------------------------------------------------------------


def test_finder_disk_snapshot_loads_weights_only(monkeypatch):
    from lrtool import finder

    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(finder.torch, "load", spy)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    snap = finder.Snapshot(model, opt, where="disk")
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    snap.restore()
    snap.close()
    assert seen == [True] and torch.equal(model.weight, before)


def test_check_refuses_freeze_epochs_on_a_single_group_model_as_train_does(write_yaml):
    path = write_yaml(
        "device: cpu\nmodel: {name: linear, args: {in_features: 4, out_features: 3}}\n"
        "data: {name: sklearn.iris, batch_size: 16}\ntrain: {freeze_epochs: 1, epochs: 1}\n"
    )
    checked = runner.invoke(app, ["check", str(path)])
    trained = runner.invoke(app, ["train", str(path), "--lr-max", "0.1", "--no-plot"])
    for result in (checked, trained):
        assert result.exit_code == 2, result.output
        assert "this model has a single group, so nothing would be frozen" in " ".join(
            result.output.split()
        )


def test_a_bad_sklearn_argument_shows_the_files_arguments_only(write_yaml):
    path = write_yaml(
        "device: cpu\nmodel: {name: mlp, args: {in_features: 4, num_classes: 3}}\n"
        "data: {name: sklearn.iris, args: {foo: 1}}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "arguments {'foo': 1} do not fit its signature" in text and "return_X_y" not in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("in_features: 4, num_classes: 3, hidden: [0]", "model.args.hidden: expected a list"),
        ("in_features: 4, num_classes: 3, hidden: abc", "model.args.hidden: expected a list"),
        ("in_features: 4.5, num_classes: 3", "model.args.in_features: expected a whole number"),
        ("in_features: 4, num_classes: 3, dropout: 1.5", "model.args.dropout: expected a number"),
    ],
)
def test_built_in_model_sizes_are_checked_in_the_files_words(write_yaml, args, words):
    path = write_yaml(
        f"device: cpu\nmodel: {{name: mlp, args: {{{args}}}}}\ndata: {{name: sklearn.iris}}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and words in result.output, result.output
