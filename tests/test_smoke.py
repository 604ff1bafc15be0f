"""--smoke: small broken experiments must fail with their own message and exit code."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lrtool.cli import app

runner = CliRunner()

BROKEN = '''
import time
import torch
from torch import nn


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * float("nan")


class Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.fc.requires_grad_(False)

    def forward(self, x):
        return self.fc(x)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.spare = nn.Linear(4, 3)  # defined, never called

    def forward(self, x):
        return self.fc(x)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).detach()


class Constant(nn.Module):
    """Gets gradients (all zero), so nothing ever moves: a dead graph."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * 0.0


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        time.sleep(0.3)
        return self.fc(x)
'''


@pytest.fixture
def broken(tmp_path, monkeypatch, write_yaml):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_models.py").write_text(BROKEN)

    def experiment(model: str) -> str:
        return str(
            write_yaml(
                f"""
                device: cpu
                model: {{name: "broken_models:{model}"}}
                data: {{name: sklearn.iris, batch_size: 16}}
                optimizer: {{name: sgd, args: {{momentum: 0.9}}}}
                find: {{start_lr: 1e-4, end_lr: 1}}
                """
            )
        )

    return experiment


def smoke(*args: str):
    return runner.invoke(app, [*args, "--smoke"], catch_exceptions=False)


def test_a_frozen_model_is_refused_as_bad_input(broken):
    """Nothing to train is a property of the experiment, found when it is built: exit 2, the
    same message as every other command gives."""
    result = smoke("find", broken("Frozen"))
    assert result.exit_code == 2, result.output
    assert "the whole model is frozen" in result.output


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("NaNNet", "not finite"),
        ("Unused", "2 parameter(s) never received a gradient: spare.weight, spare.bias"),
        ("Detached", "the loss has no gradient"),
        ("Constant", "the loss did not change"),
    ],
)
def test_broken_experiments_fail_with_one_line(broken, model, message):
    result = smoke("find", broken(model))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("lrtool smoke:")]
    assert len(lines) == 1 and lines[0].startswith("lrtool smoke: FAILED (find: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_slow_model_hits_the_timeout(broken):
    result = runner.invoke(
        app,
        ["find", broken("Slow"), "--smoke", "--smoke-timeout", "0.5"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "took longer than --smoke-timeout 0.5 s" in result.output


def test_experiment_that_does_not_build_exits_2(write_yaml):
    result = smoke("find", str(write_yaml("model: {name: mlpp}\n")))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("lrtool smoke:")]
    assert len(lines) == 1 and lines[0].startswith("lrtool smoke: FAILED (find: ")
    assert "Unknown model 'mlpp'" in lines[0]


def test_good_experiment_passes_find_train_and_verify(tiny_yaml, tmp_path):
    result = smoke("find", str(tiny_yaml), "--out", str(tmp_path / "f"))
    assert result.exit_code == 0, result.output
    assert "lrtool smoke: ok (find, 10 steps, " in result.output
    assert (tmp_path / "f" / "find.json").exists()
    trained = smoke("train", str(tiny_yaml), "--lr-max", "0.1", "--out", str(tmp_path / "t"))
    assert trained.exit_code == 0, trained.output
    # One epoch over the 4 smoke batches.
    assert "lrtool smoke: ok (train, 4 steps, " in trained.output
    verified = smoke("verify", str(tiny_yaml), "--out", str(tmp_path / "v"))
    assert verified.exit_code == 0, verified.output
    assert "lrtool smoke: ok (verify, 2 candidates, 1 round, " in verified.output


def test_smoke_train_fails_on_nan(tiny_yaml):
    result = smoke("train", str(tiny_yaml), "--lr-max", "1e30")
    assert result.exit_code == 1
    assert "lrtool smoke: FAILED (train: " in result.output


def test_absent_torchvision_dataset_is_stood_in_by_fakedata(write_yaml, tmp_path):
    path = write_yaml(
        f"""
        device: cpu
        model: {{name: cnn, args: {{in_channels: 1, num_classes: 10, width: 4}}}}
        data: {{name: torchvision.MNIST, args: {{root: "{tmp_path}/nothing", download: true}},
                batch_size: 8}}
        """
    )
    result = smoke("find", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "MNIST absent: FakeData (1, 28, 28) x 10 classes stood in" in result.output
    assert not (tmp_path / "nothing").exists()  # nothing was downloaded


def test_smoke_train_passes_through_a_refind_between_cycles(tmp_path, tiny_yaml):
    """--cycles 2: the smoke run trains two one-epoch cycles (a re-find between them), the
    path the real run takes, instead of one plain epoch."""
    result = smoke("train", str(tiny_yaml), "--lr-max", "0.1", "--cycles", "2")
    assert result.exit_code == 0, result.output
    # Two cycles of one epoch over the 4 smoke batches.
    assert "lrtool smoke: ok (train, 8 steps, " in result.output


def test_a_timeout_swallowed_inside_the_run_still_fails_the_smoke_run():
    """The alarm's exception can land where Python ignores exceptions (a finalizer); the run
    then finishes, late: the deadline must still report it rather than let 'ok' through."""
    import time

    from lrtool.smoke import SmokeFailed, deadline

    with pytest.raises(SmokeFailed, match="longer than --smoke-timeout 0.05 s"):
        with deadline(0.05):
            try:
                time.sleep(0.5)
            except SmokeFailed:
                pass  # as Python does with an exception raised in __del__
    with deadline(5):  # in time: nothing raised
        pass


@pytest.mark.parametrize("dataset", ["MNIST", "CIFAR10"])
def test_a_present_but_broken_torchvision_dataset_fails_the_smoke_run(
    write_yaml, tmp_path, dataset
):
    """FakeData stands in for files that are absent, never for files that are there and
    broken: a truncated MNIST file or a damaged CIFAR batch passed CI as "absent"."""
    import struct

    import numpy as np

    root = tmp_path / "data"
    if dataset == "MNIST":
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 24), ("t10k", 8)):
            images = struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28)
            (raw / f"{prefix}-images-idx3-ubyte").write_bytes(images)
            labels = struct.pack(">II", 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes()
            (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
        whole = (raw / "train-images-idx3-ubyte").read_bytes()
        (raw / "train-images-idx3-ubyte").write_bytes(whole[:5000])  # truncated
        channels = 1
    else:
        (root / "cifar-10-batches-py").mkdir(parents=True)
        (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"damaged")
        channels = 3

    def experiment(where):
        return write_yaml(
            f"""
            device: cpu
            model: {{name: cnn, args: {{in_channels: {channels}, num_classes: 10, width: 4}}}}
            data: {{name: torchvision.{dataset}, args: {{root: "{where}", download: false}},
                    batch_size: 8}}
            """
        )

    result = smoke("find", str(experiment(root)))
    assert result.exit_code != 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("lrtool smoke: FAILED") and "stood in" not in last, last
    # The same root with nothing of this dataset in it is absent: FakeData stands in.
    empty = tmp_path / "empty"
    empty.mkdir()
    absent = smoke("find", str(experiment(empty)))
    assert absent.exit_code == 0 and f"{dataset} absent: FakeData" in absent.output


def test_a_smoke_train_records_its_cycle_as_a_real_run_does(tiny_yaml, tmp_path):
    """README: train.json's cycles holds one record for a plain run; a smoke train wrote []."""
    out = tmp_path / "s"
    result = smoke("train", str(tiny_yaml), "--lr-max", "0.1", "--out", str(out))
    assert result.exit_code == 0, result.output
    cycles = json.loads((out / "train.json").read_text())["cycles"]
    assert len(cycles) == 1 and cycles[0]["cycle"] == 1 and cycles[0]["lr_max"] == 0.1


def test_help_texts_give_examples_that_work_and_every_exit_3():
    from typer.testing import CliRunner

    from lrtool.cli import app

    runner = CliRunner()
    for command in ("plot", "compare"):
        text = " ".join(runner.invoke(app, [command, "--help"]).output.split())
        assert "train.epochs=3" not in text and "find.suggest=valley" in text, command
    top = " ".join(runner.invoke(app, ["--help"]).output.split())
    assert "--lr-max auto" in top and "verify" in top.split("3 no rate")[1][:80]


def test_imagenet_absent_from_an_existing_root_is_stood_in(write_yaml, tmp_path):
    """ImageNet says "is not present" for its absent archives: absent, not broken."""
    root = tmp_path / "empty"
    root.mkdir()
    path = write_yaml(
        f"""
        device: cpu
        model: {{name: cnn, args: {{in_channels: 3, num_classes: 10, width: 4}}}}
        data: {{name: torchvision.ImageNet, args: {{root: "{root}"}}, batch_size: 8}}
        """
    )
    result = smoke("find", str(path))
    assert result.exit_code == 0, result.output
    assert "ImageNet absent: FakeData" in result.output
