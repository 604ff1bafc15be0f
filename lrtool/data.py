"""Datasets and mini-batches.

Two paths give the same batches for the same seed:
- in memory: tabular sources, tensor datasets and torchvision datasets without random
  augmentation are materialised once as tensors on the device and batched by indexing with a
  seeded permutation (no per-sample Python, no workers);
- DataLoader: everything else, fed the very same index batches through a batch sampler.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import inspect
import io
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from .errors import ComponentError, ConfigError
from .registry import call_with_args, import_object, is_import_path, unknown_name

# Materialise automatically only below this size, so an in-memory copy never surprises anyone.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclass
class Splits:
    """What a data source yields: a training and a validation dataset, and what they are."""

    train: Dataset
    val: Dataset
    # "tensors": already tensors, always in memory; "fixed": the same sample every read, in
    # memory when small; "random": random augmentation or unknown code, always a DataLoader.
    kind: str
    note: str = ""
    # Class names in label order, when the source names them (CSV text labels, a
    # torchvision dataset's `classes`); saved with every result as data.classes.
    classes: list[str] | None = None


# --- batching -----------------------------------------------------------------------------


def batch_indices(
    n: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    drop_last: bool,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = True,
) -> list[torch.Tensor]:
    """Index batches for one epoch: a seeded permutation, sharded per rank, then chunked.

    Sharding is DistributedSampler's: pad to a multiple of the world size by wrapping around
    (so every rank takes the same number of steps), then rank r takes every world_size-th
    index starting at r. Validation shards are not padded, so no sample counts twice.
    """
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    if world_size > 1:
        total = -(-n // world_size) * world_size
        if pad and total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[rank::world_size]
    chunks = list(torch.split(order, batch_size))
    if drop_last and len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks.pop()
    return chunks


class Batches:
    """Mini-batches of one split, moved to the device, the same for the same seed and epoch.

    Iterating yields one epoch; `set_epoch` picks the next permutation (the finder and the
    trainer call it). `limit` keeps only the first batches (smoke runs).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        in_memory: bool = True,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset = dataset
        self.pad = shuffle  # training shards are padded to equal length, validation ones not
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.max_batches: int | None = None
        self.in_memory = in_memory
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        if in_memory:
            self.tensors = tuple(t.to(device) for t in materialise(dataset, num_workers))
        n_per_rank = -(-len(dataset) // world_size)
        # Drop a ragged last training batch only when a full one exists: a batch of one
        # breaks BatchNorm and is the noisiest step of the epoch.
        self.drop_last = drop_last and n_per_rank > batch_size

    def __len__(self) -> int:
        """Batches per epoch, counted without drawing a permutation (as batch_indices cuts)."""
        n, world = len(self.dataset), self.world_size
        shard = -(-n // world) if self.pad or world == 1 else len(range(self.rank, n, world))
        count = -(-shard // self.batch_size)
        if self.drop_last and count > 1 and shard % self.batch_size:
            count -= 1
        return count if self.max_batches is None else min(count, self.max_batches)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def limit(self, max_batches: int | None) -> Batches:
        self.max_batches = max_batches
        return self

    def _indices(self) -> list[torch.Tensor]:
        chunks = batch_indices(
            len(self.dataset),
            self.batch_size,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            rank=self.rank,
            world_size=self.world_size,
            pad=self.pad,
        )
        return chunks if self.max_batches is None else chunks[: self.max_batches]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = self._indices()
        if self.tensors is not None:
            x, y = self.tensors
            # One host-to-device copy of the epoch's order, not one per batch: a copy from
            # pageable memory would make the host wait at every step on an accelerator.
            order = torch.cat(chunks).to(self.device) if chunks else torch.empty(0)
            for idx in torch.split(order, [len(c) for c in chunks]):
                yield x[idx], y[idx]
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=[idx.tolist() for idx in chunks],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        non_blocking = self.device.type == "cuda"
        for batch in _stacked(loader):
            x, y = _pair(batch)
            yield (
                x.to(self.device, non_blocking=non_blocking),
                y.to(self.device, non_blocking=non_blocking),
            )


def _stacked(loader: DataLoader) -> Iterator[Any]:
    """The loader's batches; items of different shapes (photos of different sizes) said in
    lrtool's words, with the fix, instead of torch's collate error."""
    try:
        yield from loader
    except RuntimeError as err:
        text = str(err)
        if "stack expects each tensor to be equal size" not in text:
            raise
        found = re.search(r"got (\[[^\]]*\]) at entry \d+ and (\[[^\]]*\])", text)
        shapes = f" ({found.group(1)} and {found.group(2)})" if found else ""
        raise ComponentError(
            f"the dataset's items have different shapes{shapes}, so they cannot be stacked "
            "into a batch. Images of different sizes: set data.args.resize (e.g. resize: 224, "
            "or the size the model takes) on a torchvision dataset; your own dataset: make "
            "__getitem__ return inputs of one shape."
        ) from None


def _pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated batch as (inputs, targets), or why it is not one."""
    if (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and all(isinstance(v, torch.Tensor) for v in batch)
    ):
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        got = f"a pair of {_describe_item(batch[0])} and {_describe_item(batch[1])}"
    else:
        got = _describe_item(batch)
    raise ComponentError(
        f"the dataset's items must be (input, target) pairs of tensors, arrays or numbers, as "
        f"__getitem__ returns `x, y`; a batch of them came as {got}."
    )


def materialise(dataset: Dataset, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a dataset as two tensors (inputs, targets), read once."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        idx = torch.as_tensor(dataset.indices)
        x, y = dataset.dataset.tensors
        return x[idx], y[idx]
    xs, ys = [], []
    loader = DataLoader(dataset, batch_size=512, shuffle=False, num_workers=num_workers)
    for batch in _stacked(loader):
        x, y = _pair(batch)
        xs.append(x)
        ys.append(torch.as_tensor(y))
    if not xs:
        raise ComponentError("the dataset is empty.")
    return torch.cat(xs), torch.cat(ys)


def estimated_bytes(dataset: Dataset) -> int:
    """Memory that materialising the dataset would take, from its first sample."""
    if len(dataset) == 0:
        return 0
    x, _ = dataset[0]
    x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    return x.numel() * 4 * len(dataset)


# --- sources ------------------------------------------------------------------------------


def validation_count(n: int, val_fraction: float) -> int:
    """How many of n samples `split` keeps for validation: at least one, and one fewer than n."""
    return min(max(1, round(n * val_fraction)), n - 1)


def split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Seeded train/validation split (the validation part comes first in the permutation)."""
    n = len(dataset)
    if n < 2:
        raise ComponentError(f"the dataset has {n} sample(s); at least 2 are needed to split.")
    n_val = validation_count(n, val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[n_val:]), Subset(dataset, order[:n_val])


def _targets(y: Any, index_targets: bool | None, note: str = "") -> torch.Tensor:
    """Class indices stay integer (int64); real-valued targets become float32 (N, k)."""
    y = torch.as_tensor(y)
    if index_targets and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if index_targets and y.ndim > 1:
        kind = "real values" if torch.is_floating_point(y) else "0/1 labels (multi-label?)"
        fit = (
            "a regression loss (loss.name: mse, l1, smooth_l1 or huber), metrics: [] or [mae]"
            if torch.is_floating_point(y)
            else "loss.name: bce_with_logits, one output per label"
        )
        raise ComponentError(
            f"data {note!r}: the targets have {y.shape[1]} columns per sample (shape "
            f"{tuple(y.shape)}, {kind}), but the loss expects one class index per sample. "
            f"Use {fit}."
        )
    integral = not torch.is_floating_point(y) or bool(torch.all(y == torch.round(y)))
    if index_targets or (index_targets is None and integral and not torch.is_floating_point(y)):
        if not integral:
            raise ComponentError(
                "the loss expects class indices but the targets are real numbers; use a "
                "regression loss (mse, l1, smooth_l1) or integer class labels."
            )
        return y.long()
    y = y.float()
    return y.unsqueeze(1) if y.ndim == 1 else y


def _rows(indices: list[int], limit: int = 10) -> str:
    """'3, 5 and 9' or '3, 5, ... and 40 more': row or line numbers for a message."""
    shown = [str(i) for i in indices[:limit]]
    if len(indices) > limit:
        return f"{', '.join(shown)} and {len(indices) - limit} more"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def _tabular(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    val_fraction: float,
    seed: int,
    standardize: bool,
    index_targets: bool | None,
    note: str,
    reshape: list[int] | None = None,
    classes: list[str] | None = None,
) -> Splits:
    x = torch.as_tensor(x, dtype=torch.float32)
    # NaN or inf in one feature turns every loss into NaN at the first step: refuse up front.
    bad = (~torch.isfinite(x.reshape(len(x), -1))).any(dim=1)
    if torch.is_floating_point(torch.as_tensor(y)):
        bad |= (~torch.isfinite(torch.as_tensor(y).reshape(len(x), -1))).any(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ComponentError(
            f"data {note!r}: rows {_rows(rows)} (counting from 0) hold NaN or infinite values; "
            "the loss would be NaN from the first step. Clean or drop those rows."
        )
    y = _targets(y, index_targets, note)
    if standardize:
        _check_enough_to_standardize(len(x), val_fraction, note)
    train, val = split(TensorDataset(x, y), val_fraction, seed)
    xt, yt = materialise(train)
    xv, yv = materialise(val)
    if standardize:
        # Training-split statistics only: the validation set must not leak into the scaling.
        mean = xt.mean(dim=0, keepdim=True)
        std = xt.std(dim=0, keepdim=True)
        std[std == 0] = 1.0
        xt, xv = (xt - mean) / std, (xv - mean) / std
    if reshape:
        # e.g. digits' 64 features as 1x8x8 images for a CNN
        try:
            xt, xv = xt.reshape(-1, *reshape), xv.reshape(-1, *reshape)
        except RuntimeError:
            raise ComponentError(
                f"data.args.reshape: {reshape} does not fit {xt.shape[1]} features per sample."
            ) from None
    return Splits(TensorDataset(xt, yt), TensorDataset(xv, yv), "tensors", note, classes)


def _check_enough_to_standardize(n: int, val_fraction: float, note: str) -> None:
    """The standard deviation of a single training row is NaN (torch warns, then divides)."""
    n_val = validation_count(n, val_fraction) if n >= 2 else 0
    if n - n_val >= 2:
        return
    needed = next(m for m in range(3, 10**6) if m - validation_count(m, val_fraction) >= 2)
    raise ComponentError(
        f"data {note!r}: {n} rows are too few to standardise: data.val_fraction "
        f"({val_fraction}) keeps {n_val} for validation, which leaves {n - n_val} training "
        "row(s), and the features' standard deviation needs at least 2. Give at least "
        f"{needed} rows, or set data.args.standardize: false."
    )


def _sklearn(name: str, args: dict[str, Any], **common: Any) -> Splits:
    from sklearn import datasets as skd

    loader = name.removeprefix("sklearn.")
    available = sorted(
        n.removeprefix("load_")
        for n in dir(skd)
        if n.startswith("load_")
        and n
        not in (
            "load_files",
            "load_sample_image",
            "load_sample_images",
            "load_svmlight_file",
            "load_svmlight_files",
        )
    ) + sorted(n for n in dir(skd) if n.startswith("make_"))
    if loader.startswith("make_"):
        factory = getattr(skd, loader, None)
    else:
        factory = getattr(skd, f"load_{loader}", None)
    if factory is None or loader not in available:
        raise unknown_name("sklearn dataset", loader, available, extra=" (as sklearn.<name>)")
    extra = {} if loader.startswith("make_") else {"return_X_y": True}
    if extra and args.get("return_X_y", True) is not True:
        raise ComponentError(
            f"data.args.return_X_y: lrtool sets it to true for {name!r} (it takes the "
            "(inputs, targets) pair the loader then returns); remove it."
        )
    # YAML has no tuples: a list given where the generator's default is a tuple (shape).
    params = inspect.signature(factory).parameters
    args = {
        k: tuple(v)
        if isinstance(v, list) and k in params and isinstance(params[k].default, tuple)
        else v
        for k, v in args.items()
    }
    result = call_with_args(factory, {**extra, **args}, what=f"dataset {name!r}", given=args)
    x, y = _inputs_and_targets(name, result)
    if common["index_targets"] and getattr(y, "dtype", None) is not None and y.dtype.kind == "f":
        # sklearn gives class labels as integers; floats are measurements (diabetes,
        # linnerud), which read as whole numbers would pass for hundreds of classes.
        values = sorted(set(y.reshape(-1).tolist())) if y.size <= 10**6 else []
        if values and len(values) <= 20 and all(float(v).is_integer() for v in values):
            raise ComponentError(
                f"data {name!r} gives its labels as the real numbers {values}, but the loss "
                "expects class indices 0..N-1 (labels -1/1 would have to become 0/1), which "
                "this source does not give: use a dataset that does (a CSV, your own "
                "package.module:function), or a regression loss."
            )
        shape = "" if y.ndim == 1 else f", {y.shape[1]} columns per sample"
        raise ComponentError(
            f"data {name!r} gives continuous targets (real numbers from {y.min():g} to "
            f"{y.max():g}{shape}), not class labels, but the loss expects class indices. Use "
            "a regression loss (loss.name: mse, or l1, smooth_l1, huber) with metrics: [] or "
            "[mae], and one model output per target column."
        )
    return _tabular(x, y, note=f"{name}", **common)


def _inputs_and_targets(name: str, result: Any) -> tuple[Any, Any]:
    """The (samples, targets) an sklearn source returns first, or why it returns none."""
    import numpy as np

    pair = list(result[:2]) if isinstance(result, (tuple, list)) and len(result) >= 2 else None
    if pair is not None and any(hasattr(v, "toarray") for v in pair):
        raise ComponentError(
            f"data {name!r} returns sparse arrays; lrtool needs dense ones (e.g. "
            "return_indicator: dense)."
        )
    if pair is not None:
        try:
            x, y = (np.asarray(v) for v in pair)
        except (TypeError, ValueError):
            x = y = None
        if x is not None and x.ndim >= 1 and y.ndim >= 1 and len(x) == len(y) and len(x) > 1:
            return x, y
        if x is not None and x.ndim >= 1 and y.ndim >= 1 and len(x) == len(y):
            raise ComponentError(
                f"data {name!r} returns {len(x)} sample(s): lrtool needs at least 2, one to "
                "train on and one to validate (raise n_samples)."
            )
    raise ComponentError(
        f"data {name!r} does not return (samples, targets) of one length: lrtool takes a "
        "loader or generator whose first two results are the inputs and their targets "
        "(load_iris, make_classification, make_regression, ...); this one returns "
        f"{type(result).__name__}."
    )


# What a csv source takes (standardize and reshape are shared with the sklearn sources).
CSV_ARGS = ("path", "target", "delimiter", "standardize", "reshape")


# The largest float32: a feature beyond it becomes inf when training casts it.
FLOAT32_MAX = 3.4028234663852886e38


def _csv_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _csv(
    args: dict[str, Any],
    *,
    classes: list[str] | None = None,
    measured: bool = False,
    **common: Any,
) -> Splits:
    """A CSV file: a header row, then one sample per row; every cell problem reported at once.

    Features must be numbers. The target (default: the last column) is a number, or text:
    text labels are classes, indexed in `classes` order (default: sorted).
    """
    file, header, body, column = _csv_table(args)
    features, labels, problems = _csv_cells(file, header, body, column)
    if problems:
        raise ComponentError(_csv_report(file, problems))
    if measured and _numeric_labels(labels) is None:
        # A regression loss on text: numbering the values as classes ('100' < '99') would
        # train on meaningless numbers.
        text = [(n, v) for (n, _), v in zip(body, labels, strict=True) if _csv_number(v) is None]
        shown = ", ".join(f"line {n}: {v!r}" for n, v in text[:5])
        more = f" and {len(text) - 5} more" if len(text) > 5 else ""
        raise ComponentError(
            f"{file}: the loss is a regression loss, so target column {header[column]!r} must "
            f"hold a number in every row, but {len(text)} do not ({shown}{more}). Fill in or "
            "drop those rows (a missing-value marker such as NA is text), or, for text "
            "labels, use a classification loss (cross_entropy)."
        )
    y, classes = _csv_targets(file, header[column], labels, classes)
    if common.get("index_targets") and len(set(y)) == 1:
        # Every loss would drop to 0 at once: the finder's curve and the training say nothing.
        raise ComponentError(
            f"data.args.target: every row of {file} has the label {labels[0]!r} in column "
            f"{header[column]!r}: a classifier needs at least two classes. Check the file (a "
            "filter that kept one class?) and data.args.target; for a numeric target use a "
            "regression loss (mse, l1, smooth_l1)."
        )
    note = f"csv {file.name}"
    if all(_csv_number(name) is not None for name in header):
        # No header row: its first sample became the column names. (pandas writes numbers
        # as names for unnamed columns, so this is said, not refused.)
        note += " (its first row, all numbers, was read as the column names: is it data?)"
    return _tabular(torch.tensor(features), torch.tensor(y), note=note, classes=classes, **common)


def _csv_table(args: dict[str, Any]) -> tuple[Path, list[str], list[tuple[int, list[str]]], int]:
    """The file, its header, its data rows with their line numbers, and the target's column."""
    path = args.get("path")
    if not path:
        raise ComponentError("data: csv needs args.path, the CSV file to read.")
    file = Path(path)
    if file.is_dir():
        raise ComponentError(f"data.args.path: {file} is a folder; name the CSV file in it.")
    if not file.is_file():
        where = (
            f": a relative path is looked for in the current folder ({Path.cwd()}), then "
            "beside the experiment file"
            if not file.is_absolute()
            else ""
        )
        raise ComponentError(f"data.args.path: CSV file {file} does not exist{where}.")
    unknown = set(args) - set(CSV_ARGS)
    if unknown:
        raise ComponentError(
            f"data: csv takes args {', '.join(CSV_ARGS)}; got also {', '.join(sorted(unknown))}."
        )
    reader = csv.reader(
        io.StringIO(_utf8_text(file), newline=""), delimiter=args.get("delimiter", ",")
    )
    try:
        # Blank lines hold no sample; every other row keeps its line number for messages.
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as err:
        raise ComponentError(
            f"{file}, line {reader.line_num}: Python's csv module cannot read it ({err}). "
            "A quote left open runs on to the end of the file, and no cell may hold more than "
            f"{csv.field_size_limit():,} characters: check that line's quotes and cells."
        ) from None
    if len(rows) < 3:
        raise ComponentError(f"{file}: needs a header row and at least two data rows.")
    # "a, b, y" (a space after each comma) names its columns a, b and y.
    # NFC: a name typed in the YAML and the same name written by a tool that decomposes
    # accents (macOS: "e" + U+0301) must match.
    header = [unicodedata.normalize("NFC", name.strip()) for name in rows[0][1]]
    body = rows[1:]
    delimiter = args.get("delimiter", ",")
    if len(header) < 2:
        raise ComponentError(_one_column(file, header[0], delimiter))
    target = args.get("target", header[-1])
    if isinstance(target, str):
        target = unicodedata.normalize("NFC", target.strip())  # as the header's names are
    if isinstance(target, int) and not isinstance(target, bool):
        if not -len(header) <= target < len(header):
            raise ConfigError(
                f"data.args.target: column {target} is out of range: {file} has "
                f"{len(header)} columns (0 to {len(header) - 1}): {', '.join(header)}. Give "
                "the target column's index, counting from 0 (-1 is the last), or its name."
            )
        column = target % len(header)  # -1: the last column, as in Python
    elif header.count(target) > 1:
        raise ComponentError(
            f"data.args.target: {file} has {header.count(target)} columns named {target!r}; "
            "rename them in the header, or give the target column's index (counting from 0)."
        )
    elif target in header:
        column = header.index(target)
    else:
        raise ComponentError(
            f"data.args.target: column {target!r} is not in {file}; columns: {', '.join(header)}."
        )
    return file, header, body, column


def _utf8_text(file: Path) -> str:
    """The file's text, or a ComponentError naming the line of the first byte that is not
    UTF-8 (a file saved as Latin-1 or Windows-1252 by a spreadsheet)."""
    raw = file.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip's magic: a data.csv.gz
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ComponentError(
                f"{file} is gzip-compressed but cannot be decompressed ({err}): the file is "
                "cut short or damaged."
            ) from None
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark is not part of the header
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ComponentError(
            f"{file}, line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 text; lrtool reads "
            "CSV files as UTF-8. Save the file as UTF-8 (a spreadsheet's 'CSV UTF-8', or "
            "iconv -f latin1 -t utf-8)."
        ) from None


def _one_column(file: Path, header: str, delimiter: str) -> str:
    """A header read as one column: no feature besides the target, usually the delimiter."""
    others = [d for d in (",", ";", "\t", "|") if d != delimiter and d in header]
    hint = ""
    if others:
        # YAML reads a tab only between double quotes.
        shown = '"\\t"' if others[0] == "\t" else repr(others[0])
        hint = f"; the header holds {shown}: set data.args.delimiter: {shown}"
    return (
        f"data.args.path: {file} has a single column ({header!r}) when split on "
        f"{delimiter!r}, so there is no feature column besides the target. Check "
        f"data.args.delimiter (now {delimiter!r}){hint}."
    )


def _numeric_labels(labels: list[str]) -> list[float | None] | None:
    """The labels as numbers when every non-empty one is a number, else None (text labels)."""
    numbers = [_csv_number(v) for v in labels]
    numeric = all(n is not None for n, label in zip(numbers, labels, strict=True) if label)
    return numbers if numeric else None


def _csv_cells(
    file: Path, header: list[str], body: list[tuple[int, list[str]]], column: int
) -> tuple[list[list[float]], list[str], dict[tuple[str, str], list[tuple[int, str]]]]:
    """The features, the raw labels, and every cell problem (see _csv_report)."""
    # (column, what is wrong) -> [(line, cell)], in the order met: one bullet each.
    problems: dict[tuple[str, str], list[tuple[int, str]]] = {}
    features: list[list[float]] = []
    labels: list[str] = []
    for line_no, row in body:
        if len(row) != len(header):
            raise ComponentError(
                f"{file}, line {line_no}: {len(row)} fields, the header has {len(header)}."
            )
        values = []
        for i, cell in enumerate(row):
            if not cell.strip():
                problems.setdefault((header[i], "empty"), []).append((line_no, cell))
            elif i != column:
                number = _csv_number(cell)
                if number is None:
                    problems.setdefault((header[i], "text"), []).append((line_no, cell))
                elif not math.isfinite(number):
                    problems.setdefault((header[i], "nonfinite"), []).append((line_no, cell))
                elif abs(number) > FLOAT32_MAX:
                    problems.setdefault((header[i], "too large"), []).append((line_no, cell))
                values.append(0.0 if number is None else number)
        features.append(values)
        labels.append(row[column].strip())
    numbers = _numeric_labels(labels)
    if numbers is not None:
        for (line_no, _), label, number in zip(body, labels, numbers, strict=True):
            if label and not math.isfinite(number):  # type: ignore[arg-type]
                problems.setdefault((header[column], "nonfinite"), []).append((line_no, label))
    return features, labels, problems


def _csv_targets(
    file: Path, column: str, labels: list[str], classes: list[str] | None
) -> tuple[list[Any], list[str] | None]:
    """The targets (numbers, or class indices for text labels) and the class names."""
    numbers = _numeric_labels(labels)
    if numbers is not None:
        if classes is not None and any(
            n != int(n) or not 0 <= n < len(classes)  # type: ignore[arg-type]
            for n in numbers
        ):
            raise ComponentError(
                f"data.classes: names {len(classes)} classes, but the labels in {file} column "
                f"{column!r} are not all whole numbers from 0 to {len(classes) - 1}."
            )
        return numbers, classes
    # Text labels: a classification target.
    known = sorted(set(labels)) if classes is None else list(classes)
    missing = sorted(set(labels) - set(known))
    if missing:
        raise ComponentError(
            f"data.classes: {file} column {column!r} has labels that are not in "
            f"data.classes: {', '.join(repr(m) for m in missing[:10])}. List every class, "
            "or leave data.classes out to take the labels in sorted order."
        )
    index = {name: i for i, name in enumerate(known)}
    return [index[v] for v in labels], known


def _csv_report(file: Path, problems: dict[tuple[str, str], list[tuple[int, str]]]) -> str:
    """One paragraph naming the file, then one bullet per column and kind of problem."""
    bullets = []
    for (column, kind), cells in problems.items():
        lines = _rows([line for line, _ in cells])
        where = f"line {lines}" if len(cells) == 1 else f"lines {lines}"
        if kind == "empty" and not column.strip():
            bullets.append(
                f"  • a column with no name, empty on {where}: a delimiter at the end of each "
                "line (a trailing comma) makes one; remove it"
            )
        elif kind == "empty":
            fix = (
                "fill it in or drop the row" if len(cells) == 1 else "fill them in or drop the rows"
            )
            bullets.append(f"  • column {column!r}: empty on {where}; {fix}")
        elif kind == "too large":
            shown = ", ".join(sorted({cell.strip() for _, cell in cells})[:3])
            bullets.append(
                f"  • column {column!r}: {shown} on {where}; beyond float32's range (about "
                "3.4e38), where training computes: scale the column down"
            )
        elif kind == "nonfinite":
            shown = ", ".join(sorted({cell.strip() for _, cell in cells}))
            bullets.append(
                f"  • column {column!r}: {shown} on {where}; the loss would be NaN from the "
                "first step: replace the values or drop the rows"
            )
        else:
            cell = cells[0][1]
            hint = "one-hot encode categories first"
            if re.fullmatch(r"\s*[-+]?\d+,\d+\s*", cell):
                hint = "a decimal comma? write numbers with a point (1.5)"
            elif cell.strip().upper() in ("NA", "N/A", "NAN", "NULL", "NONE", "?", "-"):
                hint = "a missing-value marker: fill the values in or drop the rows"
            bullets.append(
                f"  • column {column!r}: {cell!r} is not a number ({where}); features must be "
                f"numeric: {hint}"
            )
    count = len(bullets)
    noun = "problem" if count == 1 else "problems"
    return f"data.args.path: {file} has cells lrtool cannot use ({count} {noun}):\n" + "\n".join(
        bullets
    )


# Arguments lrtool consumes for image datasets; all others go to the torchvision class.
_IMAGE_ARGS = {"resize", "augment", "normalize"}


# --- the data.args lrtool reads itself, checked at load -------------------------------------


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bool_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _path_problem(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"expected a path (text, not empty), got {value!r}"


def _reshape_problem(value: Any) -> str | None:
    if isinstance(value, list) and value and all(_is_whole(v) and v > 0 for v in value):
        return None
    return (
        f"expected a list of positive whole numbers, the shape of one sample (e.g. [1, 8, 8] "
        f"for digits' 64 features as images), got {value!r}"
    )


def _resize_problem(value: Any) -> str | None:
    if _is_whole(value) and value > 0:
        return None
    if isinstance(value, list) and len(value) == 2 and all(_is_whole(v) and v > 0 for v in value):
        return None
    return (
        f"expected the image size in pixels: a positive whole number (32) or [height, width], "
        f"got {value!r}; leave resize out to keep the images' own size"
    )


def _normalize_problem(value: Any) -> str | None:
    expected = (
        "expected [mean, std]: two numbers ([0.5, 0.25]) or two lists with one number per "
        "channel ([[0.49, 0.48, 0.45], [0.25, 0.24, 0.26]]), every std above 0"
    )
    if not (isinstance(value, list) and len(value) == 2):
        return f"{expected}; got {value!r}"
    mean, std = ([v] if _is_number(v) else v for v in value)
    if not all(isinstance(v, list) and v and all(_is_number(x) for x in v) for v in (mean, std)):
        return f"{expected}; got {value!r}"
    if len(mean) > 1 and len(std) > 1 and len(mean) != len(std):
        return f"{expected}; got {len(mean)} means and {len(std)} stds in {value!r}"
    if any(x <= 0 for x in std):
        return f"{expected} (images are divided by it); got {value!r}"
    return None


def _target_problem(value: Any) -> str | None:
    if _is_whole(value) or (isinstance(value, str) and value.strip()):
        return None
    return f"expected a column name or a column index (0 is the first, -1 the last), got {value!r}"


def _delimiter_problem(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 1:
        return None
    return f'expected one character (",", ";", "\\t" in double quotes), got {value!r}'


_TABULAR_CHECKS = {"standardize": _bool_problem, "reshape": _reshape_problem}
_CSV_CHECKS = {
    **_TABULAR_CHECKS,
    "path": _path_problem,
    "target": _target_problem,
    "delimiter": _delimiter_problem,
}
_IMAGE_CHECKS = {
    "resize": _resize_problem,
    "normalize": _normalize_problem,
    "augment": _bool_problem,
    "root": _path_problem,
    "download": _bool_problem,
}


def own_arg_problems(name: str, args: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The data.args of a built-in source that lrtool reads itself, checked without reading
    any data: (argument, what is wrong) for each problem. The loaders' own arguments are
    left to their signatures."""
    if name == "csv":
        checks = _CSV_CHECKS
    elif name.startswith("sklearn."):
        checks = _TABULAR_CHECKS
    elif name.startswith("torchvision."):
        checks = _IMAGE_CHECKS
    else:
        return []
    problems: list[tuple[str | None, str]] = []
    for key, value in args.items():
        check = checks.get(key)
        if check is not None:
            message = check(value)
            if message is not None:
                problems.append((key, message))
        elif name == "csv":
            close = difflib.get_close_matches(str(key), CSV_ARGS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append((key, f"unknown argument{hint} (csv takes {', '.join(CSV_ARGS)})"))
    return problems


def _image_transforms(args: dict[str, Any], augment: bool) -> Any:
    from torchvision import transforms as T

    steps: list[Any] = []
    if args.get("resize") is not None:
        steps += [T.Resize(args["resize"]), T.CenterCrop(args["resize"])]
    if augment and args.get("augment"):
        steps.append(T.RandomHorizontalFlip())
        if args.get("resize") is not None:
            size = args["resize"]
            steps.append(
                T.RandomCrop(size, padding=(size if isinstance(size, int) else size[0]) // 8)
            )
    steps.append(T.ToTensor())
    if args.get("normalize") is not None:
        mean, std = args["normalize"]
        steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def _check_normalize(dataset: Dataset, normalize: list[Any]) -> None:
    """Per-channel means and stds must match the images' channels: try the first image."""
    try:
        dataset[0]
    except RuntimeError as err:
        first = " ".join(str(err).split())
        raise ComponentError(
            f"data.args.normalize: {normalize} does not fit the images ({first}). Give one "
            "mean and one std per channel (3 for colour, 1 for grey), or single numbers."
        ) from None


def _torchvision(name: str, args: dict[str, Any], *, val_fraction: float, seed: int) -> Splits:
    import torchvision

    cls_name = name.removeprefix("torchvision.")
    available = sorted(n for n in torchvision.datasets.__all__ if n[0].isupper())
    cls = getattr(torchvision.datasets, cls_name, None)
    if cls is None or cls_name not in available:
        raise unknown_name("torchvision dataset", cls_name, available)
    own = {k: v for k, v in args.items() if k in _IMAGE_ARGS}
    passed = {k: v for k, v in args.items() if k not in _IMAGE_ARGS}
    root = passed.get("root")
    if root is not None and not passed.get("download") and not Path(root).exists():
        raise ComponentError(
            f"data.args.root: folder {root} does not exist. Point it at the dataset, or set "
            "download: true for datasets that can download."
        )
    params = inspect.signature(cls).parameters
    chosen = "train" if "train" in params else "split" if cls_name in ("SVHN", "STL10") else None
    if chosen is not None and chosen in passed and passed[chosen] not in (True, "train"):
        # lrtool takes both splits (train, and the test split for validation); a user's
        # `train: false` was silently overridden and trained on the training split. Saying
        # what lrtool does anyway (`train: true`) is fine.
        raise ConfigError(
            f"data.args.{chosen}: lrtool trains on the training split of dataset {name!r} and "
            f"validates on its test split, so it sets {chosen} itself; remove data.args.{chosen}."
        )

    def make(augment: bool, **extra: Any) -> Dataset:
        kwargs = {**passed, **extra}
        if "transform" in params:
            kwargs["transform"] = _image_transforms(own, augment)
        try:
            dataset = call_with_args(cls, kwargs, what=f"dataset {name!r}", given=passed)
        except (RuntimeError, FileNotFoundError, OSError) as err:
            first = " ".join(str(err).split())
            if "download" not in params and "find any class folder" in first:
                hint = (
                    f" Each class is a folder under {root} holding that class's images: put "
                    "the images into one sub-folder per class (e.g. root/cat/1.png)."
                )
            elif "download" not in params:
                # A folder dataset (ImageFolder) cannot download: its files are the user's.
                hint = (
                    f" Each class is a folder under {root} holding images (.png, .jpg, ...): "
                    "add images to the folders named, or remove those folders."
                )
            elif passed.get("download"):
                hint = (
                    " Downloading needs the internet: fetch the files once on a machine that "
                    f"has it and copy them under {root}, or use --smoke, which stands FakeData in."
                )
            else:
                hint = " Set download: true to fetch it, or point root at the files."
            raise ComponentError(
                f"dataset {name!r} could not be loaded: {first.rstrip('.')}.{hint}"
            ) from None
        if own.get("normalize") is not None and len(dataset):
            _check_normalize(dataset, own["normalize"])
        return dataset

    augmented = bool(own.get("augment"))
    kind = "random" if augmented else "fixed"
    if "train" in params:
        return Splits(make(True, train=True), make(False, train=False), kind, name)
    if "split" in params and cls_name in ("SVHN", "STL10"):
        return Splits(make(True, split="train"), make(False, split="test"), kind, name)
    full = make(False)
    train, val = split(full, val_fraction, seed)
    if augmented:
        # The validation part must not see random transforms: give it its own dataset.
        train = Subset(make(True), train.indices)
    return Splits(train, val, kind, name)


def _named_classes(dataset: Dataset) -> list[str] | None:
    """A dataset's class names (torchvision's `classes`), looking through Subsets."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    names = getattr(dataset, "classes", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _describe_item(item: Any) -> str:
    """'a dict with keys x, y', 'a tuple of 3', 'a str': what an item was instead of a pair."""
    kind = type(item).__name__
    if isinstance(item, dict):
        return f"a {kind} with keys {', '.join(str(k) for k in list(item)[:5])}"
    if isinstance(item, (tuple, list)):
        return f"a {kind} of {len(item)}"
    if isinstance(item, torch.Tensor):
        return f"a tensor of shape {tuple(item.shape)}"
    return f"a {kind}"


def _batchable(value: Any) -> bool:
    """What the DataLoader can stack into a batch tensor: tensors, arrays and numbers."""
    import numpy as np

    return isinstance(value, (torch.Tensor, np.ndarray, int, float, np.number)) and not (
        isinstance(value, bool)
    )


def _check_item(name: str, item: Any, which: str) -> None:
    """Every item must be an (input, target) pair of tensors, arrays or numbers."""
    pair = isinstance(item, (tuple, list)) and len(item) == 2
    if pair and all(_batchable(v) for v in item):
        return
    if pair:
        what = ", ".join(
            f"the {part} is {_describe_item(v)}"
            for part, v in zip(("input", "target"), item, strict=True)
            if not _batchable(v)
        )
        got = f"item 0 of the {which} set is a pair, but {what}"
    else:
        got = f"item 0 of the {which} set is {_describe_item(item)}"
    hint = " (return sample['x'], sample['y'])" if isinstance(item, dict) else ""
    raise ComponentError(
        f"dataset {name!r}: each item must be an (input, target) pair of tensors, arrays or "
        f"numbers, as __getitem__ returns `x, y`; {got}. Make __getitem__ return the pair"
        f"{hint}, with class labels as integers."
    )


def _check_map_style(name: str, dataset: Any) -> None:
    """lrtool splits, shuffles, counts and indexes a dataset: a stream cannot be."""
    if isinstance(dataset, IterableDataset) or (
        isinstance(dataset, Dataset) and not hasattr(dataset, "__len__")
    ):
        raise ComponentError(
            f"dataset {name!r} returned a {type(dataset).__name__}, a dataset without a "
            "length (an IterableDataset, read as a stream): lrtool splits, shuffles and counts "
            "the samples, so it needs a map-style Dataset, with __len__ and __getitem__ "
            "(e.g. a TensorDataset of the inputs and targets)."
        )


def _callable(
    name: str,
    args: dict[str, Any],
    *,
    val_fraction: float,
    seed: int,
    search_dirs: Sequence[Path] = (),
) -> Splits:
    factory = import_object(name, what="dataset", search_dirs=search_dirs)
    result = call_with_args(factory, args, what=f"dataset {name!r}")
    parts = result if isinstance(result, (tuple, list)) and len(result) == 2 else [result]
    for part in parts:
        _check_map_style(name, part)
    if isinstance(result, Dataset):
        train, val = split(result, val_fraction, seed)
    elif (
        isinstance(result, (tuple, list))
        and len(result) == 2
        and all(isinstance(d, Dataset) for d in result)
    ):
        train, val = result
    else:
        raise ComponentError(
            f"dataset {name!r} must return a torch Dataset or a (train, val) pair of Datasets, "
            f"got {type(result).__name__}."
        )
    for part, which in ((train, "training"), (val, "validation")):
        if len(part):
            _check_item(name, part[0], which)
    tensor_backed = all(
        isinstance(d, TensorDataset)
        or (isinstance(d, Subset) and isinstance(d.dataset, TensorDataset))
        for d in (train, val)
    )
    # Unknown code may draw random transforms: only tensor datasets are materialised unasked.
    return Splits(train, val, "tensors" if tensor_backed else "random", name)


def load_splits(
    name: str,
    args: dict[str, Any],
    *,
    val_fraction: float,
    seed: int,
    index_targets: bool | None,
    classes: list[str] | None = None,
    search_dirs: Sequence[Path] = (),
    measured_targets: bool = False,
) -> Splits:
    """Build the training and validation datasets of a data spec.

    `measured_targets`: the loss is a regression loss, so a CSV target must be numbers (text
    there is refused, not numbered as classes).

    `classes` (data.classes) names the classes in label order; for a CSV with text labels it
    also fixes which label gets which index. The returned Splits carry the class names when
    the source or `classes` gives them. `search_dirs`: where import paths are looked for after
    the current folder.
    """
    args = dict(args)
    if name.startswith("sklearn.") or name == "csv":
        common = dict(
            val_fraction=val_fraction,
            seed=seed,
            standardize=bool(args.pop("standardize", True)),
            reshape=args.pop("reshape", None),
            index_targets=index_targets,
        )
        if name == "csv":
            return _csv(args, classes=classes, measured=measured_targets, **common)
        splits = _sklearn(name, args, **common)
    elif name.startswith("torchvision."):
        splits = _torchvision(name, args, val_fraction=val_fraction, seed=seed)
    elif is_import_path(name):
        splits = _callable(
            name, args, val_fraction=val_fraction, seed=seed, search_dirs=search_dirs
        )
    else:
        raise unknown_name("dataset", name, ["csv", "sklearn.<loader>", "torchvision.<Dataset>"])
    _check_not_empty(name, splits)
    named = _named_classes(splits.train)
    if classes is not None and named is not None and list(classes) != named:
        raise ComponentError(
            f"data.classes: {list(classes)} does not match the classes dataset {name!r} "
            f"names, in its label order: {named}. Leave data.classes out to take them as given."
        )
    splits.classes = list(classes) if classes is not None else named
    return splits


def _check_not_empty(name: str, splits: Splits) -> None:
    """An empty split trains nothing, or evaluates nothing (the losses would be null)."""
    for part, which in ((splits.train, "training"), (splits.val, "validation")):
        if len(part) == 0:
            raise ComponentError(
                f"dataset {name!r}: the {which} set is empty (0 samples); lrtool trains on the "
                "training set and measures the validation loss and metrics on the "
                f"validation set. Give the {which} set samples, or return a single Dataset "
                "and let data.val_fraction split it."
            )


def use_memory(splits: Splits, requested: bool | None) -> bool:
    """The fast in-memory path unless augmentation or size rules it out (or the user says)."""
    if requested is not None:
        return requested
    if splits.kind == "tensors":
        return True
    if splits.kind == "random":
        return False
    return estimated_bytes(splits.train) + estimated_bytes(splits.val) <= IN_MEMORY_LIMIT_BYTES
