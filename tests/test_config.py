from __future__ import annotations

import pytest

from lrtool.config import (
    Experiment,
    json_schema,
    load_experiment,
    parse_yaml,
    validate,
)
from lrtool.errors import ConfigError


def test_defaults_and_name_from_stem(write_yaml):
    exp = load_experiment(write_yaml("seed: 3\n", name="my-exp.yaml"))
    assert exp.name == "my-exp"
    assert exp.seed == 3
    assert exp.data.name == "sklearn.digits"
    assert exp.data.batch_size == 64
    assert exp.find.start_lr == 1e-7
    assert exp.find.diverge_factor == 4
    assert exp.train.moms == (0.95, 0.85, 0.95)
    assert exp.output_dir == "runs"


def test_exponent_without_dot_is_a_float_everywhere(write_yaml):
    exp = load_experiment(
        write_yaml(
            """
            find: {start_lr: 1e-7, end_lr: 1E+1}
            optimizer: {name: adam, args: {eps: 1e-8, betas: [0.9, 0.999]}}
            data: {args: {nested: {x: 2e3}}}
            """
        )
    )
    assert exp.find.start_lr == 1e-7 and isinstance(exp.find.start_lr, float)
    assert exp.find.end_lr == 10.0
    assert exp.optimizer.args["eps"] == 1e-8 and isinstance(exp.optimizer.args["eps"], float)
    assert exp.data.args["nested"]["x"] == 2000.0


def test_yaml_keeps_ints_strings_and_bools():
    assert parse_yaml("a: 12\nb: 1e\nc: true\nd: '1e-3'\ne: 1_000\n") == {
        "a": 12,
        "b": "1e",
        "c": True,
        "d": "1e-3",
        "e": 1000,
    }


def test_set_overrides_dotted_keys_with_yaml_values(write_yaml):
    exp = load_experiment(
        write_yaml("train: {epochs: 5}\n"),
        ["train.epochs=3", "data.batch_size=128", "optimizer.args.momentum=9e-1", "metrics=[]"],
    )
    assert exp.train.epochs == 3
    assert exp.data.batch_size == 128
    assert exp.optimizer.args["momentum"] == 0.9
    assert exp.metrics == []


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "seed.x=1"])
def test_bad_set_is_a_clear_error(write_yaml, bad):
    with pytest.raises(ConfigError, match="--set|section"):
        load_experiment(write_yaml("seed: 0\n"), [bad])


def test_unknown_key_says_did_you_mean_and_line(write_yaml):
    path = write_yaml("seed: 0\ndata:\n  batch_sise: 32\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = str(info.value)
    assert "data.batch_sise (line 3)" in text
    assert "did you mean 'batch_size'" in text


def test_all_problems_reported_at_once(write_yaml):
    path = write_yaml("data:\n  batch_size: 0\n  val_fraction: 1.5\nfind:\n  num_steps: many\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = str(info.value)
    assert "3 problems" in text
    assert "data.batch_size (line 2)" in text and "greater than or equal to 1" in text
    assert "data.val_fraction (line 3)" in text and "less than 1" in text
    assert "find.num_steps (line 5)" in text


def test_val_fraction_zero_rejected():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        validate({"data": {"val_fraction": 0}})


def test_invalid_yaml_names_the_line(write_yaml):
    path = write_yaml("seed: 0\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_experiment(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_experiment(tmp_path)


def test_top_level_must_be_a_mapping(write_yaml):
    with pytest.raises(ConfigError, match="mapping"):
        load_experiment(write_yaml("- a\n- b\n"))


def test_device_syntax_and_suggest_method_checked():
    with pytest.raises(ConfigError, match="device"):
        validate({"device": "gpu"})
    with pytest.raises(ConfigError, match="find.suggest.*unknown method"):
        validate({"find": {"suggest": "magic"}})


def test_eval_every_accepts_epoch_or_steps():
    assert validate({"train": {"eval_every": 10}}).train.eval_every == 10
    assert validate({}).train.eval_every == "epoch"
    with pytest.raises(ConfigError, match="train.eval_every"):
        validate({"train": {"eval_every": 0}})


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as info:
        validate({"seed": "zero"})
    assert "seed" in str(info.value) and "'zero'" in str(info.value)


def test_schema_lists_every_section_with_descriptions():
    schema = json_schema()
    assert set(Experiment.model_fields) <= set(schema["properties"])
    find = schema["$defs"]["FindSpec"]["properties"]
    assert find["start_lr"]["default"] == 1e-7
    assert "description" in find["diverge_factor"]
    assert schema["$defs"]["DataSpec"]["additionalProperties"] is False
