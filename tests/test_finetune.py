"""Fine-tuning: pretrained weights by file or torchvision name, a fresh head, train_bn."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from lrtool.cli import app
from lrtool.config import load_experiment, validate
from lrtool.errors import ComponentError, ConfigError
from lrtool.models import cached_weights_file, fit_state_dict, load_weights, torchvision_weights
from lrtool.probe import checked_build


def image_folder(root: Path, classes: tuple[str, ...] = ("ant", "bee", "cat")) -> Path:
    """A tiny ImageFolder of generated PNGs, one colour family per class."""
    from PIL import Image

    for c, label in enumerate(classes):
        (root / label).mkdir(parents=True)
        for i in range(4):
            colour = tuple((60 * c + 40 * i + k * 90) % 256 for k in range(3))
            Image.new("RGB", (12, 12), colour).save(root / label / f"{i}.png")
    return root


def finetune_yaml(tmp_path: Path, model_lines: str, train_lines: str = "epochs: 1") -> Path:
    """A 3-class ImageFolder experiment; `model_lines` are the keys under `model:`."""
    root = image_folder(tmp_path / "images")
    model = textwrap.indent(textwrap.dedent(model_lines), "  ")
    path = tmp_path / "ft.yaml"
    path.write_text(
        "device: cpu\n"
        f"model:\n{model}"
        "data:\n"
        "  name: torchvision.ImageFolder\n"
        f"  args: {{root: {root}, resize: 32}}\n"
        "  batch_size: 4\n"
        "  val_fraction: 0.25\n"
        "optimizer: {name: sgd, args: {momentum: 0.9}}\n"
        f"train: {{{train_lines}}}\n"
    )
    return path


@pytest.fixture(scope="module")
def resnet18_1000(tmp_path_factory) -> Path:
    """A 1000-class resnet18 state_dict, as a user would have saved from ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    return path


def _vit_tiny(num_classes: int) -> torch.nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8,
        num_classes=num_classes,
    )  # fmt: skip


# --- the head, family by family -----------------------------------------------------------

FAMILIES = {
    "shufflenet_v2_x0_5": "fc",
    "mobilenet_v3_small": "classifier.3",
    "mnasnet0_5": "classifier.1",
    "efficientnet_b0": "classifier.1",
    "squeezenet1_1": "classifier.1",  # a 1x1 convolution, not a Linear
    "vit": "heads.head",
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_head_of_another_class_count_is_replaced_fresh_and_the_rest_loaded(family):
    def make(n: int) -> torch.nn.Module:
        if family == "vit":
            return _vit_tiny(n)
        return torchvision.models.get_model(family, num_classes=n)

    torch.manual_seed(0)
    pretrained = make(1000).state_dict()
    torch.manual_seed(1)
    model = make(3)
    head = FAMILIES[family]
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(head + ".")}

    notes = fit_state_dict(model, pretrained, "pretrained.pth")

    assert notes == [f"head replaced: {head} 1000 → 3 classes, initialised fresh"]
    loaded = model.state_dict()
    for key, value in loaded.items():
        if key in fresh:
            assert torch.equal(value, fresh[key]), key  # the model's own fresh head
        else:
            assert torch.equal(value, pretrained[key]), key  # every other weight, exactly


def test_same_class_count_loads_everything_and_replaces_nothing():
    torch.manual_seed(0)
    state = torchvision.models.get_model("mobilenet_v3_small", num_classes=5).state_dict()
    model = torchvision.models.get_model("mobilenet_v3_small", num_classes=5)
    assert fit_state_dict(model, state, "f") == []
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_non_head_mismatch_lists_each_key_with_both_shapes():
    state = torchvision.models.get_model("mobilenet_v3_small", num_classes=1000).state_dict()
    state["features.1.block.1.fc1.weight"] = torch.zeros(4, 16, 1, 1)
    del state["features.0.1.running_var"]
    state["extra.weight"] = torch.zeros(2)
    model = torchvision.models.get_model("mobilenet_v3_small", num_classes=3)
    with pytest.raises(ComponentError) as err:
        fit_state_dict(model, state, "other.pth")
    text = str(err.value)
    assert "features.1.block.1.fc1.weight: file (4, 16, 1, 1), model (8, 16, 1, 1)" in text
    assert "other.pth does not fit the model" in text
    # Once no shape differs, the missing and extra keys are listed too.
    state["features.1.block.1.fc1.weight"] = torch.zeros(8, 16, 1, 1)
    with pytest.raises(ComponentError) as err:
        fit_state_dict(model, state, "other.pth")
    assert "missing from the file: features.0.1.running_var" in str(err.value)
    assert "not in the model: extra.weight" in str(err.value)


# --- by file, through build and check -----------------------------------------------------


def test_check_on_imagefolder_replaces_the_head_of_a_1000_class_file(tmp_path, resnet18_1000):
    path = finetune_yaml(
        tmp_path,
        f"""\
        name: torchvision.resnet18
        args: {{num_classes: 3}}
        weights: {resnet18_1000}
        """,
    )
    built = checked_build(load_experiment(path))
    assert built.model_notes == [
        f"weights: local state_dict {resnet18_1000}",
        "head replaced: fc 1000 → 3 classes, initialised fresh",
    ]
    saved = torch.load(resnet18_1000, weights_only=True)
    assert torch.equal(built.model.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert built.model.fc.out_features == 3

    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "head replaced: fc 1000 → 3 classes, initialised fresh" in result.output
    assert "weights: local state_dict" in result.output


def test_check_exits_2_naming_a_mismatched_key_and_both_shapes(tmp_path, resnet18_1000):
    state = torch.load(resnet18_1000, weights_only=True)
    state["layer2.0.bn1.weight"] = torch.ones(7)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    path = finetune_yaml(tmp_path, f"name: torchvision.resnet18\nweights: {bad}\n")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "layer2.0.bn1.weight: file (7,), model (128,)" in flat


def test_num_classes_left_out_is_taken_from_the_named_classes(tmp_path):
    path = finetune_yaml(tmp_path, "name: torchvision.squeezenet1_1\n")
    built = checked_build(load_experiment(path))
    assert built.model.classifier[1].out_channels == 3
    assert built.model_notes == ["num_classes: 3, from the data's classes"]


def test_more_outputs_than_named_classes_is_caught_at_check(tmp_path):
    path = finetune_yaml(tmp_path, "name: torchvision.squeezenet1_1\nargs: {num_classes: 1000}\n")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "model.args.num_classes is 1000, but data 'torchvision.ImageFolder' has 3" in flat
    assert "Set model.args.num_classes: 3" in flat


# --- by torchvision name, from the local cache only ---------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """TORCH_HOME in tmp_path, and any attempt at the network fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise AssertionError("lrtool tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch_home"


def test_weights_name_not_cached_says_which_file_to_fetch_and_where(offline):
    model = torchvision.models.squeezenet1_1(num_classes=3)
    member = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    expected = offline / "hub" / "checkpoints" / Path(member.url).name
    assert cached_weights_file(member) == expected
    with pytest.raises(ConfigError) as err:
        load_weights(model, "DEFAULT", model_name="torchvision.squeezenet1_1")
    text = str(err.value)
    assert member.url in text and str(expected) in text
    assert not expected.exists()


def test_weights_name_found_in_the_cache_is_loaded_with_a_new_head(offline):
    member = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    file = offline / "hub" / "checkpoints" / Path(member.url).name
    file.parent.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.squeezenet1_1(num_classes=1000).state_dict()
    torch.save(state, file)
    model = torchvision.models.squeezenet1_1(num_classes=3)
    for name in ("DEFAULT", "IMAGENET1K_V1", "SqueezeNet1_1_Weights.IMAGENET1K_V1"):
        notes = load_weights(model, name, model_name="torchvision.squeezenet1_1")
        assert notes == [
            f"weights: torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1 from {file}",
            "head replaced: classifier.1 1000 → 3 classes, initialised fresh",
        ]
    assert torch.equal(model.features[0].weight, state["features.0.weight"])


def test_unknown_weights_name_lists_the_builders_names():
    with pytest.raises(ConfigError, match="names are IMAGENET1K_V1, DEFAULT"):
        torchvision_weights("torchvision.resnet18", "IMAGENET1K_V9")
    with pytest.raises(ConfigError, match="only for torchvision"):
        load_weights(torch.nn.Linear(2, 2), "DEFAULT", model_name="mlp")


def test_a_file_path_is_never_taken_for_a_name(tmp_path):
    with pytest.raises(ComponentError, match="file .*weights.pth does not exist"):
        load_weights(torch.nn.Linear(2, 2), str(tmp_path / "weights.pth"), model_name="mlp")


def test_weights_key_validates(tmp_path):
    exp = validate({"model": {"name": "torchvision.resnet18", "weights": "DEFAULT"}})
    assert exp.model.weights == "DEFAULT"


# --- train_bn: the frozen phase as fastai runs it -----------------------------------------


@pytest.mark.parametrize("train_bn", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_frozen_groups_batchnorm_trains_only_under_train_bn(train_bn, optimizer):
    from lrtool.build import make_optimizer
    from lrtool.models import parameter_groups
    from lrtool.train import fit_one_cycle

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU())
    model = torch.nn.Sequential(body, torch.nn.Linear(8, 3))
    args = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = make_optimizer(optimizer, {**args, "weight_decay": 0.1}, parameter_groups(model))
    bn, linear = body[1], body[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    after_frozen: dict[str, torch.Tensor] = {}

    def on_epoch(record: dict) -> None:
        if record["phase"] == "frozen":
            after_frozen.update({n: p.detach().clone() for n, p in model.named_parameters()})
            assert bn.weight.requires_grad is train_bn and not linear.weight.requires_grad

    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen))] * 4
    result = fit_one_cycle(
        model, data, None, opt, torch.nn.CrossEntropyLoss(), 0.05,
        epochs=1, freeze_epochs=1, train_bn=train_bn, on_epoch=on_epoch,
    )  # fmt: skip
    assert [r["phase"] for r in result.epochs] == ["frozen", "main"]
    for name in ("0.1.weight", "0.1.bias"):  # the frozen group's BatchNorm
        assert torch.equal(before[name], after_frozen[name]) is not train_bn, name
    for name in ("0.0.weight", "0.0.bias"):  # the frozen group's Linear: frozen either way
        assert torch.equal(before[name], after_frozen[name]), name
    assert not torch.equal(before["1.weight"], after_frozen["1.weight"])  # the head trains
    # The head's schedule is the frozen cycle's, whatever joined its group for the while.
    assert result.history["lr"][:4] == pytest.approx([0.05, 0.0375, 0.0125, 0.0], abs=1e-6)
    assert all(p.requires_grad for p in model.parameters())


def test_resume_inside_the_frozen_phase_is_bit_identical_under_train_bn(tmp_path):
    """The norm layers join the head's group only for the while: checkpoints stay whole."""
    from lrtool.build import make_optimizer
    from lrtool.models import parameter_groups
    from lrtool.train import fit_one_cycle

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU())
        model = torch.nn.Sequential(body, torch.nn.Linear(8, 3))
        return model, make_optimizer("adamw", {"weight_decay": 0.1}, parameter_groups(model))

    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen))] * 4
    loss, kw = torch.nn.CrossEntropyLoss(), {"epochs": 2, "freeze_epochs": 2}
    whole, opt = make()
    fit_one_cycle(whole, data, None, opt, loss, 0.05, **kw)

    def stop(record: dict) -> None:
        if record["epoch"] == 1:  # inside the frozen phase, after its checkpoint
            raise KeyboardInterrupt

    model, opt = make()
    result = fit_one_cycle(
        model, data, None, opt, loss, 0.05, checkpoint=tmp_path, on_epoch=stop, **kw
    )
    assert result.stop_reason == "interrupted"
    model, opt = make()
    fit_one_cycle(model, data, None, opt, loss, 0.05, resume=tmp_path / "checkpoint.pt", **kw)
    for (name, a), b in zip(whole.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# --- smoke runs offline, and the shipped example -------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "experiments" / "finetune_imagefolder.yaml"


def test_smoke_stands_in_random_weights_for_an_uncached_name(offline):
    from lrtool.smoke import smoke_experiment

    exp = load_experiment(SHIPPED)
    assert exp.model.weights == "DEFAULT" and "num_classes" not in exp.model.args
    smoke_exp, note = smoke_experiment(exp, batches=2)
    assert smoke_exp.model.weights is None
    assert note is not None and "weights DEFAULT not cached" in note
    # Once the file is in torchvision's cache, the smoke run loads it like train does.
    file = cached_weights_file(torchvision.models.ResNet18_Weights.DEFAULT)
    file.parent.mkdir(parents=True)
    file.write_bytes(b"")
    smoke_exp, note = smoke_experiment(exp, batches=2)
    assert smoke_exp.model.weights == "DEFAULT"
    assert note is None or "weights" not in note


def test_smoke_keeps_a_local_weights_file_as_given(tmp_path):
    from lrtool.smoke import smoke_experiment

    exp = validate({"model": {"name": "torchvision.resnet18", "weights": str(tmp_path / "w.pth")}})
    assert smoke_experiment(exp, batches=2)[0].model.weights == str(tmp_path / "w.pth")


def test_train_bn_is_in_the_schema_default_true():
    assert validate({}).train.train_bn is True
    assert validate({"train": {"train_bn": False}}).train.train_bn is False


def test_the_example_imagefolder_script_writes_both_splits(tmp_path):
    import runpy
    import sys as _sys

    script = Path(__file__).resolve().parents[1] / "experiments" / "make_digits_imagefolder.py"
    argv = _sys.argv
    _sys.argv = [str(script), str(tmp_path / "images")]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        _sys.argv = argv
    pretrain = sorted(p.name for p in (tmp_path / "images" / "pretrain").iterdir())
    finetune = sorted(p.name for p in (tmp_path / "images" / "finetune").iterdir())
    assert pretrain == ["0", "1", "2", "3", "4", "5"] and finetune == ["6", "7", "8", "9"]
    from PIL import Image

    first = next((tmp_path / "images" / "finetune" / "9").glob("*.png"))
    assert Image.open(first).size == (32, 32) and Image.open(first).mode == "RGB"
    exp = load_experiment(
        Path(__file__).resolve().parents[1] / "experiments" / "pretrain_digits.yaml",
        [f"data.args.root={tmp_path / 'images' / 'pretrain'}"],
    )
    assert exp.data.args["root"].endswith("pretrain")


def test_pretrained_weights_beat_the_same_run_from_scratch(tmp_path: Path) -> None:
    """The fine-tuning benchmark's scarce case, one seed: a resnet pretrained on digits 0-5,
    fine-tuned on a fifth of digits 6-9 (frozen cycle, re-find, unfrozen cycle, --lr-max auto),
    against the same run without the weights."""
    from lrtool.bench.finetune import source, target
    from lrtool.workflows import run_train

    run_train(source(0), "auto", folder=tmp_path / "source")
    weights = str(tmp_path / "source" / "model.pt")
    recipe = {"freeze_epochs": 1, "cycles": 2}
    pretrained = run_train(target(0, weights, 0.8, **recipe), "auto").train
    scratch = run_train(target(0, None, 0.8, **recipe), "auto").train
    assert [c["frozen"] for c in pretrained.cycles] == [True, False]
    assert pretrained.final["accuracy"] > scratch.final["accuracy"] + 0.1
