"""Synthetic datasets for the benchmark's tasks, built offline in well under a second.

Each is a dataset callable an experiment names by import path (`data: {name:
"lrtool.bench.datasets:tokens", args: {...}}`): it returns one TensorDataset that lrtool splits
by the experiment's seed. The samples themselves depend only on `random_state`, so every seed
of a task sees the same data, split and shuffled differently. Targets are int64 class indices
for cross-entropy and float32 (N, 1) for MSE and BCE, as lrtool's losses expect them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset


def _standardize(values: np.ndarray) -> np.ndarray:
    # Statistics over the whole set rather than the training split: what matters to the
    # learning rate is the scale of the inputs and targets, and the few percent of samples
    # that leak into the mean change neither.
    std = values.std(axis=0, keepdims=True)
    return (values - values.mean(axis=0, keepdims=True)) / np.where(std == 0, 1.0, std)


def _column(y: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)


def sklearn_standardized(name: str, **args: Any) -> TensorDataset:
    """A `sklearn.datasets.make_*` regression with standardised features *and* targets, which
    `sklearn.<make_*>` data does not offer (it standardises the features only)."""
    from sklearn import datasets

    x, y = getattr(datasets, name)(**args)
    return TensorDataset(
        torch.as_tensor(_standardize(x), dtype=torch.float32), _column(_standardize(y))
    )


def digits_images(size: int = 16, classes: list[int] | None = None) -> TensorDataset:
    """sklearn's 8x8 digits upsampled (bilinear) to size x size, one channel, standardised.

    `classes` keeps only those digits, relabelled 0, 1, ... in the order given (the
    fine-tuning benchmark pretrains on some digits and fine-tunes on the others)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    if classes is not None:
        label = {digit: i for i, digit in enumerate(classes)}
        keep = np.isin(y, classes)
        x, y = x[keep], np.array([label[digit] for digit in y[keep]])
    images = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    images = torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False
    )
    images = (images - images.mean()) / images.std()
    return TensorDataset(images, torch.as_tensor(y, dtype=torch.int64))


def shapes(
    n_samples: int = 2000, size: int = 16, noise: float = 0.5, random_state: int = 0
) -> TensorDataset:
    """One-channel images of one of five shapes at a random place and scale, in Gaussian noise.

    Classes: 0 horizontal bar, 1 vertical bar, 2 square outline, 3 plus, 4 diagonal.
    """
    rng = np.random.default_rng(random_state)
    images = rng.normal(0.0, noise, size=(n_samples, size, size)).astype(np.float32)
    labels = rng.integers(0, 5, size=n_samples)
    for image, label in zip(images, labels, strict=True):
        extent = int(rng.integers(size // 4, size // 2 + 1))
        top, left = rng.integers(0, size - extent, size=2)
        row, col = top + extent // 2, left + extent // 2
        if label == 0:
            image[row, left : left + extent] += 1.0
        elif label == 1:
            image[top : top + extent, col] += 1.0
        elif label == 2:
            image[top, left : left + extent] += 1.0
            image[top + extent - 1, left : left + extent] += 1.0
            image[top : top + extent, left] += 1.0
            image[top : top + extent, left + extent - 1] += 1.0
        elif label == 3:
            image[row, left : left + extent] += 1.0
            image[top : top + extent, col] += 1.0
        else:
            steps = np.arange(extent)
            image[top + steps, left + steps] += 1.0
    return TensorDataset(
        torch.as_tensor(images).unsqueeze(1), torch.as_tensor(labels, dtype=torch.int64)
    )


def motifs(
    n_samples: int = 2000,
    length: int = 64,
    num_classes: int = 4,
    motif_length: int = 8,
    noise: float = 1.0,
    random_state: int = 0,
) -> TensorDataset:
    """One-channel sequences (N, 1, length): Gaussian noise with one of `num_classes` fixed
    random motifs added at a random position; the class is which motif."""
    rng = np.random.default_rng(random_state)
    patterns = rng.normal(0.0, 1.0, size=(num_classes, motif_length))
    x = rng.normal(0.0, noise, size=(n_samples, length))
    labels = rng.integers(0, num_classes, size=n_samples)
    starts = rng.integers(0, length - motif_length + 1, size=n_samples)
    for i, (label, start) in enumerate(zip(labels, starts, strict=True)):
        x[i, start : start + motif_length] += patterns[label]
    return TensorDataset(
        torch.as_tensor(x, dtype=torch.float32).unsqueeze(1),
        torch.as_tensor(labels, dtype=torch.int64),
    )


def waves(
    n_samples: int = 2000, length: int = 64, noise: float = 0.5, random_state: int = 0
) -> TensorDataset:
    """Regression on sequences: a sine of random frequency (1 to 8 cycles per sequence) and
    phase in Gaussian noise, (N, 1, length); the target is the frequency, standardised."""
    rng = np.random.default_rng(random_state)
    cycles = rng.uniform(1.0, 8.0, size=n_samples)
    phase = rng.uniform(0.0, 2 * np.pi, size=n_samples)
    t = np.arange(length) / length
    x = np.sin(2 * np.pi * cycles[:, None] * t[None, :] + phase[:, None])
    x += rng.normal(0.0, noise, size=x.shape)
    return TensorDataset(
        torch.as_tensor(x, dtype=torch.float32).unsqueeze(1), _column(_standardize(cycles))
    )


def tokens(
    n_samples: int = 2000,
    length: int = 16,
    vocab: int = 12,
    num_classes: int = 3,
    binary_targets: bool = False,
    random_state: int = 0,
) -> TensorDataset:
    """Token sequences (N, length) of ids in [0, vocab); the class is which of the tokens
    0 .. num_classes-1 occurs most often. Sequences with a tie are drawn again.

    `binary_targets` (two classes only) gives float (N, 1) targets for bce_with_logits.
    """
    if binary_targets and num_classes != 2:
        raise ValueError("binary_targets needs num_classes 2")
    rng = np.random.default_rng(random_state)
    kept: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    while sum(len(k) for k in kept) < n_samples:
        x = rng.integers(0, vocab, size=(2 * n_samples, length))
        counts = np.stack([(x == c).sum(axis=1) for c in range(num_classes)], axis=1)
        top = np.sort(counts, axis=1)
        clear = top[:, -1] > top[:, -2]
        kept.append(x[clear])
        labels.append(counts[clear].argmax(axis=1))
    x = np.concatenate(kept)[:n_samples]
    y = np.concatenate(labels)[:n_samples]
    targets = _column(y) if binary_targets else torch.as_tensor(y, dtype=torch.int64)
    return TensorDataset(torch.as_tensor(x, dtype=torch.int64), targets)


def ar_sequences(
    n_samples: int = 1500, length: int = 20, noise: float = 0.3, random_state: int = 0
) -> TensorDataset:
    """Regression on noisy AR(1) sequences (N, length, 1): x_t = phi x_(t-1) + innovation,
    phi uniform in [-0.9, 0.9], plus observation noise; the target is phi, standardised."""
    rng = np.random.default_rng(random_state)
    phi = rng.uniform(-0.9, 0.9, n_samples)
    x = np.zeros((n_samples, length))
    x[:, 0] = rng.normal(size=n_samples)
    for t in range(1, length):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=n_samples) * np.sqrt(1 - phi**2)
    x += rng.normal(0.0, noise, x.shape)
    return TensorDataset(
        torch.as_tensor(x, dtype=torch.float32).unsqueeze(-1), _column(_standardize(phi))
    )


def token_counts(
    n_samples: int = 1500, length: int = 24, vocab: int = 8, random_state: int = 0
) -> TensorDataset:
    """Token sequences (N, length); the target is (count of token 0 - count of token 1),
    standardised: a regression that needs attention to every position."""
    rng = np.random.default_rng(random_state)
    x = rng.integers(0, vocab, (n_samples, length))
    y = ((x == 0).sum(axis=1) - (x == 1).sum(axis=1)).astype(float)
    return TensorDataset(torch.as_tensor(x, dtype=torch.int64), _column(_standardize(y)))


def hastie(n_samples: int = 6000, random_state: int = 0) -> TensorDataset:
    """sklearn's make_hastie_10_2 (is the sum of squares of 10 Gaussians above the chi-square
    median?) with 0/1 float targets (N, 1), for one logit and bce_with_logits."""
    from sklearn.datasets import make_hastie_10_2

    x, y = make_hastie_10_2(n_samples=n_samples, random_state=random_state)
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32), _column(y > 0))
