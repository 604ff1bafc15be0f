"""Input faults of the second adversarial pass: each refused before training, naming its key.

Every test failed on the code before the fix. The components below are imported by their
import path ("test_input_faults2:..."): pytest has already imported this module by that name.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from typer.testing import CliRunner

from lrtool.build import build
from lrtool.cli import app
from lrtool.config import load_experiment, validate
from lrtool.errors import ComponentError, ConfigError
from lrtool.models import parameter_groups
from lrtool.probe import first_step
from lrtool.registry import METRICS

runner = CliRunner()
HERE = "test_input_faults2"

IRIS = {
    "device": "cpu",
    "data": {"name": "sklearn.iris", "batch_size": 16},
    "model": {"name": "mlp", "args": {"in_features": 4, "hidden": [8], "num_classes": 3}},
}
FAKE = {
    "device": "cpu",
    "data": {
        "name": "torchvision.FakeData",
        "args": {"size": 8, "image_size": [3, 8, 8], "num_classes": 2},
        "batch_size": 4,
    },
    "model": {"name": "cnn", "args": {"in_channels": 3, "num_classes": 2, "width": 4}},
}


def experiment(base: dict = IRIS, **sections: object) -> dict:
    return {**base, **sections}


def with_data_args(base: dict, **args: object) -> dict:
    return {**base, "data": {**base["data"], "args": {**base["data"].get("args", {}), **args}}}


# --- components ------------------------------------------------------------------------


class DictItems(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.randn(4), "y": i % 3}


def dict_items() -> Dataset:
    return DictItems()


def empty_val() -> tuple[Dataset, Dataset]:
    return TensorDataset(torch.randn(16, 4), torch.arange(16) % 3), TensorDataset(
        torch.randn(0, 4), torch.zeros(0, dtype=torch.long)
    )


def empty_train_pair() -> tuple[Dataset, Dataset]:
    train, val = empty_val()
    return val, train


def soft_labels() -> Dataset:
    """Class probabilities as targets: cross_entropy takes them, accuracy cannot."""
    return TensorDataset(torch.randn(16, 4), torch.softmax(torch.randn(16, 3), dim=1))


def frozen() -> nn.Module:
    model = nn.Linear(4, 3)
    model.requires_grad_(False)
    return model


def no_parameters() -> nn.Module:
    return nn.Flatten()


class Three(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def class_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A custom loss on class indices: load cannot tell that mae will not fit it."""
    return nn.functional.cross_entropy(output, target)


# --- 1. metrics that do not fit the loss or the targets --------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "bce_with_logits"])
def test_mae_with_a_classification_loss_is_refused_at_load(loss):
    with pytest.raises(ConfigError) as info:
        validate(experiment(metrics=["mae"], loss={"name": loss}))
    assert "• metrics" in str(info.value) and "mae" in str(info.value)


def test_a_metric_listed_twice_is_refused():
    with pytest.raises(ConfigError, match=r"metrics.1.*accuracy is listed twice"):
        validate(experiment(metrics=["accuracy", "accuracy"]))


def test_mae_on_class_scores_of_a_custom_loss_is_refused_by_the_probe():
    exp = validate(experiment(metrics=["mae"], loss={"name": f"{HERE}:class_loss"}))
    with pytest.raises(ConfigError, match=r"^metrics: mae cannot be computed"):
        first_step(build(exp))


def test_accuracy_on_class_probabilities_is_refused_by_the_probe():
    exp = validate(experiment(data={"name": f"{HERE}:soft_labels", "batch_size": 8}))
    with pytest.raises(ConfigError, match=r"^metrics: accuracy compares the predicted class"):
        first_step(build(exp))


def test_multi_label_accuracy_is_element_wise():
    # Sample 1: both labels right; sample 2: one of two. Logits above 0 predict 1.
    output = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert METRICS["accuracy"](output, target).item() == pytest.approx(1.5)


def test_mae_is_the_mean_over_a_sample_s_targets():
    output = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert METRICS["mae"](output, torch.zeros(2, 2)).item() == pytest.approx(1.5 + 3.5)


def test_multi_label_bce_with_accuracy_passes_the_probe_and_evaluates():
    exp = validate(
        {
            "device": "cpu",
            "data": {
                "name": "sklearn.make_multilabel_classification",
                "args": {"n_samples": 40, "n_features": 6, "n_classes": 5, "random_state": 0},
                "batch_size": 8,
            },
            "model": {"name": "mlp", "args": {"in_features": 6, "hidden": [8], "num_classes": 5}},
            "loss": {"name": "bce_with_logits"},
        }
    )
    built = build(exp)
    first_step(built)
    x, y = next(iter(built.val_data))
    with torch.no_grad():
        value = built.metrics["accuracy"](built.model(x), y).item()
    assert 0 <= value <= len(y)


def test_a_regression_loss_refuses_outputs_that_would_broadcast():
    exp = validate(
        experiment(
            data={"name": "sklearn.diabetes", "batch_size": 16},
            model={"name": "mlp", "args": {"in_features": 10, "num_classes": 3}},
            loss={"name": "mse"},
            metrics=[],
        )
    )
    with pytest.raises(ComponentError, match=r"set model.args.num_classes: 1"):
        first_step(build(exp))


# --- 2. dataset items that are not (input, target) pairs --------------------------------


def test_dict_items_are_refused_saying_what_arrived():
    exp = validate(experiment(data={"name": f"{HERE}:dict_items", "batch_size": 8}))
    with pytest.raises(ComponentError) as info:
        build(exp)
    assert "(input, target) pair" in str(info.value)
    assert "dict with keys x, y" in str(info.value)


# --- 3. keys of args that are not text -------------------------------------------------


@pytest.mark.parametrize("section", ["model", "optimizer", "loss", "data"])
def test_a_non_text_key_in_args_names_the_args(section):
    raw = experiment()
    raw[section] = {**raw.get(section, {}), "args": {**raw.get(section, {}).get("args", {}), 7: 1}}
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert f"• {section}.args: expected names (text) as keys, got 7" in str(info.value)


# --- 4. the data.args lrtool reads itself ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ({"normalize": 0.5}, "normalize"),
        ({"normalize": [1, 2, 3]}, "normalize"),
        ({"normalize": [0.5, 0]}, "normalize"),
        ({"normalize": [[0.5, 0.5], [0.2, 0.2, 0.2]]}, "normalize"),
        ({"resize": -3}, "resize"),
        ({"resize": "abc"}, "resize"),
        ({"resize": 0}, "resize"),
        ({"augment": "yes please"}, "augment"),
        ({"root": ""}, "root"),
    ],
)
def test_image_args_are_checked_at_load(args, key):
    with pytest.raises(ConfigError, match=rf"• data\.args\.{key}: expected"):
        validate(with_data_args(FAKE, **args))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"name": "sklearn.iris", "args": {"standardize": "false"}}, "standardize"),
        ({"name": "sklearn.digits", "args": {"reshape": [0, 8, 8]}}, "reshape"),
        ({"name": "csv", "args": {"path": ""}}, "path"),
        ({"name": "csv", "args": {"path": "a.csv", "delimiter": ";;"}}, "delimiter"),
        ({"name": "csv", "args": {"path": "a.csv", "target": True}}, "target"),
        ({"name": "csv", "args": {"path": "a.csv", "targte": "y"}}, "targte"),
    ],
)
def test_tabular_args_are_checked_at_load(data, key):
    with pytest.raises(ConfigError, match=rf"• data\.args\.{key}: "):
        validate(experiment(data=data))


def test_per_channel_normalize_that_does_not_fit_the_images_names_the_key():
    exp = validate(with_data_args(FAKE, normalize=[[0.5, 0.5], [0.2, 0.2]]))
    with pytest.raises(ComponentError, match=r"^data\.args\.normalize: .* per channel"):
        build(exp)


def test_valid_image_args_still_build():
    exp = validate(with_data_args(FAKE, resize=8, normalize=[[0.5] * 3, [0.25] * 3]))
    x, _ = next(iter(build(exp).train_data))
    assert x.shape == (4, 3, 8, 8)


# --- 5. a model with nothing to train ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("frozen", "no parameter requires a gradient: the whole model is frozen"),
        ("no_parameters", "has no parameters"),
    ],
)
def test_a_model_with_nothing_to_train_is_refused_at_build(model, message):
    with pytest.raises(ComponentError, match=message):
        build(validate(experiment(model={"name": f"{HERE}:{model}"})))


def test_check_of_a_frozen_model_exits_2(write_yaml):
    path = write_yaml(
        f'device: cpu\nmodel: {{name: "{HERE}:frozen"}}\n'
        "data: {name: sklearn.iris, batch_size: 16}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert "the whole model is frozen" in result.output


# --- 6. an empty split -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "which"), [("empty_val", "validation"), ("empty_train_pair", "training")]
)
def test_an_empty_split_is_refused(source, which):
    exp = validate(experiment(data={"name": f"{HERE}:{source}", "batch_size": 8}))
    with pytest.raises(ComponentError, match=rf"the {which} set is empty"):
        build(exp)


# --- 7. model.groups ---------------------------------------------------------------------


def test_a_repeated_group_prefix_is_named_as_repeated():
    with pytest.raises(ConfigError, match=r"model.groups: expected each prefix once.*'a'"):
        validate(experiment(model={"name": f"{HERE}:Three", "groups": ["a", "a"]}))
    with pytest.raises(ComponentError, match=r"'a' appears more than once"):
        parameter_groups(Three(), ["a", "a"])


def test_an_empty_group_list_is_refused():
    with pytest.raises(ConfigError, match=r"model.groups: expected at least one"):
        validate(experiment(model={"name": f"{HERE}:Three", "groups": []}))


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        (["nothere", "c"], "prefix 'nothere' matches no parameter"),
        (["a", "a.weight", "a.bias"], "goes to a longer prefix"),
    ],
)
def test_every_group_prefix_must_match_a_parameter_of_its_own(prefixes, message):
    with pytest.raises(ComponentError, match=message):
        parameter_groups(Three(), prefixes)


# --- 8. empty paths -------------------------------------------------------------------------


def test_empty_weights_path_is_refused():
    with pytest.raises(ConfigError, match=r"• model.weights: expected the path"):
        validate(experiment(model={**IRIS["model"], "weights": ""}))


# --- 9. messages that blamed the wrong thing ---------------------------------------------


def test_a_long_name_is_refused_at_load_naming_name():
    validate(experiment(name="x" * 100))
    with pytest.raises(ConfigError, match=r"• name: expected at most 100 characters"):
        validate(experiment(name="x" * 300))
    with pytest.raises(ConfigError, match=r"• name: expected at most"):
        validate(experiment(name="é" * 101))


def test_an_experiment_can_be_read_from_a_pipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    read, write = os.pipe()
    os.write(write, b"device: cpu\ndata: {name: sklearn.iris}\nname: piped\n")
    os.close(write)
    try:
        exp = load_experiment(f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert exp.name == "piped" and exp.data.name == "sklearn.iris"


def test_continuous_multi_column_targets_are_not_called_classes():
    exp = validate(
        experiment(
            data={"name": "sklearn.linnerud"},
            model={"name": "mlp", "args": {"in_features": 3, "num_classes": 3}},
        )
    )
    with pytest.raises(ComponentError) as info:
        build(exp)
    assert "continuous targets" in str(info.value) and "mse" in str(info.value)
    assert "classes" not in str(info.value)


def test_multi_label_targets_with_cross_entropy_point_to_bce():
    exp = validate(
        experiment(
            data={
                "name": "sklearn.make_multilabel_classification",
                "args": {"n_samples": 20, "n_features": 4, "n_classes": 5},
            },
        )
    )
    with pytest.raises(ComponentError, match=r"5 columns per sample.*bce_with_logits"):
        build(exp)
