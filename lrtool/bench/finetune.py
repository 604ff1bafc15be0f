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

Each recipe runs twice: with most of the target's images labelled for training (val_fraction
0.2: 571 of digits 6-9's 714 images) and with a fifth of them (val_fraction 0.8: 143 images,
the situation fine-tuning is for). Validation accuracy (%) after the last epoch, mean and
spread over seeds.
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
# Share of the target's images held out for validation: plenty labelled, then scarce.
VAL_FRACTIONS = {"plenty": 0.2, "scarce": 0.8}


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


def target(seed: int, weights: str | None, val_fraction: float = 0.2, **train: Any) -> Any:
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
                "val_fraction": val_fraction,
            },
            "optimizer": {"name": "adamw", "args": {"weight_decay": 0.01}},
            "train": {"epochs": EPOCHS, **train},
        },
        seed,
    )


def _accuracy(run: Any) -> float:
    value = run.train.final.get("accuracy")
    return 100 * value if value is not None else 0.0


def recipes(seed: int, weights: str, val_fraction: float) -> dict[str, float]:
    """The four recipes on the target, at equal total epochs."""
    scores = {"scratch": _accuracy(run_train(target(seed, None, val_fraction), "auto"))}
    scores["one-cycle"] = _accuracy(run_train(target(seed, weights, val_fraction), "auto"))
    rate = run_find(target(seed, weights, val_fraction)).suggested_lr
    fastai = target(seed, weights, val_fraction, freeze_epochs=1)
    scores["fastai"] = _accuracy(run_train(fastai, f"{rate / 100:g}:{rate:g}"))
    cycles = target(seed, weights, val_fraction, freeze_epochs=1, cycles=2)
    scores["cycles"] = _accuracy(run_train(cycles, "auto"))
    return scores


def one_seed(seed: int, work: Path) -> dict[str, dict[str, float]]:
    """{recipe: {regime: accuracy}} for one seed; the source model's own score as a row."""
    pretrained = run_train(source(seed), "auto", folder=work / f"source-{seed}")
    weights = str(work / f"source-{seed}" / "model.pt")
    source_score = _accuracy(pretrained)
    rows: dict[str, dict[str, float]] = {
        "source (digits 0-5, 6 classes)": dict.fromkeys(VAL_FRACTIONS, source_score)
    }
    for regime, fraction in VAL_FRACTIONS.items():
        for recipe, score in recipes(seed, weights, fraction).items():
            rows.setdefault(recipe, {})[regime] = score
    return rows


def main(seeds: list[int]) -> str:
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="lrtool-finetune-") as work:
        for seed in seeds:
            per_seed.append(one_seed(seed, Path(work)))
    header = " | ".join(
        f"{regime} ({round(100 * (1 - f))} % labelled) mean | min | max"
        for regime, f in VAL_FRACTIONS.items()
    )
    lines = [
        f"Fine-tuning digits 6-9 (16x16) from a resnet pretrained on digits 0-5; "
        f"{EPOCHS} epochs in all; validation accuracy %, seeds {', '.join(map(str, seeds))}.",
        "",
        f"| recipe | {header} |",
        "|---|" + "---|" * 3 * len(VAL_FRACTIONS),
    ]
    for name in per_seed[0]:
        cells = []
        for regime in VAL_FRACTIONS:
            values = [s[name][regime] for s in per_seed]
            cells += [f"{statistics.fmean(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
