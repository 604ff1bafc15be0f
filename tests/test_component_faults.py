"""Custom components that cannot train, found before any step (the sixth adversarial pass):
said in lrtool's words with exit 2 by every command, never blamed on the rate or the step
count, never an internal error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lrtool.cli import app
from lrtool.errors import ConfigError
from lrtool.workflows import load_experiment, run_smoke, run_train

runner = CliRunner()

COMPONENTS = """
import torch
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset
from sklearn.datasets import load_iris


def _iris():
    d = load_iris()
    x = torch.tensor(d.data, dtype=torch.float32)
    return (x - x.mean(0)) / x.std(0), torch.tensor(d.target)


def iris():
    return TensorDataset(*_iris())


def iris_double():
    x, y = _iris()
    return TensorDataset(x.double(), y)


class Stream(IterableDataset):
    def __iter__(self):
        yield from zip(*_iris())


def stream():
    return Stream()


def stream_pair():
    return Stream(), Stream()


def loss_nan(out, y):
    return out.sum() * float("nan")


def loss_detached(out, y):
    return nn.functional.cross_entropy(out, y).detach()


def two_groups():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


class MergesGroups(torch.optim.SGD):
    def __init__(self, params, lr=0.01):
        flat = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        super().__init__(flat, lr=lr)
"""

EXPERIMENT = """\
device: cpu
model: {name: "comps:two_groups"}
data: {name: "comps:iris", batch_size: 16}
optimizer: {name: sgd, args: {momentum: 0.9}}
loss: {name: cross_entropy}
find: {num_steps: 20}
train: {epochs: 1}
"""


@pytest.fixture
def exp_file(tmp_path, monkeypatch, write_yaml):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "comps.py").write_text(COMPONENTS)
    return write_yaml(EXPERIMENT)


COMMANDS = [
    ["check"],
    ["find", "--no-plot"],
    ["train", "--lr-max", "0.1", "--no-plot"],
    ["verify", "--no-plot"],
]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("loss.name=comps:loss_nan", "the loss of the first batch is nan"),
        ("loss.name=comps:loss_detached", "the loss has no gradient"),
        ("data.name=comps:stream", "needs a map-style Dataset"),
        ("data.name=comps:stream_pair", "needs a map-style Dataset"),
        ("optimizer.name=comps:MergesGroups", "was given 2 parameter group(s) (0, 2) and kept 1"),
        ("data.name=comps:iris_double", "are torch.float64 and the model's weights torch.float32"),
    ],
)
def test_every_command_refuses_what_cannot_train_before_any_step(
    exp_file, tmp_path, setting, message
):
    if setting.startswith("optimizer"):
        setting = [setting, "--set", "optimizer.args={}"]
    else:
        setting = [setting]
    for command in COMMANDS:
        out = tmp_path / f"out-{command[0]}"
        args = [*command, str(exp_file), "--set", *setting]
        if command[0] != "check":
            args += ["--out", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (command, result.output)
        assert message in " ".join(result.output.split()), (command, result.output)
        assert "Traceback" not in result.output and "please report" not in result.output
        assert not (out / "find.json").exists()  # nothing ran, nothing claims to have


def test_smoke_keeps_its_documented_exit_1_for_a_loss_that_cannot_train(exp_file):
    result = runner.invoke(
        app, ["find", str(exp_file), "--smoke", "--set", "loss.name=comps:loss_detached"]
    )
    assert result.exit_code == 1, result.output
    assert "lrtool smoke: FAILED (find: the loss has no gradient" in result.output


def test_a_first_loss_that_is_finite_and_trainable_still_runs(exp_file):
    run = run_train(load_experiment(exp_file), lr_max=0.1)
    assert run.train.stop_reason == "completed"


def test_smoke_verify_records_where_its_candidates_came_from(exp_file, tmp_path):
    run = run_smoke("verify", load_experiment(exp_file))
    saved = json.loads((run.save(tmp_path / "v") / "verify.json").read_text())
    assert saved["centre"] in ("suggestion", "loss_minimum", "sweep_end", "sweep_middle")
    assert saved["centre_lr"] is not None and saved["config"]["model"]["name"] == (
        "comps:two_groups"
    )
    if saved["centre"] == "suggestion":
        assert saved["suggested_lr"] == saved["centre_lr"]
    given = run_smoke("verify", load_experiment(exp_file), lrs=[0.01, 0.1]).result
    assert (given.centre, given.centre_lr, given.suggested_lr) == ("lrs", None, None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lrs": [0.1]}, "at least two"),
        ({"lrs": ["abc", 0.1]}, "'abc'"),
        ({"lrs": 0.1}, "at least two rates"),
        ({"timeout": "5"}, "number of seconds"),
        ({"timeout": float("nan")}, "number of seconds"),
        ({"timeout": 0}, "number of seconds"),
    ],
)
def test_run_smoke_checks_its_arguments_as_the_flags_are(exp_file, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run_smoke("verify", load_experiment(exp_file), **kwargs)


def test_api_messages_name_the_python_argument_not_a_flag(exp_file):
    with pytest.raises(ConfigError) as err:
        load_experiment(exp_file, {"train.epoch": 2})
    assert "overrides['train.epoch']" in str(err.value) and "--epoch" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        run_train(load_experiment(exp_file), lr_max=-1)
    assert "--lr-max" not in str(err.value) and "lr_max=-1" in str(err.value)
