"""Failures in the user's words: shape mismatches said in experiment keys, the user's own code
shown by its frames (not typer's, torch's or lrtool's), the right exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path
from traceback import FrameSummary

import pytest
import torch
from typer.testing import CliRunner

from lrtool.build import build
from lrtool.cli import app
from lrtool.config import validate
from lrtool.errors import (
    PACKAGE_DIR,
    UserCodeError,
    failed_component,
    is_user_file,
    user_frames,
    while_building,
    worker_traceback,
)
from lrtool.probe import class_mismatch, input_mismatch, probe

runner = CliRunner()

SITE = "/usr/lib/python3/site-packages"
STDLIB = "/usr/lib/python3.11"
LRTOOL = PACKAGE_DIR


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def frame(filename: str, name: str, line: str = "", lineno: int = 1) -> FrameSummary:
    return FrameSummary(filename, lineno, name, line=line)


# --- pure: whose frames, which component, which phase --------------------------------------


def test_user_frames_keep_only_the_users_files() -> None:
    frames = [
        frame(f"{SITE}/typer/main.py", "__call__"),
        frame(f"{LRTOOL}/cli.py", "find"),
        frame(f"{LRTOOL}/runtime.py", "forward_backward", "loss = loss_fn(model(x), y)"),
        frame(f"{SITE}/torch/nn/modules/module.py", "_call_impl"),
        frame("<frozen importlib._bootstrap>", "_call_with_frames_removed"),
        frame(f"{STDLIB}/functools.py", "wrapper"),
        frame("/home/me/project/mymodels.py", "forward", "raise ValueError('boom')", 12),
        frame("/usr/local/lib/python3.11/dist-packages/numpy/core.py", "f"),
    ]
    kept = user_frames(frames, LRTOOL, (STDLIB,))
    assert [(f.filename, f.lineno) for f in kept] == [("/home/me/project/mymodels.py", 12)]
    assert not is_user_file("<string>", LRTOOL, (STDLIB,))


@pytest.mark.parametrize(
    ("frames", "component", "building"),
    [
        # lrtool's builder decides: build_model -> model, while building
        (
            [
                frame(f"{LRTOOL}/build.py", "build"),
                frame(f"{LRTOOL}/models.py", "build_model"),
                frame(f"{LRTOOL}/registry.py", "call_with_args"),
                frame("/home/me/m.py", "make"),
            ],
            "model",
            True,
        ),
        (
            [
                frame(f"{LRTOOL}/build.py", "build"),
                frame(f"{LRTOOL}/data.py", "load_splits"),
                frame(f"{LRTOOL}/data.py", "_callable"),
                frame("/home/me/d.py", "load"),
            ],
            "data",
            True,
        ),
        # the probe names its steps
        ([frame(f"{LRTOOL}/probe.py", "probe_loss"), frame("/home/me/l.py", "f")], "loss", False),
        # the loop calls model and loss on one line: the user's frame decides
        (
            [
                frame(f"{LRTOOL}/runtime.py", "forward_backward", "loss = loss_fn(model(x), y)"),
                frame(f"{SITE}/torch/nn/modules/module.py", "_call_impl"),
                frame("/home/me/m.py", "forward"),
            ],
            "model",
            False,
        ),
        (
            [
                frame(f"{LRTOOL}/runtime.py", "forward_backward", "loss = loss_fn(model(x), y)"),
                frame("/home/me/l.py", "my_loss"),
            ],
            "loss",
            False,
        ),
        (
            [frame(f"{SITE}/torch/utils/data/dataloader.py", "x"), frame("/d.py", "__getitem__")],
            "data",
            False,
        ),
    ],
)
def test_failed_component_and_phase(frames, component: str, building: bool) -> None:
    assert failed_component(frames, LRTOOL) == component
    assert while_building(frames, LRTOOL) is building


def test_the_paragraph_names_component_place_and_exit_code() -> None:
    frames = [
        frame(f"{LRTOOL}/build.py", "build"),
        frame(f"{LRTOOL}/models.py", "build_model"),
        frame("/home/me/m.py", "make", "return Net(width)", 20),
        frame("/home/me/m.py", "__init__", "raise ValueError('boom')", 7),
    ]
    err = UserCodeError.from_frames(frames, "ValueError", "boom", package_dir=LRTOOL)
    assert err.exit_code == 2  # it failed to build: bad input
    assert str(err).startswith("the model (model.name) could not be built: your code raised")
    assert "ValueError: boom (at /home/me/m.py:7, in __init__)" in str(err)
    assert err.details.splitlines()[:4] == [
        "  /home/me/m.py:20 in make",
        "    return Net(width)",
        "  /home/me/m.py:7 in __init__",
        "    raise ValueError('boom')",
    ]
    assert err.headline == "model raised ValueError: boom (m.py:7)"
    run = UserCodeError.from_frames(frames[2:], "ValueError", "boom", package_dir=LRTOOL)
    assert run.exit_code == 1  # no builder on the way: it failed while running


# --- the user's own code, end to end -------------------------------------------------------

USER_CODE = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        hidden = self.fc(x)
        raise ValueError("boom")


def make_model():
    return Net()


def broken_data():
    rows = []
    raise RuntimeError("cannot open the table")


def broken_loss(output, target):
    return nn.functional.cross_entropy(output, target) / missing_scale
"""
FORWARD_LINE = 12
DATA_LINE = 21
LOSS_LINE = 25


@pytest.fixture
def user_code(tmp_path, monkeypatch, write_yaml):
    monkeypatch.chdir(tmp_path)
    module = f"usercode_{os.getpid()}_{tmp_path.name}"[:60].replace("-", "_")
    path = tmp_path / f"{module}.py"
    path.write_text(USER_CODE)
    sections = {
        "device": "cpu",
        "model": "{{name: mlp, args: {{in_features: 4, hidden: [8], num_classes: 3}}}}",
        "data": "{{name: sklearn.iris, batch_size: 16}}",
        "find": "{{start_lr: 1e-4, end_lr: 1, num_steps: 5}}",
        "train": "{{epochs: 1}}",
    }

    def experiment(**spec: str) -> Path:
        lines = [f"{key}: {value}".format(m=module) for key, value in {**sections, **spec}.items()]
        return write_yaml("\n".join(lines) + "\n")

    return path, experiment


def assert_only_user_frames(output: str, path: Path, line: int, source: str) -> None:
    assert f"{path}:{line}" in output
    assert source in output
    assert "Traceback" not in output
    assert "site-packages" not in output and f"{os.sep}lrtool{os.sep}" not in output


@pytest.mark.parametrize("command", [["find"], ["train", "--lr-max", "0.1"], ["check"]])
def test_a_model_that_raises_in_forward_exits_1_with_its_frames(user_code, command) -> None:
    path, experiment = user_code
    exp = experiment(model='{{name: "{m}:make_model"}}')
    result = invoke(*command, exp, *(["--no-plot"] if command[0] != "check" else []))
    assert result.exit_code == 1, result.output
    assert "the model (model.name) failed during the run" in result.output
    assert "ValueError: boom" in result.output
    assert_only_user_frames(result.output, path, FORWARD_LINE, 'raise ValueError("boom")')


def test_a_dataset_that_raises_while_building_exits_2(user_code) -> None:
    path, experiment = user_code
    result = invoke("find", experiment(data='{{name: "{m}:broken_data"}}'), "--no-plot")
    assert result.exit_code == 2, result.output
    assert "the data (data.name) could not be built" in result.output
    assert "RuntimeError: cannot open the table" in result.output
    assert_only_user_frames(
        result.output, path, DATA_LINE, 'raise RuntimeError("cannot open the table")'
    )


def test_a_loss_that_raises_exits_1_and_names_the_loss(user_code) -> None:
    path, experiment = user_code
    result = invoke("find", experiment(loss='{{name: "{m}:broken_loss"}}'), "--no-plot")
    assert result.exit_code == 1, result.output
    assert "the loss (loss.name) failed during the run" in result.output
    assert "NameError" in result.output and "missing_scale" in result.output
    assert_only_user_frames(result.output, path, LOSS_LINE, "/ missing_scale")


def test_smoke_keeps_its_line_when_user_code_raises(user_code) -> None:
    path, experiment = user_code
    result = invoke("find", experiment(model='{{name: "{m}:make_model"}}'), "--smoke")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("lrtool smoke:")]
    assert lines == [f"lrtool smoke: FAILED (find: model raised ValueError: boom ({path.name}:12))"]
    assert_only_user_frames(result.output, path, FORWARD_LINE, 'raise ValueError("boom")')


def test_debug_shows_the_full_traceback(user_code) -> None:
    path, experiment = user_code
    exp = experiment(model='{{name: "{m}:make_model"}}')
    env = {**os.environ, "PYTHONPATH": str(Path(PACKAGE_DIR).parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "lrtool", "find", str(exp), "--no-plot", "--debug"],
        capture_output=True,
        text=True,
        cwd=path.parent,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    # Everything: lrtool's frames and torch's as well as the user's.
    assert f"{os.sep}lrtool{os.sep}" in proc.stderr and f"{os.sep}torch{os.sep}" in proc.stderr
    assert f'File "{path}", line {FORWARD_LINE}, in forward' in proc.stderr
    assert "the model (model.name) failed" not in proc.stderr


# --- shape mismatches in experiment keys ---------------------------------------------------

DIGITS = """\
device: cpu
model: {{name: mlp, args: {{in_features: {features}, hidden: [8], num_classes: {classes}}}}}
data: {{name: sklearn.digits, batch_size: 16}}
find: {{num_steps: 5}}
train: {{epochs: 1}}
"""

COMMANDS = [
    ["find", "--no-plot"],
    ["train", "--lr-max", "0.1", "--no-plot"],
    ["verify", "--lrs", "0.01,0.1", "--no-plot"],
    ["check"],
    ["find", "--smoke"],
    ["train", "--lr-max", "0.1", "--smoke"],
    ["verify", "--smoke"],
]


def run_digits(write_yaml, tmp_path, command: list[str], **sizes: int):
    path = write_yaml(DIGITS.format(**{"features": 64, "classes": 10, **sizes}))
    out = ["--out", tmp_path / "out"] if command[0] != "check" else []
    return invoke(command[0], path, *command[1:], *out)


def assert_said_in_keys(result, command: list[str], fix: str) -> None:
    assert result.exit_code == 2, result.output
    assert fix in result.output
    assert "Traceback" not in result.output and "IndexError" not in result.output
    assert "mat1 and mat2" not in result.output
    if "--smoke" in command:
        lines = [line for line in result.output.splitlines() if line.startswith("lrtool smoke:")]
        assert len(lines) == 1 and lines[0].startswith(f"lrtool smoke: FAILED ({command[0]}: ")
        assert fix in lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_too_few_classes_is_said_in_keys(write_yaml, tmp_path, command) -> None:
    result = run_digits(write_yaml, tmp_path, command, classes=5)
    # build() may catch it from model.args before the probe does: either way, in keys.
    assert_said_in_keys(result, command, "model.args.num_classes: 10")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_wrong_in_features_is_said_in_keys(write_yaml, tmp_path, command) -> None:
    result = run_digits(write_yaml, tmp_path, command, features=32)
    assert_said_in_keys(result, command, "set model.args.in_features: 64")
    assert "the model expects 32 input features but the data has 64 (batches of shape (" in (
        result.output
    )


def test_a_user_model_with_too_few_outputs_is_caught_by_the_probe(
    write_yaml, tmp_path, monkeypatch
) -> None:
    """No num_classes argument to read: the probe sees the real output instead."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "five_outputs.py").write_text(
        "from torch import nn\n\n\ndef make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))\n"
    )
    path = write_yaml(
        "device: cpu\nmodel: {name: 'five_outputs:make'}\n"
        "data: {name: sklearn.digits, batch_size: 16}\nfind: {num_steps: 5}\n"
    )
    result = invoke("find", path, "--no-plot", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert (
        "the model outputs 5 classes, but the data has 10 classes (labels 0 to 9)" in result.output
    )
    assert "Traceback" not in result.output


def test_class_mismatch_messages() -> None:
    assert class_mismatch("cross_entropy", (16, 5), 9, "mlp", {"num_classes": 5}) == (
        "model.args.num_classes is 5, but the data has 10 classes "
        "(labels 0 to 9); the loss would fail at the first batch with a label of 5 or more. "
        "Set model.args.num_classes: 10."
    )
    assert class_mismatch("cross_entropy", (16, 10), 9, "mlp", {}) is None  # it fits
    assert class_mismatch("mse", (16, 1), 9, "mlp", {}) is None  # not class indices
    linear = class_mismatch("nll", (8, 2), 3, "linear", {})
    assert linear.startswith("model.args.out_features is 2 (its default), but")
    assert linear.endswith("Set model.args.out_features: 4.")
    unknown = class_mismatch("cross_entropy", (8, 2, 7, 7), 3, "pkg:make", {})
    assert unknown.startswith("the model outputs 2 classes, but the data has 4 classes")
    assert unknown.endswith("Make the model output 4 classes (its last layer).")


def test_input_mismatch_messages() -> None:
    text = "mat1 and mat2 shapes cannot be multiplied (16x64 and 32x8)"
    assert input_mismatch(text, (16, 64), "mlp", {"in_features": 32}) == (
        "the model expects 32 input features but the data has 64 (batches of shape (16, 64)): "
        "set model.args.in_features: 64."
    )
    # Images flattened by the model: 1x8x8 = 64 features.
    assert "has 64" in input_mismatch(text, (16, 1, 8, 8), "mlp", {"in_features": 32})
    # A mismatch between two inner layers is not about the data.
    inner = "mat1 and mat2 shapes cannot be multiplied (16x128 and 100x10)"
    assert input_mismatch(inner, (16, 64), "mlp", {}) is None
    conv = (
        "Given groups=1, weight of size [32, 1, 3, 3], expected input[16, 3, 32, 32] to have "
        "1 channels, but got 3 channels instead"
    )
    assert input_mismatch(conv, (16, 3, 32, 32), "cnn", {}) == (
        "the model expects 1 input channels but the images have 3 (batches of shape "
        "(16, 3, 32, 32)): set model.args.in_channels: 3."
    )


def test_the_probe_leaves_no_trace() -> None:
    exp = validate(
        {
            "device": "cpu",
            "model": {
                "name": "mlp",
                "args": {
                    "in_features": 4,
                    "hidden": [8],
                    "num_classes": 3,
                    "dropout": 0.5,
                    "batch_norm": True,
                },
            },
            "data": {"name": "sklearn.iris", "batch_size": 16},
        }
    )
    built = build(exp)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    rng = torch.get_rng_state()
    loss = probe(built, backward=True)
    assert loss > 0
    after = built.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm stats too
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew nothing for good
    assert all(p.grad is None for p in built.model.parameters())


def test_frames_come_from_a_real_traceback(tmp_path, monkeypatch) -> None:
    """user_frames over traceback.extract_tb of a real exception: a dataset module written
    into tmp_path, read through torch's DataLoader."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "raiser_mod.py").write_text(
        "class Rows:\n"
        "    def __len__(self):\n"
        "        return 3\n"
        "\n"
        "    def __getitem__(self, i):\n"
        "        raise KeyError(i)\n"
    )
    import raiser_mod

    with pytest.raises(KeyError) as caught:
        next(iter(torch.utils.data.DataLoader(raiser_mod.Rows())))
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert any("torch" in f.filename for f in frames)  # torch's frames were there
    kept = user_frames(frames)
    # This test file is the user's too: it lies outside lrtool, site-packages and the stdlib.
    assert [(Path(f.filename).name, f.name) for f in kept] == [
        (Path(__file__).name, "test_frames_come_from_a_real_traceback"),
        ("raiser_mod.py", "__getitem__"),
    ]
    assert kept[-1].lineno == 6 and kept[-1].line == "raise KeyError(i)"
    assert failed_component(frames) == "data"


WORKER_DATASET = """\
import torch


class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        if i == 5:
            raise ValueError(f"row {i} is broken")
        return torch.randn(4), i % 3


def make():
    return Rows()
"""


def test_a_dataloader_worker_error_shows_the_users_frames_not_torchs_text(
    tmp_path, monkeypatch, write_yaml
) -> None:
    """torch re-raises a worker's exception with the worker's traceback as text in the
    message: that text is read for the user's frames, and no traceback is printed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worker_rows.py").write_text(WORKER_DATASET)
    path = write_yaml(
        "device: cpu\nmodel: {name: mlp, args: {in_features: 4, hidden: [8], num_classes: 3}}\n"
        "data: {name: 'worker_rows:make', batch_size: 16, num_workers: 1, in_memory: false}\n"
        "find: {num_steps: 5}\n"
    )
    result = invoke("find", path, "--no-plot", "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "raised ValueError: row 5 is broken (in DataLoader worker process 0)" in result.output
    assert_only_user_frames(
        result.output, tmp_path / "worker_rows.py", 10, 'raise ValueError(f"row {i} is broken")'
    )
    assert "Original Traceback" not in result.output


def test_worker_traceback_reads_frames_and_message() -> None:
    text = (
        "Caught KeyError in DataLoader worker process 3.\n"
        "Original Traceback (most recent call last):\n"
        '  File "/site/torch/utils/data/_utils/worker.py", line 375, in _worker_loop\n'
        "    data = fetcher.fetch(index)\n"
        "           ^^^^^^^^^^^^^^^^^^^^\n"
        '  File "/home/me/data.py", line 7, in __getitem__\n'
        "    return self.rows[i]\n"
        "           ~~~~~~~~~^^^\n"
        "KeyError: 'x'\n"
    )
    frames, message, worker = worker_traceback(text)
    assert [(f.filename, f.lineno, f.name, f.line) for f in frames] == [
        (
            "/site/torch/utils/data/_utils/worker.py",
            375,
            "_worker_loop",
            "data = fetcher.fetch(index)",
        ),
        ("/home/me/data.py", 7, "__getitem__", "return self.rows[i]"),
    ]
    assert (message, worker) == ("KeyError: 'x'", 3)
    assert worker_traceback("an ordinary message") is None
