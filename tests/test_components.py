"""The registry kinds (built-in, torchvision, sklearn, csv, import path) and their errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from lrtool.build import build, make_optimizer
from lrtool.config import validate
from lrtool.data import Batches, batch_indices, load_splits
from lrtool.errors import ComponentError, ConfigError, DeviceError
from lrtool.models import build_model, parameter_groups
from lrtool.probe import first_step
from lrtool.registry import build_loss, optimizer_class
from lrtool.runtime import resolve_device

CPU = torch.device("cpu")


def exp(**sections):
    base = {"device": "cpu", "data": {"name": "sklearn.iris", "batch_size": 16}}
    base.update(sections)
    base.setdefault("model", {"name": "mlp", "args": {"in_features": 4, "num_classes": 3}})
    return validate(base)


# --- sklearn and the tabular path ---------------------------------------------------------


def test_sklearn_iris_split_and_standardised():
    built = build(exp())
    x, y = built.train_data.tensors
    assert built.train_data.num_samples == 120 and built.val_data.num_samples == 30
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    assert torch.allclose(x.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(x.std(0), torch.ones(4), atol=1e-5)


def test_standardize_can_be_switched_off():
    built = build(exp(data={"name": "sklearn.iris", "args": {"standardize": False}}))
    x, _ = built.train_data.tensors
    assert x.mean(0)[0] > 4  # sepal length in cm, untouched


def test_split_is_seeded():
    a = build(exp(seed=1)).val_data.tensors[0]
    b = build(exp(seed=1)).val_data.tensors[0]
    c = build(exp(seed=2)).val_data.tensors[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_regression_targets_are_float_columns():
    built = build(
        exp(
            data={"name": "sklearn.make_friedman1", "args": {"n_samples": 200, "random_state": 0}},
            model={"name": "mlp", "args": {"in_features": 10, "num_classes": 1}},
            loss={"name": "mse"},
            metrics=["mae"],
        )
    )
    _, y = built.train_data.tensors
    assert y.dtype == torch.float32 and y.shape == (160, 1)
    assert first_step(built) > 0


def test_accuracy_with_regression_loss_is_rejected():
    with pytest.raises(ConfigError, match="accuracy needs class targets"):
        build(exp(loss={"name": "mse"}))


def test_unknown_sklearn_dataset_lists_available():
    with pytest.raises(ComponentError, match="Unknown sklearn dataset 'digitz'.*digits"):
        build(exp(data={"name": "sklearn.digitz"}))


# --- csv ----------------------------------------------------------------------------------


def test_csv_text_labels_become_classes(tmp_path):
    rows = ["a,b,species"] + [f"{i},{i % 3},{'xyz'[i % 3]}" for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    built = build(
        exp(
            data={"name": "csv", "args": {"path": str(tmp_path / "t.csv"), "target": "species"}},
            model={"name": "mlp", "args": {"in_features": 2, "num_classes": 3}},
        )
    )
    assert built.train_data.num_samples + built.val_data.num_samples == 30
    assert sorted(set(built.train_data.tensors[1].tolist())) == [0, 1, 2]


def test_csv_gzipped_and_decomposed_unicode_header_are_read(tmp_path):
    """A data.csv.gz was called "not UTF-8"; a header written in NFD (macOS tools) did not
    match the same name typed in the YAML."""
    import gzip
    import unicodedata

    name = unicodedata.normalize("NFD", "espèce")
    rows = [f"a,b,{name}"] + [f"{i},{i % 3},{'xyz'[i % 3]}" for i in range(30)]
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    args = {"path": str(tmp_path / "t.csv.gz"), "target": unicodedata.normalize("NFC", name)}
    built = build(
        exp(
            data={"name": "csv", "args": args},
            model={"name": "mlp", "args": {"in_features": 2, "num_classes": 3}},
        )
    )
    assert built.train_data.num_samples + built.val_data.num_samples == 30
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n" * 50)[:30])
    with pytest.raises(ComponentError, match="gzip-compressed but cannot be decompressed"):
        build(exp(data={"name": "csv", "args": {"path": str(tmp_path / "cut.csv.gz")}}))


def test_a_generator_asked_for_one_sample_says_so():
    args = {"n_samples": 1, "random_state": 0}
    with pytest.raises(ComponentError, match="returns 1 sample"):
        build(exp(data={"name": "sklearn.make_classification", "args": args}))


def test_an_image_folder_without_class_folders_is_told_to_make_them(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(ComponentError, match="one sub-folder per class") as caught:
        build(exp(data={"name": "torchvision.ImageFolder", "args": {"root": str(tmp_path)}}))
    assert ".." not in str(caught.value)


def test_csv_regression_uses_last_column_by_default(tmp_path):
    rows = ["x1,x2,y"] + [f"{i},{2 * i},{0.5 * i}" for i in range(20)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    built = build(
        exp(
            data={"name": "csv", "args": {"path": str(tmp_path / "r.csv")}},
            model={"name": "linear", "args": {"in_features": 2}},
            loss={"name": "mse"},
            metrics=[],
        )
    )
    x, y = built.train_data.tensors
    assert x.shape[1] == 2 and y.shape[1] == 1 and y.dtype == torch.float32


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, {}, "needs args.path"),
        (None, {"path": "missing.csv"}, "does not exist"),
        ("a,b\n1,x\n2,y\n3,z\n", {"target": "a"}, "'x' is not a number"),
        ("a,b\n1,2\n3,4\n5,6\n", {"target": "c"}, "column 'c' is not in"),
        ("a,b\n1,2\n3\n5,6\n", {}, "line 3: 1 fields"),
    ],
)
def test_csv_errors(tmp_path, content, args, message):
    if content is not None:
        (tmp_path / "bad.csv").write_text(content)
        args = {"path": str(tmp_path / "bad.csv"), **args}
    elif "path" in args:
        args = {"path": str(tmp_path / args["path"])}
    with pytest.raises(ComponentError, match=message):
        build(exp(data={"name": "csv", "args": args}))


# --- torchvision --------------------------------------------------------------------------


def test_torchvision_fakedata_in_memory_with_cnn():
    built = build(
        exp(
            data={
                "name": "torchvision.FakeData",
                "args": {"size": 40, "image_size": [1, 12, 12], "num_classes": 4},
                "batch_size": 8,
            },
            model={"name": "cnn", "args": {"in_channels": 1, "num_classes": 4, "width": 4}},
        )
    )
    assert built.train_data.in_memory
    x, y = next(iter(built.train_data))
    assert x.shape == (8, 1, 12, 12) and y.dtype == torch.int64
    assert first_step(built) > 0


def test_torchvision_augment_goes_through_a_dataloader():
    built = build(
        exp(
            data={
                "name": "torchvision.FakeData",
                "args": {
                    "size": 20,
                    "image_size": [3, 8, 8],
                    "num_classes": 2,
                    "augment": True,
                    "resize": 8,
                },
                "batch_size": 4,
            },
            model={"name": "cnn", "args": {"in_channels": 3, "num_classes": 2, "width": 4}},
        )
    )
    assert not built.train_data.in_memory
    assert next(iter(built.train_data))[0].shape == (4, 3, 8, 8)


def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_reads_local_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 24), ("t10k", 8)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
    built = build(
        exp(
            data={"name": "torchvision.MNIST", "args": {"root": str(tmp_path)}, "batch_size": 8},
            model={"name": "cnn", "args": {"in_channels": 1, "num_classes": 10, "width": 4}},
        )
    )
    assert built.train_data.num_samples == 24 and built.val_data.num_samples == 8
    x, _ = built.train_data.tensors
    assert x.shape == (24, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_torchvision_split_arguments_lrtool_sets_itself_are_refused(tmp_path):
    """`train: false` was silently overridden: the run trained on the training split."""
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    args = {"root": str(tmp_path), "train": False}
    with pytest.raises(ConfigError, match="data.args.train: lrtool trains on the training split"):
        load_splits("torchvision.MNIST", args, val_fraction=0.2, seed=0, index_targets=None)
    # Saying what lrtool does anyway is fine: the files are absent here, nothing else wrong.
    with pytest.raises(ComponentError, match="could not be loaded"):
        load_splits(
            "torchvision.MNIST", {**args, "train": True}, val_fraction=0.2, seed=0,
            index_targets=None,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="data.args.train: lrtool trains on the training split"):
        build(
            exp(
                data={"name": "torchvision.MNIST", "args": args, "batch_size": 8},
                model={"name": "cnn", "args": {"in_channels": 1, "num_classes": 10}},
            )
        )


def test_an_argument_image_folder_does_not_take_is_shown_without_lrtools_own(tmp_path):
    """The message listed the transform lrtool adds (a multi-line Compose repr)."""
    (tmp_path / "a").mkdir()
    args = {"root": str(tmp_path), "val_root": str(tmp_path)}
    with pytest.raises(ComponentError) as caught:
        build(exp(data={"name": "torchvision.ImageFolder", "args": args, "batch_size": 8}))
    text = str(caught.value)
    assert "val_root" in text and "Compose" not in text and "\n" not in text


def test_torchvision_imagefolder_of_generated_pngs(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            color = (i * 40, 0, 200) if label == "cat" else (0, 200, i * 40)
            Image.new("RGB", (10, 10), color).save(tmp_path / "images" / label / f"{i}.png")
    built = build(
        exp(
            data={
                "name": "torchvision.ImageFolder",
                "args": {"root": str(tmp_path / "images"), "resize": 8},
                "batch_size": 4,
                "val_fraction": 0.25,
            },
            model={"name": "cnn", "args": {"in_channels": 3, "num_classes": 2, "width": 4}},
        )
    )
    assert built.train_data.num_samples == 9 and built.val_data.num_samples == 3
    assert built.train_data.tensors[0].shape[1:] == (3, 8, 8)


def test_missing_dataset_root_is_clear(tmp_path):
    with pytest.raises(ComponentError, match="folder .* does not exist"):
        build(exp(data={"name": "torchvision.ImageFolder", "args": {"root": str(tmp_path / "x")}}))


def test_mnist_absent_without_download_is_clear(tmp_path):
    with pytest.raises(ComponentError, match="could not be loaded"):
        build(exp(data={"name": "torchvision.MNIST", "args": {"root": str(tmp_path)}}))


def test_torchvision_resnet_has_body_and_head_groups():
    model = build_model("torchvision.resnet18", {"num_classes": 5})
    groups = parameter_groups(model)
    assert [name for name, _ in groups] == ["body", "fc"]
    assert groups[1][1] == list(model.fc.parameters())
    assert sum(p.numel() for _, ps in groups for p in ps) == sum(
        p.numel() for p in model.parameters()
    )


def test_unknown_torchvision_model_and_dataset():
    with pytest.raises(ComponentError, match="resnet18"):
        build_model("torchvision.resnet19", {})
    with pytest.raises(ComponentError, match="Unknown torchvision dataset"):
        build(exp(data={"name": "torchvision.MNISTT"}))


# --- groups -------------------------------------------------------------------------------


def test_sequential_groups_and_prefix_groups():
    model = build_model("mlp", {"in_features": 4, "hidden": [8, 8], "num_classes": 3})
    assert [name for name, _ in parameter_groups(model)] == ["1", "2", "3"]
    named = parameter_groups(model, ["1", "3"])
    # Parameters matching no prefix ("2.*") join the first group.
    assert [len(ps) for _, ps in named] == [4, 2]
    with pytest.raises(ComponentError, match="prefix 'head' matches no parameter"):
        parameter_groups(model, ["1", "head"])


def test_optimizer_gets_one_named_group_per_model_group():
    model = build_model("mlp", {"in_features": 4, "hidden": [8], "num_classes": 3})
    opt = make_optimizer("AdamW", {"weight_decay": 0.1}, parameter_groups(model), [1e-4, 1e-3])
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["name"] for g in opt.param_groups] == ["1", "2"]
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    assert opt.param_groups[0]["weight_decay"] == 0.1


# --- names and import paths ---------------------------------------------------------------


def test_unknown_names_list_what_is_available():
    with pytest.raises(ComponentError, match="Unknown optimizer 'sgdd'.*'sgd'.*adamw"):
        optimizer_class("sgdd")
    with pytest.raises(ComponentError, match="Unknown loss 'crossentropy'.*cross_entropy"):
        build_loss("crossentropy", {})
    with pytest.raises(ComponentError, match="Unknown model 'mlpp'.*mlp"):
        build_model("mlpp", {})
    with pytest.raises(ComponentError, match="Unknown dataset 'digits'"):
        build(exp(data={"name": "digits"}))


def test_bad_optimizer_args_are_caught_when_loading():
    with pytest.raises(ConfigError, match="optimizer.args.momentun: unknown argument"):
        exp(optimizer={"name": "sgd", "args": {"momentun": 0.9}})


COMPONENTS = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

def model(width=8):
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))

def pair(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])

def single(n=50):
    x = torch.randn(n, 3)
    return TensorDataset(x, (x[:, 1] > 0).long())

def not_a_model():
    return 42

def not_a_dataset():
    return [1, 2, 3]

class Loss(nn.Module):
    def __init__(self, weight=1.0):
        super().__init__()
        self.weight = weight
    def forward(self, out, y):
        return self.weight * nn.functional.cross_entropy(out, y)

class MyOpt(torch.optim.SGD):
    pass
"""


@pytest.fixture
def components(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_components.py").write_text(COMPONENTS)
    return tmp_path


def test_import_paths_for_every_component(components):
    built = build(
        exp(
            model={"name": "my_components:model", "args": {"width": 6}},
            data={"name": "my_components:pair", "batch_size": 8},
            loss={"name": "my_components:Loss", "args": {"weight": 2.0}},
            optimizer={"name": "my_components:MyOpt"},
        )
    )
    assert built.train_data.num_samples == 30 and built.val_data.num_samples == 10
    assert built.train_data.in_memory  # tensor datasets take the fast path
    assert type(built.optimizer).__name__ == "MyOpt"
    assert first_step(built) > 0
    single = build(
        exp(model={"name": "my_components:model"}, data={"name": "my_components:single"})
    )
    assert single.train_data.num_samples == 40 and single.val_data.num_samples == 10


@pytest.mark.parametrize(
    ("section", "name", "message"),
    [
        ("model", "my_components:not_a_model", "must return a torch.nn.Module, got int"),
        ("data", "my_components:not_a_dataset", "must return a torch Dataset"),
    ],
)
def test_import_paths_returning_the_wrong_thing(components, section, name, message):
    with pytest.raises(ComponentError, match=message):
        build(exp(**{section: {"name": name}}))


@pytest.mark.parametrize(
    ("section", "name", "message"),
    [
        ("model", "my_components:nope", "has no attribute 'nope'"),
        ("model", "no_such_module:f", "module 'no_such_module' does not import"),
        ("optimizer", "my_components:model", "must be a torch.optim.Optimizer subclass"),
        ("data", "my_components:nope", "has no attribute 'nope'"),
        ("loss", "no_such_module:f", "module 'no_such_module' does not import"),
    ],
)
def test_bad_import_paths_are_caught_when_loading(components, section, name, message):
    with pytest.raises(ConfigError, match=rf"{section}.name: .*{message}"):
        exp(**{section: {"name": name}})


# --- batches ------------------------------------------------------------------------------


def test_batch_indices_cover_every_sample_once_per_epoch():
    chunks = batch_indices(10, 4, seed=0, epoch=0, shuffle=True, drop_last=False)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert sorted(torch.cat(chunks).tolist()) == list(range(10))
    again = batch_indices(10, 4, seed=0, epoch=0, shuffle=True, drop_last=False)
    other = batch_indices(10, 4, seed=0, epoch=1, shuffle=True, drop_last=False)
    assert all(torch.equal(a, b) for a, b in zip(chunks, again, strict=True))
    assert not torch.equal(torch.cat(chunks), torch.cat(other))


def test_batch_indices_shard_like_distributed_sampler():
    shards = [
        torch.cat(
            batch_indices(
                10, 2, seed=0, epoch=0, shuffle=True, drop_last=False, rank=r, world_size=3
            )
        )
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded to 12 by wrapping around
    assert set(torch.cat(shards).tolist()) == set(range(10))


def test_in_memory_and_dataloader_paths_give_the_same_batches():
    data = TensorDataset(torch.randn(50, 3), torch.arange(50))
    kwargs = dict(batch_size=8, device=CPU, shuffle=True, seed=5, drop_last=True)
    fast = Batches(data, in_memory=True, **kwargs)
    slow = Batches(data, in_memory=False, **kwargs)
    for epoch in (0, 1):
        fast.set_epoch(epoch)
        slow.set_epoch(epoch)
        pairs = list(zip(fast, slow, strict=True))
        assert len(pairs) == 6  # 50 // 8, the ragged last batch dropped
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_cuda_asked_for_but_absent():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no usable CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


@pytest.mark.parametrize(
    ("n", "batch", "world", "shuffle"),
    [
        (50, 8, 1, True),
        (48, 8, 1, True),
        (7, 8, 1, True),
        (50, 8, 3, True),
        (50, 8, 3, False),
        (10, 4, 1, False),
    ],
)
def test_len_counts_the_batches_an_epoch_yields(n, batch, world, shuffle):
    data = TensorDataset(torch.randn(n, 2), torch.arange(n))
    for rank in range(world):
        batches = Batches(
            data,
            batch_size=batch,
            device=CPU,
            shuffle=shuffle,
            drop_last=shuffle,
            rank=rank,
            world_size=world,
        )
        assert len(batches) == len(list(batches)), (rank, len(batches))
