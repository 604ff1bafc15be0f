"""Shared fixtures: tiny experiment files written into tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # many tiny models: threads only add overhead on 2 cores

TINY = """\
name: tiny
seed: 0
device: cpu
model:
  name: mlp
  args: {in_features: 4, hidden: [8], num_classes: 3}
data:
  name: sklearn.iris
  batch_size: 16
optimizer:
  name: sgd
  args: {momentum: 0.9}
find:
  start_lr: 1e-4
  end_lr: 10
  num_steps: 30
train:
  epochs: 2
"""


@pytest.fixture
def write_yaml(tmp_path: Path):
    """Write a YAML text (dedented) into tmp_path and return its path."""

    def write(text: str = TINY, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_yaml(write_yaml) -> Path:
    return write_yaml(TINY)
