"""Fine-tuning benchmark: `python -m lrtool.bench finetune`.

A small residual net (`lrtool.bench.models:resnet_fc`) is pretrained on six of scikit-learn's
digits (0-5, upsampled to 16x16), saved, then fine-tuned on the other four (6-9): lrtool
replaces the 6-class head with a fresh 4-class one. At equal total epochs the recipes
are:

- scratch: no pretrained weights, one cycle at the finder's rate (is pretraining worth it?);
- one-cycle: pretrained, one cycle over every layer at the finder's rate;
- fastai: pretrained, one frozen epoch (head only), then every layer at LOW:HIGH = rate/100:rate
  with the rate the finder suggests on the pretrained model (fastai's `fine_tune` habit);
- cycles: pretrained, frozen first cycle, then a re-find on the unfrozen model sets the second
  cycle's rates (`train.cycles: 2`, `train.freeze_epochs: 1`, `--lr-max auto`).

Validation accuracy (%) after the last epoch, mean and spread over seeds.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from ..config import validate
from ..workflows import run_find, run_train

_D = "lrtool.bench.datasets:"
_MODEL = "lrtool.bench.models:resnet_fc"
GROUPS = ["body.0", "body.1", "body.2", "fc"]
EPOCHS = 4


def _experiment(spec: dict[str, Any], seed: int) -> Any:
    return validate({"device": "cpu", "seed": seed, **spec})


def source(seed: int) -> Any:
    return _experiment(
        {
            "model": {"name": _MODEL, "args": {"in_channels": 1, "num_classes": 6, "width": 8}},
            "data": {
                "name": _D + "digits_images",
                "args": {"size": 16, "classes": [0, 1, 2, 3, 4, 5]},
                "batch_size": 32,
            },
            "optimizer": {"name": "adamw", "args": {"weight_decay": 0.01}},
            "train": {"epochs": 3},
        },
        seed,
    )


def target(seed: int, weights: str | None, **train: Any) -> Any:
    model: dict[str, Any] = {
        "name": _MODEL,
        "args": {"in_channels": 1, "num_classes": 4, "width": 8},
        "groups": GROUPS,
    }
    if weights:
        model["weights"] = weights
    return _experiment(
        {
            "model": model,
            "data": {
                "name": _D + "digits_images",
                "args": {"size": 16, "classes": [6, 7, 8, 9]},
                "batch_size": 32,
            },
            "optimizer": {"name": "adamw", "args": {"weight_decay": 0.01}},
            "train": {"epochs": EPOCHS, **train},
        },
        seed,
    )


def _accuracy(run: Any) -> float:
    value = run.train.final.get("accuracy")
    return 100 * value if value is not None else 0.0


def one_seed(seed: int, work: Path) -> dict[str, float]:
    pretrained = run_train(source(seed), "auto", folder=work / f"source-{seed}")
    weights = str(work / f"source-{seed}" / "model.pt")
    scores = {"source (digits 0-5, 6 classes)": _accuracy(pretrained)}
    scores["scratch"] = _accuracy(run_train(target(seed, None), "auto"))
    scores["one-cycle"] = _accuracy(run_train(target(seed, weights), "auto"))
    rate = run_find(target(seed, weights)).suggested_lr
    fastai = target(seed, weights, freeze_epochs=1)
    scores["fastai"] = _accuracy(run_train(fastai, f"{rate / 100:g}:{rate:g}"))
    cycles = target(seed, weights, freeze_epochs=1, cycles=2)
    scores["cycles"] = _accuracy(run_train(cycles, "auto"))
    return scores


def main(seeds: list[int]) -> str:
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="lrtool-finetune-") as work:
        for seed in seeds:
            per_seed.append(one_seed(seed, Path(work)))
    lines = [
        f"Fine-tuning digits 6-9 (16x16) from a resnet pretrained on digits 0-5; "
        f"{EPOCHS} epochs in all; validation accuracy %, seeds {', '.join(map(str, seeds))}.",
        "",
        "| recipe | mean | min | max |",
        "|---|---|---|---|",
    ]
    for name in per_seed[0]:
        values = [s[name] for s in per_seed]
        lines.append(
            f"| {name} | {statistics.fmean(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    return "\n".join(lines)
