"""Input faults of the fourth adversarial pass: targets a loss cannot take, a loss below
zero, CSV files lrtool could not read clearly, class names, empty sections, numbers written
as text, loss weights from YAML, seed counts past the range."""

from __future__ import annotations

import pytest
import torch

from lrtool.build import build
from lrtool.config import validate
from lrtool.errors import ComponentError, ConfigError
from lrtool.probe import checked_build
from lrtool.run import parse_seeds


def exp(**sections):
    base = {"device": "cpu", "data": {"name": "sklearn.iris", "batch_size": 16}}
    base.update(sections)
    base.setdefault("model", {"name": "mlp", "args": {"in_features": 4, "num_classes": 3}})
    return validate(base)


# --- targets the loss cannot take ----------------------------------------------------------


def test_bce_on_class_indices_points_to_cross_entropy():
    # iris labels 0..2 under bce_with_logits: not "set num_classes: 1", which would train.
    for classes in (3, 1):
        bad = exp(
            model={"name": "mlp", "args": {"in_features": 4, "num_classes": classes}},
            loss={"name": "bce_with_logits"},
        )
        with pytest.raises(ComponentError, match="targets run from 0 to 2.*cross_entropy"):
            checked_build(bad)


def _csv(tmp_path, labels):
    lines = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{lab}" for i, lab in enumerate(labels)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_negative_class_indices_are_refused_in_lrtools_words(tmp_path):
    path = _csv(tmp_path, [-1, 1] * 20)
    bad = exp(
        data={"name": "csv", "args": {"path": str(path), "target": "label"}, "batch_size": 8},
        model={"name": "mlp", "args": {"in_features": 2, "num_classes": 2}},
    )
    with pytest.raises(ComponentError, match="class indices 0..N-1, but a target is -1"):
        checked_build(bad)


MODULE = """
import torch
from torch.utils.data import TensorDataset

def float_labels(n=40):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, 0] > 0).double())
"""


def test_float_labels_under_cross_entropy_are_refused_in_lrtools_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "float_labels_data.py").write_text(MODULE)
    bad = exp(data={"name": "float_labels_data:float_labels", "batch_size": 8})
    with pytest.raises(ComponentError, match="takes class indices.*torch.float64.*integers"):
        checked_build(bad)


def test_class_probabilities_under_cross_entropy_still_work():
    built = build(exp())
    x, _ = next(iter(built.train_data))
    probabilities = torch.softmax(torch.randn(x.shape[0], 3), dim=1)
    assert built.loss_fn(built.model(x), probabilities).ndim == 0


# --- seeds ----------------------------------------------------------------------------------


def test_a_seed_count_past_the_range_is_refused_before_any_list_is_built():
    with pytest.raises(ConfigError, match="4,294,967,296 range tests is more than the 10,000"):
        parse_seeds("4294967296", 0)
    with pytest.raises(ConfigError, match="3 seeds from the experiment's seed 4,294,967,295"):
        parse_seeds("3", 2**32 - 1)
    assert parse_seeds("2", 2**32 - 2) == [2**32 - 2, 2**32 - 1]


# --- CSV files lrtool could not read clearly --------------------------------------------------


def _csv_exp(path, target="y"):
    return exp(
        data={"name": "csv", "args": {"path": str(path), "target": target}, "batch_size": 4},
        model={"name": "mlp", "args": {"in_features": 2, "num_classes": 2}},
    )


def test_a_csv_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,y\n1,2,0\n3,4,1\n5,6,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ComponentError, match=r"line 4: byte 0xe9 is not UTF-8.*Save the file"):
        build(_csv_exp(path))


def test_a_cell_longer_than_csvs_limit_names_its_line(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n" + "5," + "9" * 200_000 + ",1\n")
    with pytest.raises(ComponentError, match=r"line 4: Python's csv module cannot read it"):
        build(_csv_exp(path))


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    rows = "".join(f"{i % 2},{i % 3},{i % 5}\r\n" for i in range(20))
    path.write_bytes("\ufeffy,a,b\r\n".encode() + rows.encode())
    built = build(_csv_exp(path, target="y"))
    assert built.train_data.num_samples + built.val_data.num_samples == 20


def test_a_target_name_two_columns_share_is_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,a,y\n" + "".join(f"{i % 3},{i % 5},{i % 2}\n" for i in range(20)))
    with pytest.raises(ComponentError, match="2 columns named 'a'"):
        build(_csv_exp(path, target="a"))
    assert build(_csv_exp(path, target="y"))  # duplicate feature names are harmless


def test_a_folder_as_the_csv_path_says_so(tmp_path):
    with pytest.raises(ComponentError, match="is a folder; name the CSV file in it"):
        build(_csv_exp(tmp_path))


# --- class names ----------------------------------------------------------------------------


def test_class_names_must_be_distinct():
    with pytest.raises(ConfigError, match=r"data.classes.*'cat' more than once"):
        exp(data={"name": "sklearn.iris", "batch_size": 16, "classes": ["dog", "cat", "cat"]})


def test_fewer_class_names_than_the_labels_is_refused():
    bad = exp(data={"name": "sklearn.iris", "batch_size": 16, "classes": ["a", "b"]})
    with pytest.raises(ComponentError, match="names 2 classes, but the labels run to 2"):
        checked_build(bad)
    names = ["setosa", "versicolor", "virginica"]
    good = exp(data={"name": "sklearn.iris", "batch_size": 16, "classes": names})
    assert checked_build(good).experiment.data.classes == names


# --- a section whose keys are all commented out -------------------------------------------------


def test_a_section_or_args_with_every_line_commented_out_is_left_out(write_yaml):
    from lrtool.workflows import load_experiment

    path = write_yaml(
        """\
        model: {name: mlp, args: {in_features: 4, hidden: [8], num_classes: 3}}
        data: {name: sklearn.iris}
        find:
          # num_steps: 50
        optimizer:
          name: adam
          args:
            # weight_decay: 1e-4
        """
    )
    loaded = load_experiment(path)
    assert loaded.find.num_steps == 100 and loaded.optimizer.args == {}
    with pytest.raises(ConfigError, match=r"data.batch_size"):  # other nulls stay errors
        exp(data={"name": "sklearn.iris", "batch_size": None})


def test_whole_numbers_written_as_text_in_exponent_form():
    loaded = exp(find={"num_steps": "1e2"}, train={"epochs": "1e1"})
    assert loaded.find.num_steps == 100 and loaded.train.epochs == 10
    with pytest.raises(ConfigError, match="find.num_steps"):
        exp(find={"num_steps": "1.5e0"})


# --- loss weights from YAML ---------------------------------------------------------------------


def test_class_weights_written_as_a_yaml_list_reach_torch_as_a_tensor():
    from lrtool.probe import first_step

    weighted = exp(loss={"name": "cross_entropy", "args": {"weight": [1, 1, 2]}})
    built = checked_build(weighted)
    assert torch.equal(built.loss_fn.weight, torch.tensor([1.0, 1.0, 2.0]))
    assert first_step(built) > 0
    assert weighted.loss.args == {"weight": [1, 1, 2]}  # the file's words stay in config.yaml
    wrong = exp(loss={"name": "cross_entropy", "args": {"weight": [1, 2]}})
    with pytest.raises(ComponentError, match="loss 'cross_entropy' failed"):
        checked_build(wrong)


# --- the JSON Schema agrees with what lrtool reads ----------------------------------------------


def test_the_schema_takes_numbers_written_as_text_and_auto_in_any_case():
    import re

    from lrtool.config import json_schema

    schema = json_schema()
    find = schema["$defs"]["FindSpec"]["properties"]
    text = next(s for s in find["start_lr"]["anyOf"] if s.get("type") == "string")
    assert all(re.match(text["pattern"], t) for t in ("1e-5", "3e-3", " 32 ", ".5", "1E+2"))
    # start_lr must be above 0: its text pattern refuses a minus sign and zero too.
    assert not any(re.match(text["pattern"], t) for t in ("abc", "1e", "", "1.2.3", "-1", "0"))
    assert find["start_lr"]["default"] == 1e-7 and "description" in find["start_lr"]
    lr_max = schema["$defs"]["TrainSpec"]["properties"]["lr_max"]["anyOf"]
    auto = next(s for s in lr_max if "Aa" in s.get("pattern", ""))
    assert all(re.match(auto["pattern"], t) for t in ("auto", "AUTO", "Auto"))
    assert (
        find["suggest"]["enum"][0] == "robust_minimum" and "VALLEY" not in find["suggest"]["enum"]
    )


def test_files_check_accepts_are_valid_against_the_schema_and_the_reverse():
    jsonschema = pytest.importorskip("jsonschema")
    from lrtool.config import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    accepted = [
        {"train": {"lr_max": "AUTO"}},
        {"train": {"lr_max": "3e-3"}},
        {"train": {"lr_max": [1e-4, "1e-3"]}},
        {"find": {"start_lr": "1e-5"}},
        {"data": {"batch_size": "32"}},
    ]
    for doc in accepted:
        validate(doc)
        assert not list(validator.iter_errors(doc)), doc
    with pytest.raises(ConfigError):
        validate({"find": {"suggest": "VALLEY"}})
    assert list(validator.iter_errors({"find": {"suggest": "VALLEY"}}))


def test_an_optimizer_number_written_as_a_word_names_its_key():
    with pytest.raises(ConfigError, match=r"optimizer.args.momentum: expected a number, got 'abc'"):
        exp(optimizer={"name": "sgd", "args": {"momentum": "abc"}})
    assert exp(optimizer={"name": "sgd", "args": {"momentum": "0.9"}}).optimizer.args == {
        "momentum": 0.9
    }


def test_a_missing_relative_csv_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ComponentError, match=r"does not exist: a relative path is looked for in"):
        build(_csv_exp("nothere.csv"))


def test_a_dotted_module_that_does_not_import_names_its_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"that sub/mod.py is in"):
        exp(model={"name": "sub.mod:f"})


def test_an_empty_class_folder_is_named_without_download_advice(tmp_path):
    from PIL import Image

    for label in ("cat", "dog", "zebra"):
        (tmp_path / "images" / label).mkdir(parents=True)
    for label in ("cat", "dog"):
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "images" / label / f"{i}.png")
    bad = exp(
        data={"name": "torchvision.ImageFolder", "args": {"root": str(tmp_path / "images")}},
        model={"name": "cnn", "args": {"in_channels": 3, "num_classes": 3, "width": 4}},
    )
    with pytest.raises(ComponentError) as info:
        build(bad)
    text = str(info.value)
    assert "zebra" in text and "add images" in text and "download" not in text


def test_a_batch_larger_than_the_training_split_is_reported_as_the_split():
    from lrtool.workflows import run_find

    big = exp(data={"name": "sklearn.iris", "batch_size": 100000}, find={"num_steps": 5})
    result = run_find(big)
    assert result.effective_batch_size == 120  # every batch is the whole split
    assert checked_build(big).batch_size == 120


def test_the_schema_takes_commented_out_sections_and_numpy_numbers_reach_the_api(tiny_yaml):
    jsonschema = pytest.importorskip("jsonschema")
    from lrtool.config import json_schema

    doc = {"find": None, "optimizer": {"name": "adam", "args": None}}
    validate(doc)
    assert not list(jsonschema.Draft202012Validator(json_schema()).iter_errors(doc))


def test_numpy_numbers_are_rates_and_seeds_in_the_api(tiny_yaml, tmp_path):
    import numpy as np

    from lrtool.workflows import load_experiment, run_find, run_verify

    exp_ = load_experiment(tiny_yaml)
    result = run_verify(exp_, lrs=[np.float64(0.05), np.float32(0.15)])
    assert [c["lr"] for c in result.candidates][:2] == pytest.approx([0.05, 0.15], rel=1e-6)
    assert [s["seed"] for s in run_find(exp_, [np.int64(0), np.int64(1)]).seeds] == [0, 1]


def test_find_is_not_refused_for_a_training_setting(tiny_yaml):
    from lrtool.workflows import load_experiment, run_check, run_find

    exp_ = load_experiment(tiny_yaml, {"train.grad_accum": 100})
    assert run_find(exp_).steps > 0
    with pytest.raises(ComponentError, match="train.grad_accum is 100"):
        run_check(exp_)


@pytest.mark.parametrize(
    "doc",
    [
        {"find": {"clip_grad_norm": -1}},
        {"data": {"batch_size": "-5"}},
        {"find": {"start_lr": "0"}},
        {"find": {"start_lr": "0e3"}},
        {"train": {"eval_every": 0}},
        {"seed": "-1"},
    ],
)
def test_the_schema_refuses_what_check_refuses_numbers_as_text_included(doc):
    jsonschema = pytest.importorskip("jsonschema")
    from lrtool.config import json_schema

    with pytest.raises(ConfigError):
        validate(doc)
    assert list(jsonschema.Draft202012Validator(json_schema()).iter_errors(doc)), doc


def test_bounded_numbers_as_text_keep_the_bounds_a_pattern_can_hold():
    import re

    from lrtool.config import NON_NEGATIVE_TEXT, NUMBER_TEXT, POSITIVE_TEXT

    for text in ("1e-3", "+2", "0.5", ".5", " 3 ", "10E2", "0.001e+1"):
        assert re.match(POSITIVE_TEXT, text) and re.match(NON_NEGATIVE_TEXT, text), text
    for text in ("0", "0.0", "00", ".0", "0e5", "-1", "-0.5"):
        assert not re.match(POSITIVE_TEXT, text), text
    assert re.match(NON_NEGATIVE_TEXT, "0") and not re.match(NON_NEGATIVE_TEXT, "-1")
    assert re.match(NUMBER_TEXT, "-1")
