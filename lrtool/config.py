"""The experiment file: its schema (one pydantic object), loading, and `--set` overrides.

Every problem in a file is reported at once, one bullet per YAML key, with the line it
stands on (or the flag that set it) and, for a misspelt key, the closest valid one. Loading
also resolves each component's name and matches its args against the signature they go to,
so `check` rejects what `train` would.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .suggest import DEFAULT_METHOD, SUGGESTERS


class Spec(BaseModel):
    """Base for every section: unknown keys are errors, so a typo cannot pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_mapping_is_left_out(cls, data: Any) -> Any:
        # YAML reads a key whose lines are all commented out (`find:` then `# num_steps: 50`)
        # as null. For a section or an `args:` mapping that means "nothing here": the
        # defaults, as if the key were left out. Any other null stays an error.
        if not isinstance(data, dict):
            return data
        mappings = {
            name
            for name, field in cls.model_fields.items()
            if name == "args"
            or (
                field.default_factory is not None
                and isinstance(field.annotation, type)
                and issubclass(field.annotation, Spec)
            )
        }
        return {k: v for k, v in data.items() if not (v is None and k in mappings)}


def _refuse_bool(kind: str) -> Any:
    """A before-validator: YAML's true/false are Python bools, and bool is a kind of int, so
    pydantic alone would read `num_steps: true` as 1."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {kind}, got {str(value).lower()}")
        return value

    return BeforeValidator(check)


def _whole_text(value: Any) -> Any:
    # "1e2" written in quotes is the whole number 100, as an unquoted 1e2 is (pydantic parses
    # only digits from text: "100" but not "1e2").
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
        if number.is_integer():
            return int(number)
    return value


# The number types of every key: no booleans, and no inf or nan (`.inf` is valid YAML).
Whole = Annotated[int, _refuse_bool("a whole number"), BeforeValidator(_whole_text)]
Number = Annotated[float, _refuse_bool("a number"), AllowInfNan(False)]


# The digits quickstart's MLP: an experiment file may leave out `model:` entirely.
_DEFAULT_MLP_ARGS = {"in_features": 64, "hidden": [128], "num_classes": 10}


class ModelSpec(Spec):
    name: str = Field(
        "mlp",
        description="Built-in name (mlp, cnn, linear), torchvision.<builder> "
        "(e.g. torchvision.resnet18) or 'package.module:callable' returning an nn.Module.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the model builder (default for mlp: the digits MLP, "
        "in_features 64, hidden [128], num_classes 10).",
    )
    weights: str | None = Field(
        None,
        description="Pretrained weights loaded after building: a local state_dict file, or a "
        "torchvision weights name (DEFAULT, IMAGENET1K_V1, ...) read from torchvision's cache "
        "($TORCH_HOME/hub/checkpoints; nothing is downloaded). A classifier head of another "
        "class count (num_classes) is replaced by a fresh one; every other key must match.",
    )
    groups: list[str] | None = Field(
        None,
        description="Module-name prefixes, earliest layers first, that split the parameters "
        "into groups for discriminative learning rates; each must match a parameter of its "
        "own, none twice. Parameters matching no prefix join the first group. Default: "
        "automatic (torchvision classifiers: body and head; nn.Sequential: its top-level "
        "children; else one group).",
    )

    @field_validator("weights")
    @classmethod
    def _some_weights(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                f"expected the path of a state_dict file or a torchvision weights name "
                f"(DEFAULT, IMAGENET1K_V1), got {value!r}; leave model.weights out (or null) "
                "to start from random weights"
            )
        return value

    @field_validator("groups")
    @classmethod
    def _distinct_groups(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError(
                "expected at least one module-name prefix, got an empty list; leave "
                "model.groups out (or null) for the automatic groups"
            )
        repeated = sorted({p for p in value if value.count(p) > 1})
        if repeated:
            raise ValueError(
                f"expected each prefix once (each names one group), got "
                f"{', '.join(repr(p) for p in repeated)} more than once in {value!r}; keep one "
                "of each"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_mlp_args(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name", "mlp") == "mlp" and "args" not in data:
            return {**data, "args": dict(_DEFAULT_MLP_ARGS)}
        return data


class DataSpec(Spec):
    name: str = Field(
        "sklearn.digits",
        description="sklearn.<loader> (digits, iris, breast_cancer, wine, diabetes, "
        "make_friedman1, ...), torchvision.<Dataset> (MNIST, FashionMNIST, CIFAR10, ImageFolder, "
        "FakeData, ...), csv, or 'package.module:callable' returning a Dataset or (train, val).",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments for the loader (root, download, path, target, standardize, ...).",
    )
    classes: list[str] | None = Field(
        None,
        description="Class names in label order (index 0 first). With CSV text labels it fixes "
        "which label gets which index (default: sorted). Filled in from the data when the "
        "source names its classes (CSV text labels, a torchvision dataset's classes), so every "
        "result file records the mapping.",
    )
    batch_size: Whole = Field(64, ge=1, description="Mini-batch size (per process).")
    val_fraction: Number = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share held out for validation when the source has no validation split; "
        "the split is seeded.",
    )
    num_workers: Whole = Field(0, ge=0, description="DataLoader workers (DataLoader path only).")
    in_memory: bool | None = Field(
        None,
        description="Materialise the dataset as tensors on the device (fast path). Default: "
        "automatic (tabular sources, tensor datasets and torchvision datasets without "
        "augmentation that fit in memory).",
    )

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, value: list[str] | None) -> list[str] | None:
        # Each name is one index: a name twice would leave an index no label maps to.
        if value is None:
            return value
        if not value:
            raise ValueError("expected at least one class name, or leave data.classes out")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(
                f"each class name stands for one index, got {', '.join(map(repr, repeated))} "
                "more than once; name each class once, in label order"
            )
        return value


class OptimizerSpec(Spec):
    name: str = Field(
        "sgd",
        description="Any torch.optim class, case-insensitive (sgd, adam, adamw, rmsprop, ...) "
        "or 'package.module:Class'.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments (the learning rate is set by lrtool)."
    )


class LossSpec(Spec):
    name: str = Field(
        "cross_entropy",
        description="cross_entropy, mse, l1, smooth_l1, bce_with_logits, nll or "
        "'package.module:callable'.",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")


Precision = Literal["fp32", "bf16", "fp16"]


class FindSpec(Spec):
    start_lr: Number = Field(1e-7, gt=0, description="First learning rate of the sweep.")
    # validate_default: a start_lr above the default end_lr is refused at load too.
    end_lr: Number = Field(
        10.0, gt=0, validate_default=True, description="Last learning rate of the sweep."
    )
    num_steps: Whole = Field(
        100,
        ge=2,
        le=1_000_000,  # a sweep of a million batches is already days; more is a typo
        description="Number of optimizer steps (mini-batches), at most 1,000,000.",
    )
    mode: Literal["exp", "linear"] = Field("exp", description="How the rate grows.")
    extend_decades: Number = Field(
        3.0,
        ge=0,
        le=12,
        description="When the loss neither fell nor blew up by end_lr (exp mode), the sweep goes "
        "on at the same pace for up to this many decades beyond it, until the loss blows up: "
        "the cliff it finds is what the suggestion is read from. 0 stops at end_lr. At most "
        "10x find.num_steps extra steps (1000 at least): a sweep over a sliver of a decade "
        "goes less far.",
    )
    smoothing: Number = Field(
        0.98, ge=0, lt=1, description="Beta of the bias-corrected EMA of the loss."
    )
    diverge_factor: Number = Field(
        4.0, gt=1, description="Stop once the smoothed loss exceeds this times its best."
    )
    suggest: str = Field(DEFAULT_METHOD, description="Suggestion method shown as the default.")
    val_loss: bool = Field(
        False,
        description="Record the loss on fixed validation batches at each step (Smith's variant).",
    )
    val_batches: Whole = Field(
        4, ge=1, description="How many validation batches `val_loss` evaluates at each step."
    )
    grad_accum: Whole = Field(1, ge=1, description="Mini-batches accumulated per step.")
    precision: Precision = Field("fp32", description="fp32, bf16 or fp16 (autocast).")
    clip_grad_norm: Number | None = Field(None, gt=0, description="Clip the gradient norm.")

    @field_validator("suggest")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in SUGGESTERS:
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(SUGGESTERS)}")
        return value

    @field_validator("end_lr")
    @classmethod
    def _rising_sweep(cls, value: float, info: ValidationInfo) -> float:
        # finder.sweep_rates refuses a sweep that does not rise; say so at load.
        start = info.data.get("start_lr")  # absent when start_lr itself is wrong
        if start is not None and not start < value:
            raise ValueError(
                f"expected a rate above find.start_lr ({start:g}), got {value:g}: the sweep "
                "raises the rate from find.start_lr to find.end_lr. Raise find.end_lr or lower "
                "find.start_lr"
            )
        return value


# --- train.lr_max -------------------------------------------------------------------------

LR_MAX_FORMS = (
    "a positive number (3e-3), a list of positive numbers, one per parameter group "
    "([1e-4, 1e-3], or 1e-4,1e-3 on the command line), 'LOW:HIGH' or ':HIGH' (1e-5:1e-3 "
    "spreads the rates over the groups; :1e-3 gives the last group 1e-3 and the others a "
    "tenth of it), or auto (run the range test first and train at its suggestion)"
)


@dataclass(frozen=True)
class RateSlice:
    """`LOW:HIGH` or `:HIGH`: peak rates spread over the parameter groups (fastai's slice)."""

    high: float
    low: float | None = None

    def __str__(self) -> str:
        return f"{'' if self.low is None else repr(self.low)}:{self.high!r}"


LrMaxValue = Literal["auto"] | float | list[float] | RateSlice


def _positive_number(value: Any) -> float | None:
    """A finite positive float from a number or a number written as text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


# torch holds a rate as a float32 in the optimizer's arithmetic: anything above overflows.
FLOAT32_MAX = 3.4028234663852886e38


def lr_max_value(value: Any) -> LrMaxValue | None:
    """`_lr_max_value`, and no rate above what a float32 holds."""
    parsed = _lr_max_value(value)
    if isinstance(parsed, RateSlice):
        rates = [parsed.high]
    elif isinstance(parsed, list):
        rates = parsed
    else:
        rates = [parsed] if isinstance(parsed, float) else []
    if any(r > FLOAT32_MAX for r in rates):
        raise ValueError(
            f"expected rates up to {FLOAT32_MAX:.3g} (the largest float32, which torch computes "
            f"with: a larger rate overflows at the first step); got {value!r}"
        )
    return parsed


def _lr_max_value(value: Any) -> LrMaxValue | None:
    """Parse a peak rate as written in `train.lr_max` or `--lr-max`; ValueError says why not.

    auto (any case), a number (also as text: "3e-3"), a list of numbers (a YAML list, or
    comma-separated text), 'LOW:HIGH' or ':HIGH'. How many rates a list must hold depends on
    the model's parameter groups, so that is checked when the model is built.
    """
    if value is None or isinstance(value, RateSlice) or value == "auto":
        return value

    def bad(detail: str = "") -> ValueError:
        return ValueError(f"expected {LR_MAX_FORMS}; got {value!r}{detail}")

    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "auto":
            return "auto"
        if ":" in text:
            low_text, _, high_text = text.partition(":")
            high = _positive_number(high_text)
            low = _positive_number(low_text) if low_text.strip() else None
            if high is None or ":" in high_text or (low_text.strip() and low is None):
                raise bad()
            if low is not None and low > high:
                raise bad(" (LOW is above HIGH: earlier groups take the smaller rate)")
            return RateSlice(high=high, low=low)
        if "," in text:
            value = text.strip("[]").split(",")
        else:
            rate = _positive_number(text)
            if rate is None:
                raise bad()
            return rate
    if isinstance(value, (list, tuple)):
        rates = [_positive_number(v) for v in value]
        if not rates or any(r is None for r in rates):
            raise bad()
        return [float(r) for r in rates]  # type: ignore[arg-type]
    rate = _positive_number(value)
    if rate is None:
        raise bad()
    return rate


LrMax = Annotated[
    LrMaxValue | None,
    PlainValidator(lr_max_value),
    # Files and JSON keep the text the user would write: "1e-05:0.001".
    PlainSerializer(lambda v: str(v) if isinstance(v, RateSlice) else v),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "auto"},
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
                {"type": "string", "pattern": r"^\s*[^:]*:[^:]+$"},
                {"type": "null"},
            ]
        }
    ),
]


class TrainSpec(Spec):
    epochs: Whole = Field(5, ge=1, description="Epochs of the main one-cycle schedule.")
    lr_max: LrMax = Field(
        None,
        description="Peak rate: a number, a list (one per group), 'LOW:HIGH', ':HIGH' or "
        "'auto' (any case; numbers may be written as text).",
    )
    pct_start: Number = Field(0.25, gt=0, lt=1, description="Share of steps spent warming up.")
    div_factor: Number = Field(25.0, gt=0, description="Initial rate = lr_max / div_factor.")
    final_div_factor: Number = Field(
        1e5, gt=0, description="Final rate = initial rate / final_div_factor."
    )
    moms: tuple[Number, Number, Number] = Field(
        (0.95, 0.85, 0.95),
        description="Momentum (SGD) or beta1 (Adam) at start, peak rate and end.",
    )
    anneal: Literal["cos", "linear"] = Field("cos", description="Annealing shape.")
    freeze_epochs: Whole = Field(
        0, ge=0, description="Epochs training only the last group before unfreezing."
    )
    train_bn: bool = Field(
        True,
        description="During freeze_epochs, keep training the weights and biases of the frozen "
        "groups' normalisation layers (BatchNorm, InstanceNorm, LayerNorm), as fastai's "
        "train_bn=True does; false freezes them with the rest.",
    )
    grad_accum: Whole = Field(1, ge=1, description="Mini-batches accumulated per step.")
    precision: Precision = Field("fp32", description="fp32, bf16 or fp16 (autocast).")
    clip_grad_norm: Number | None = Field(None, gt=0, description="Clip the gradient norm.")
    eval_every: Annotated[Literal["epoch"] | int, _refuse_bool("'epoch' or a whole number")] = (
        Field("epoch", description="Evaluate every epoch, or every N optimizer steps.")
    )
    cycles: Whole = Field(
        1,
        ge=1,
        description="One-cycle runs that share train.epochs; before each after the first, a "
        "re-find on the model so far sets its peak rate (with freeze_epochs, the frozen phase "
        "is cycle 1).",
    )
    group_ratio: Number = Field(
        100.0,
        ge=1,
        description="After unfreezing between cycles: the head's rate / the first group's, "
        "spread geometrically over the groups (fastai's slice(lr/100, lr)).",
    )

    @field_validator("moms")
    @classmethod
    def _momentum_cycle(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        # A momentum (or Adam's beta1) outside [0, 1) is meaningless; and train's
        # _check_settings wants the first and last equal (OneCycleLR goes there and back).
        if not all(0 <= m < 1 for m in value):
            raise ValueError(
                "expected three momentums (SGD) or beta1 values (Adam), each at least 0 and "
                f"below 1, such as [0.95, 0.85, 0.95]; got {list(value)!r}"
            )
        if value[0] != value[2]:
            raise ValueError(
                "expected three values (start, at the peak rate, end) whose first and last are "
                "equal, because torch's OneCycleLR cycles momentum from one value to another "
                f"and back; got {list(value)!r}"
            )
        return value

    @field_validator("eval_every")
    @classmethod
    def _positive(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'epoch' or a number of steps >= 1")
        return value

    @field_validator("cycles")
    @classmethod
    def _epochs_for_cycles(cls, cycles: int, info: ValidationInfo) -> int:
        # On the key itself (not the section): its line or flag is named, and it is reported
        # beside any other problem of the section. epochs/freeze_epochs come first in the
        # class, so info.data holds them unless they are wrong themselves.
        epochs, freeze = info.data.get("epochs"), info.data.get("freeze_epochs", 0)
        if epochs is None or freeze is None:
            return cycles
        # Every unfrozen cycle needs an epoch of train.epochs; the frozen phase is a cycle.
        unfrozen = cycles - (1 if freeze and cycles > 1 else 0)
        if epochs < unfrozen:
            raise ValueError(
                f"{cycles} cycles split train.epochs ({epochs}) and each unfrozen one needs "
                f"at least 1 epoch: raise train.epochs to {unfrozen} or lower train.cycles"
            )
        return cycles


# The seed goes to random (any int), numpy (below 2**32), torch (below 2**64) and data.py's
# batch order (torch again, as seed * 1_000_003 + epoch): below 2**32, all of them take it.
MAX_SEED = 2**32 - 1
# The longest run name: a folder name (255 bytes on most file systems), with room to spare.
MAX_NAME = 100
MAX_NAME_BYTES = 200


class Experiment(Spec):
    """One experiment: what to build and how to sweep and train it."""

    name: str | None = Field(
        None,
        description="Run name, one folder name (no / or \\): runs go to output_dir/<name>/. "
        "Default: the file's stem.",
    )
    seed: Whole = Field(
        0,
        description=f"Seeds the weights, the split and the data order; 0 to {MAX_SEED:,}.",
        json_schema_extra={"minimum": 0, "maximum": MAX_SEED},
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps.")
    model: ModelSpec = Field(default_factory=lambda: ModelSpec.model_validate({}))
    data: DataSpec = Field(default_factory=DataSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"],
        description="accuracy for classification (with bce_with_logits: logit > 0, and for "
        "multi-label targets the share of labels right); [] or [mae] for regression. Checked "
        "against the loss at load and against the first batch's shapes by the probe.",
    )
    find: FindSpec = Field(default_factory=FindSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output_dir: str = Field("runs", description="Where runs/<name>/<timestamp>-<command>/ go.")

    # The experiment file's folder: import paths are looked for there after the current
    # folder, as data paths are. Not a key: it is where the file is, not what it says.
    _folder: Path | None = PrivateAttr(None)

    @property
    def search_dirs(self) -> tuple[Path, ...]:
        """Folders searched for import-path components after the current one."""
        return () if self._folder is None else (self._folder,)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        # The run folder is output_dir/<name>/...: a path here would put it elsewhere.
        if value is not None and (
            not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0")
        ):
            raise ValueError(
                "expected one folder name (runs go to output_dir/<name>/<timestamp>-<command>/), "
                f"not empty, . or .., without / or \\; got {value!r}. To put runs elsewhere, "
                "set output_dir (or --out)"
            )
        return value

    @field_validator("name")
    @classmethod
    def _short_name(cls, value: str | None) -> str | None:
        # The name is a folder: file systems take 255 bytes at most, and a long name also
        # swamps tables and file names. Said here, not as "cannot write files" at the end.
        if value is not None and (len(value) > MAX_NAME or len(value.encode()) > MAX_NAME_BYTES):
            raise ValueError(
                f"expected at most {MAX_NAME} characters ({MAX_NAME_BYTES} bytes in UTF-8), as it "
                f"names the run's folder; got {len(value)} characters ({len(value.encode())} "
                f"bytes), starting {value[:20]!r}. Choose a shorter name"
            )
        return value

    @field_validator("output_dir")
    @classmethod
    def _some_folder(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                f"expected a folder (default: runs), got {value!r}; write . for the current folder"
            )
        # ~/runs means the home folder's runs, as in a shell, not a folder named `~`.
        return os.path.expanduser(value)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int) -> int:
        if not 0 <= value <= MAX_SEED:
            raise ValueError(
                f"expected a whole number from 0 to {MAX_SEED:,} (numpy's seed range), got {value}"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value


# --- YAML ---------------------------------------------------------------------------------


# Deeper nesting is a mistake (or an attack): PyYAML's composer recurses once per level and
# would hit Python's recursion limit near 1,000 levels with a RecursionError.
MAX_DEPTH = 100


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-7` as a float (YAML 1.1 wants a dot, `1.0e-7`; users don't)
    and refuses nesting deeper than MAX_DEPTH levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A tag's own conversion (`!!float abc`, `!!timestamp 2020-13-45`) raises ValueError
        # without a line: make it a YAML error at the node.
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as err:
            what = node.tag.rsplit(":", 1)[-1]
            if isinstance(node, yaml.ScalarNode):
                what += f" {node.value!r}"
            raise yaml.constructor.ConstructorError(
                None, None, f"{what}: {err}", node.start_mark
            ) from None


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node tree of a text; a syntax error (or too deep a nesting) names the line."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as err:
        raise _invalid_yaml(err, source) from None
    finally:
        loader.dispose()


def _invalid_yaml(err: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err)
    return ConfigError(f"{source} is not valid YAML{where}: {problem}.")


# Aliases (`*name`) let a few lines stand for a huge tree, or an endless one when an anchor
# refers to itself; an experiment holds a few hundred values.
MAX_VALUES = 100_000


def _children(
    path: tuple[str, ...], node: yaml.Node
) -> list[tuple[tuple[str, ...], yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        return [((*path, str(key.value)), key, value) for key, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return [((*path, str(i)), item, item) for i, item in enumerate(node.value)]
    return []


def _walk(root: yaml.Node | None) -> Iterator[tuple[tuple[str, ...], yaml.Node, yaml.Node]]:
    """Every mapping entry and list item below `root`, in file order: (key path, key node,
    value node); a list item is its own key. ValueError when aliases expand the tree beyond
    MAX_VALUES entries or MAX_DEPTH levels (no recursion: a self-referring anchor is safe)."""
    stack = [] if root is None else list(reversed(_children((), root)))
    count = 0
    while stack:
        path, key, value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ValueError(f"it holds more than {MAX_VALUES:,} values once aliases are expanded")
        if len(path) > MAX_DEPTH:
            raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep through aliases")
        yield path, key, value
        stack.extend(reversed(_children(path, value)))


def _duplicate_keys(root: yaml.Node | None) -> dict[tuple[str, ...], list[int]]:
    """Key paths written more than once in the same mapping, with every line they stand on."""
    seen: dict[tuple[str, ...], list[int]] = {}
    for path, key, _ in _walk(root):
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            seen.setdefault(path, []).append(key.start_mark.line + 1)
    # A list item's "key" is its index, never repeated; a key in two list items differs by index.
    return {path: lines for path, lines in seen.items() if len(lines) > 1}


def _lines_text(lines: list[int]) -> str:
    words = [str(n) for n in lines]
    return ", ".join(words[:-1]) + " and " + words[-1]


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with lrtool's number rules; a syntax error names the line.

    A key written twice in one mapping is an error naming both lines: YAML would silently
    keep the last one.
    """
    data, duplicates = _read_yaml(text, source)
    if duplicates:
        bullets = [
            f"  • {'.'.join(path)}: lines {_lines_text(lines)}"
            for path, lines in duplicates.items()
        ]
        raise ConfigError(
            f"{source} sets the same key more than once (YAML would silently keep the last "
            "one); keep one of each:\n" + "\n".join(bullets)
        )
    return data


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], list[int]]]:
    """The data of a YAML text, and the keys it writes more than once with their lines.

    A tag that names a Python object (`!!python/object/apply:...`) or a value its tag cannot
    take (`!!float abc`) is invalid YAML too, with its line: SafeLoader builds plain data only.
    """
    root = _compose(text, source)
    if root is None:
        return None, {}
    try:
        duplicates = _duplicate_keys(root)
    except ValueError as err:
        raise ConfigError(f"{source} cannot be used: {err}.") from None
    loader = _Loader("")
    try:
        return loader.construct_document(root), duplicates
    except yaml.YAMLError as err:
        raise _invalid_yaml(err, source) from None
    finally:
        loader.dispose()


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML text to its 1-based line, for error messages."""
    try:
        return {path: key.start_mark.line + 1 for path, key, _ in _walk(_compose(text, ""))}
    except (ConfigError, ValueError):
        return {}


# --- overrides ----------------------------------------------------------------------------


def set_key(raw: dict[str, Any], key: str, value: Any, *, origin: str = "--set") -> None:
    """Set a dotted key (`train.epochs`) in a raw config dict, creating sections as needed."""
    parts = key.strip().split(".")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(
            f"{origin} {key[:40]}...: the key is {len(parts)} levels deep; experiment keys are "
            f"at most {MAX_DEPTH} (e.g. train.epochs is 2)."
        )
    if any(not part for part in parts):
        raise ConfigError(f"{origin} {key}: a dotted key has a name between every two dots.")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            done = ".".join(parts[: i + 1])
            raise ConfigError(f"{origin} {key}: {done} is not a section, so it has no keys.")
        node = child
    node[parts[-1]] = value


def apply_overrides(
    raw: dict[str, Any],
    overrides: list[str],
    origins: dict[tuple[str, ...], str] | None = None,
    source: str = "--set",
) -> dict[str, Any]:
    """Apply `KEY=VALUE` overrides (dotted keys, YAML-typed values) to a raw config dict.

    `origins`, when given, records where each key's value came from (for error messages):
    `--set KEY` from the command line, `SOURCE['KEY']` for any other `source` (the Python
    API's `overrides`).
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{source} expects KEY=VALUE with a dotted key (e.g. train.epochs=3), got {item!r}."
            )
        key = key.strip()
        label = f"--set {key}" if source == "--set" else f"{source}[{key!r}]"
        set_key(raw, key, parse_yaml(value, source=label), origin=source)
        if origins is not None:
            origins[tuple(key.split("."))] = label
    return raw


def flag_name(key: str) -> str:
    """The command-line option that sets a dotted key: train.lr_max -> --lr-max."""
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")


# --- loading ------------------------------------------------------------------------------


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The valid keys of the section that `loc` (a pydantic error location) points into."""
    model: type[BaseModel] = Experiment
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


# pydantic's error types for a number outside a bound.
_BOUND_KINDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _describe(err: dict[str, Any]) -> str:
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (valid keys: {', '.join(valid)})"
    message = err["msg"]
    message = message.removeprefix("Value error, ")
    value = err.get("input")
    if kind in _BOUND_KINDS and isinstance(value, float) and math.isnan(value):
        # pydantic says "less than or equal to 12" of nan, which is not the problem.
        return f"expected a number, got nan ({message[0].lower() + message[1:]})"
    # Our own validators already say what they got; pydantic's built-in messages do not.
    if (
        "input" in err
        and kind not in ("missing",)
        and not isinstance(err["input"], dict)
        and "got " not in message
    ):
        message += f" (got {err['input']!r})"
    return message


# One problem: the key path it is about (YAML key names) and what is wrong there.
Problem = tuple[tuple[str, ...], str]


def _schema_problems(err: ValidationError) -> list[Problem]:
    problems = []
    for item in err.errors():
        # Literal/union errors carry the member tried ('str', 'int', ...) in loc: drop it.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        if loc[-1:] == ("[key]",):
            # A key that is not text (`7: 1` in model.args): name the mapping, not "7.[key]".
            key = item["input"]
            problems.append(
                (
                    tuple(str(p) for p in loc[:-2]),
                    f"expected names (text) as keys, got {key!r} ({type(key).__name__}); "
                    f"write the argument's name, or quote it ('{key}') if that is its name",
                )
            )
            continue
        problems.append((tuple(str(p) for p in loc), _describe({**item, "loc": loc})))
    return problems


def _nearest(loc: tuple[str, ...], table: dict[tuple[str, ...], Any]) -> Any:
    """The entry of the longest prefix of `loc` in `table` (the key itself first)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in table:
            return table[loc[:n]]
    return None


def format_problems(
    problems: list[Problem],
    source: str,
    lines: dict[tuple[str, ...], int],
    origins: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One bullet per key path: where its value came from (a YAML line, a flag), what is wrong."""
    bullets: dict[tuple[str, ...], str] = {}
    for loc, message in problems:
        if loc in bullets:
            continue  # a union field reports each member it tried; keep the first
        origin = _nearest(loc, origins or {})
        line = None if origin else _nearest(loc, lines)
        at = f" (from {origin})" if origin else f" (line {line})" if line else ""
        bullets[loc] = f"  • {'.'.join(loc) or '(top level)'}{at}: {message}"
    count = len(bullets)
    noun = "problem" if count == 1 else "problems"
    return f"{source} is not a valid experiment ({count} {noun}):\n" + "\n".join(bullets.values())


def format_validation_error(
    err: ValidationError, source: str, lines: dict[tuple[str, ...], int]
) -> str:
    return format_problems(_schema_problems(err), source, lines)


_UNION_TAGS = {"float", "int", "str", "list[float]", "literal['epoch']", "bool", "none"}


def _section(raw: dict[str, Any], key: str, default: str) -> tuple[str, dict[str, Any]] | None:
    """A component section's name and args as written, or None when the schema will object."""
    section = raw.get(key) or {}
    if not isinstance(section, dict):
        return None
    name, args = section.get("name", default), section.get("args", {})
    if not isinstance(name, str) or not isinstance(args, dict):
        return None
    if not all(isinstance(key, str) for key in args):
        return None  # the schema names the key that is not text
    return name, args


_Outcome = tuple[dict[str, Any] | None, list[Problem]]  # args to keep (None: none), problems


def _arg_problems(section: str, found: list[tuple[str | None, str]]) -> list[Problem]:
    """check_args' findings as problems under `section`.args."""
    return [
        ((section, "args", key) if key else (section, "args"), message) for key, message in found
    ]


def _not_finite(value: Any) -> bool:
    """Whether a value is inf or nan, or holds one in a list, tuple or mapping (Adam's betas)."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_not_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_not_finite(v) for v in value.values())
    return False


def _optimizer_outcome(name: str, args: dict[str, Any], search_dirs: tuple[Path, ...]) -> _Outcome:
    """The optimizer's args (kept only when all is well) and its problems."""
    from .errors import ComponentError
    from .registry import check_args, optimizer_class

    problems: list[Problem] = []
    if "lr" in args:
        problems.append(
            (
                ("optimizer", "args", "lr"),
                "lrtool sets the learning rate: find sweeps it from find.start_lr to "
                "find.end_lr and train peaks at train.lr_max; remove it here",
            )
        )
    try:
        cls = optimizer_class(name, search_dirs)
    except ComponentError as err:
        return None, [*problems, (("optimizer", "name"), str(err))]
    kwargs, found = check_args(
        cls, {k: v for k, v in args.items() if k != "lr"}, skip=1, hidden={"lr"}
    )
    problems += _arg_problems("optimizer", found)
    if found:
        return None, problems
    # A number that is not one ("abc" for momentum) would reach torch's comparison and come
    # back as "'<' not supported between 'str' and 'float'", naming no key.
    from .registry import takes_number

    texts = [
        (("optimizer", "args", key), f"expected a number, got {value!r}")
        for key, value in kwargs.items()
        if isinstance(value, str) and takes_number(cls, key, skip=1)
    ]
    if texts:
        return None, problems + texts
    # torch checks `weight_decay < 0`, which nan passes: the first step would spread nan.
    not_finite = [
        (("optimizer", "args", key), f"expected finite numbers, got {value!r}")
        for key, value in kwargs.items()
        if _not_finite(value)
    ]
    if not_finite:
        return None, problems + not_finite
    # Let the optimizer judge the values too (a negative momentum, a beta of 1.5),
    # on a throwaway parameter: what `train` would meet at its first line.
    import torch

    try:
        cls([torch.zeros(1, requires_grad=True)], **kwargs)
    except Exception as err:
        problems.append((("optimizer", "args"), f"{cls.__name__} refuses them: {err}"))
    return kwargs, problems


def _loss_outcome(name: str, args: dict[str, Any], search_dirs: tuple[Path, ...]) -> _Outcome:
    from .errors import ComponentError
    from .registry import check_args, loss_factory

    try:
        factory = loss_factory(name, search_dirs)
    except ComponentError as err:
        return None, [(("loss", "name"), str(err))]
    if isinstance(factory, type):
        kwargs, found = check_args(factory, args)
    else:  # a function: (output, target, **args)
        kwargs, found = check_args(factory, args, skip=2, required=False)
    return kwargs, _arg_problems("loss", found)


def _model_outcome(
    name: str, args: dict[str, Any], search_dirs: tuple[Path, ...], classes_known: bool = False
) -> _Outcome:
    """`classes_known`: a classification on a source that names its classes (a CSV's text
    labels, a torchvision dataset, data.classes): the build fills in num_classes."""
    from .errors import ComponentError
    from .models import model_factory
    from .registry import check_args

    try:
        factory = model_factory(name, search_dirs)
    except ComponentError as err:
        return None, [(("model", "name"), str(err))]
    kwargs, found = check_args(factory, args, filled_later={"num_classes"} if classes_known else ())
    return kwargs, _arg_problems("model", found)


def _data_outcome(name: str, args: dict[str, Any], search_dirs: tuple[Path, ...]) -> _Outcome:
    """A dataset given as an import path (built-in names are checked by data.py's schema)."""
    from .errors import ComponentError
    from .registry import check_args, import_object

    try:
        factory = import_object(name, what="dataset", search_dirs=search_dirs)
    except ComponentError as err:
        return None, [(("data", "name"), str(err))]
    kwargs, found = check_args(factory, args)
    return kwargs, _arg_problems("data", found)


def _metric_problems(metrics: list[Any], loss_name: str | None) -> list[Problem]:
    """Unknown or repeated metric names, and metrics that cannot fit the loss's targets.

    What needs the data's shapes (accuracy on multi-label targets, mae on a custom loss) is
    checked by the probe on the first batch (`registry.metric_mismatch`).
    """
    from .registry import CLASSIFICATION_LOSSES, LOSSES, METRICS

    problems: list[Problem] = []
    for i, name in enumerate(metrics):
        if isinstance(name, str) and name not in METRICS:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                (("metrics", str(i)), f"unknown metric{hint} (valid: {', '.join(METRICS)})")
            )
        elif name in metrics[:i]:
            problems.append((("metrics", str(i)), f"{name} is listed twice; keep one"))
    regression = loss_name in LOSSES and loss_name not in CLASSIFICATION_LOSSES
    if "accuracy" in metrics and regression and loss_name != "bce_with_logits":
        problems.append(
            (
                ("metrics",),
                f"accuracy needs class targets, but loss {loss_name!r} is a regression "
                "loss. Use metrics: [] or [mae].",
            )
        )
    if "mae" in metrics and (loss_name in CLASSIFICATION_LOSSES or loss_name == "bce_with_logits"):
        trains = (
            "logits against 0/1 labels"
            if loss_name == "bce_with_logits"
            else "class scores against class indices"
        )
        problems.append(
            (
                ("metrics",),
                f"mae (mean absolute error) compares predictions with real-valued targets, but "
                f"loss {loss_name!r} trains {trains}, where it means nothing. Use metrics: "
                "[accuracy] (or []), or a regression loss (mse, l1, smooth_l1, huber).",
            )
        )
    return problems


def _classes_known(raw: dict[str, Any], loss: Any, data: Any) -> bool:
    """The build takes num_classes from the data (build.model_arguments) for these."""
    from .registry import CLASSIFICATION_LOSSES

    if not loss or loss[0] not in CLASSIFICATION_LOSSES or not data:
        return False
    named = isinstance(raw.get("data"), dict) and bool(raw["data"].get("classes"))
    return named or data[0] == "csv" or data[0].startswith("torchvision.")


def _component_problems(
    raw: dict[str, Any], search_dirs: tuple[Path, ...]
) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Resolve each component's name and match its args against the factory's signature.

    Returns the args to keep (numbers written as text turned into numbers where the factory
    takes a number) by section, and the problems. Names given as import paths are imported
    here, which runs their module's code: an experiment file is as trusted as a script.
    """
    from .registry import is_import_path

    optimizer = _section(raw, "optimizer", "sgd")
    loss = _section(raw, "loss", "cross_entropy")
    model = _section(raw, "model", "mlp")
    if model and model[0] == "mlp" and "args" not in (raw.get("model") or {}):
        model = ("mlp", dict(_DEFAULT_MLP_ARGS))
    data = _section(raw, "data", "sklearn.digits")
    outcomes = {
        "optimizer": _optimizer_outcome(*optimizer, search_dirs) if optimizer else None,
        "loss": _loss_outcome(*loss, search_dirs) if loss else None,
        "model": _model_outcome(*model, search_dirs, _classes_known(raw, loss, data))
        if model
        else None,
        "data": _data_outcome(*data, search_dirs) if data and is_import_path(data[0]) else None,
    }
    fixed: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    if data and not is_import_path(data[0]):
        from .data import own_arg_problems

        problems += _arg_problems("data", own_arg_problems(*data))
    for section, outcome in outcomes.items():
        if outcome is not None:
            kwargs, found = outcome
            problems += found
            if kwargs is not None:
                fixed[section] = kwargs
    metrics = raw.get("metrics", ["accuracy"])
    if isinstance(metrics, list):
        problems += _metric_problems(metrics, loss[0] if loss else None)
    return fixed, problems


def validate(
    raw: Any,
    source: str = "<config>",
    text: str = "",
    *,
    origins: dict[tuple[str, ...], str] | None = None,
    folder: Path | None = None,
    duplicates: dict[tuple[str, ...], list[int]] | None = None,
) -> Experiment:
    """Validate a raw mapping into an Experiment, reporting every problem at once.

    The schema checks each key; then each component's name is resolved and its args are
    matched against its signature, so `check` rejects what `train` would. `text` (the YAML)
    gives the line of each key; `origins` names the flag or `--set` that set a key instead;
    `folder` is where import paths are looked for after the current folder; `duplicates`
    are the keys the file writes more than once, with their lines, reported with the rest.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} must be a YAML mapping of keys (model:, data:, ...), "
            f"got {type(raw).__name__}."
        )
    problems: list[Problem] = [
        (path, f"written on lines {_lines_text(lines)}; YAML would silently keep the last one")
        for path, lines in (duplicates or {}).items()
    ]
    exp = None
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        problems += _schema_problems(err)
    search_dirs = () if folder is None else (folder,)
    fixed, found = _component_problems(raw, search_dirs)
    problems += found
    if problems or exp is None:
        raise ConfigError(format_problems(problems, source, _key_lines(text), origins))
    for section, args in fixed.items():
        getattr(exp, section).args = args
    exp._folder = folder
    return exp


def load_experiment(
    path: str | Path,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
    values_from: Callable[[str], str] = flag_name,
    overrides_source: str = "--set",
) -> Experiment:
    """Read, override and validate an experiment file. The name defaults to the file's stem.

    `overrides` are `--set KEY=VALUE` strings; `values` maps dotted keys to values already
    parsed (command-line flags such as `--num-steps`), applied last. `values_from(key)` names
    where a value came from in error messages (default: the flag, --num-steps).
    """
    path = Path(path)
    if path.is_dir() or not path.exists():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"Experiment file {path} {what}; pass the path of a YAML file.")
    text = _read_text(path)
    raw, duplicates = _read_yaml(text, source=str(path))  # reported with the other problems
    if raw is None:
        raise ConfigError(
            f"Experiment file {path} is empty (no keys, only blank lines or comments). An empty "
            "file is almost always a mistake: a wrong path or an unsaved editor. Write the keys "
            "you mean, or `{}` to run every default (the digits MLP) on purpose."
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must be a YAML mapping of keys (model:, data:, ...), got {type(raw).__name__}."
        )
    # Beside the file for a regular file; a pipe's folder (/dev/fd) holds nothing of the user's.
    base = path.parent if path.is_file() else Path.cwd()
    origins: dict[tuple[str, ...], str] = {}
    raw = apply_overrides(dict(raw), overrides or [], origins, overrides_source)
    for key, value in (values or {}).items():
        if value is not None:
            set_key(raw, key, value, origin=values_from(key))
            origins[tuple(key.split("."))] = values_from(key)
    exp = validate(
        raw,
        source=str(path),
        text=text,
        origins=origins,
        folder=base.resolve(),
        duplicates=duplicates,
    )
    if exp.name is None:
        try:
            exp.name = path.stem
        except ValidationError:  # a file named `..yaml`: its stem is `.`
            raise ConfigError(
                f"{path}: the run name defaults to the file's stem, {path.stem!r}, which cannot "
                "name a run folder. Set name: in the file (or --set name=NAME)."
            ) from None
    _resolve_paths(exp, base)
    return exp


# An experiment file is a few kilobytes; a pipe or device is read up to this much.
MAX_FILE_BYTES = 10 * 1024**2


def _read_text(path: Path) -> str:
    """The file's text. A pipe (`lrtool check <(...)`, /dev/stdin) is read too, up to
    MAX_FILE_BYTES, so a device that never ends (/dev/zero) cannot hang the command."""
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(
                f"Experiment file {path} is not a regular file and gives more than "
                f"{MAX_FILE_BYTES // 1024**2} MiB; pass the path of a YAML file."
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read experiment file {path}: {err}.") from None


def _resolve_paths(exp: Experiment, base: Path) -> None:
    """Relative file paths are read from the current folder; failing that, beside the YAML.

    So `lrtool find experiments/x.yaml` and `cd experiments && lrtool find x.yaml` both work.
    """

    def fix(value: Any) -> Any:
        # Made absolute once found, so config.yaml and the checkpoint name the file itself:
        # `train --resume` from another folder then compares the same path.
        if isinstance(value, str) and value and not Path(value).is_absolute():
            if Path(value).exists():
                return str(Path(value).resolve())
            if (base / value).exists():
                return str((base / value).resolve())
        return value

    for key in ("path", "root"):
        if key in exp.data.args:
            exp.data.args[key] = fix(exp.data.args[key])
    exp.model.weights = fix(exp.model.weights)


def resolved(exp: Experiment) -> dict[str, Any]:
    """The experiment as plain data (JSON/YAML-safe), every default filled in."""
    return exp.model_dump(mode="json")


def dump_yaml(exp: Experiment) -> str:
    return yaml.safe_dump(resolved(exp), sort_keys=False)


# What lrtool reads as a number when it is written as text ("3e-3", " 32 ").
NUMBER_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
# The same, held to a lower bound of 0: no minus sign; above 0: a non-zero digit before any
# exponent too. Other bounds are not checked on text (`lrtool check` checks them all).
NON_NEGATIVE_TEXT = r"^\s*\+?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
POSITIVE_TEXT = r"^\s*\+?(?=[^eE]*[1-9])(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
# pydantic writes a bound on an Annotated type in its own words; JSON Schema's are these.
_BOUND_WORDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum",
                "le": "maximum"}  # fmt: skip


def _text_pattern(number: dict[str, Any]) -> str:
    """The pattern of a number written as text, as far as a pattern can hold its bound."""
    low, above = number.get("minimum"), number.get("exclusiveMinimum")
    if (above is not None and above >= 0) or (low is not None and low > 0):
        return POSITIVE_TEXT
    if low is not None and low >= 0:
        return NON_NEGATIVE_TEXT
    return NUMBER_TEXT


def _as_lrtool_reads(node: Any) -> Any:
    """The schema pydantic writes, widened to what lrtool accepts: numbers written as text
    (PyYAML reads 1e-3 without a dot as text, and lrtool takes it), and `auto` in any case.
    An editor must not flag a file `lrtool check` accepts."""
    if isinstance(node, list):
        return [_as_lrtool_reads(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _as_lrtool_reads(value) for key, value in node.items()}
    if node.get("const") == "auto":
        return {**{k: v for k, v in node.items() if k != "const"},
                "type": "string", "pattern": "^\\s*[Aa][Uu][Tt][Oo]\\s*$"}  # fmt: skip
    if node.get("type") in ("number", "integer"):
        kept = ("title", "description", "default")
        number = {_BOUND_WORDS.get(k, k): v for k, v in node.items() if k not in kept}
        return {
            **{k: node[k] for k in kept if k in node},
            "anyOf": [number, {"type": "string", "pattern": _text_pattern(number)}],
        }
    return node


def json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment file, for editors' autocompletion."""
    pydantic = Experiment.model_json_schema()
    # eval_every's whole number is checked by a validator pydantic cannot describe: >= 1.
    for option in pydantic["$defs"]["TrainSpec"]["properties"]["eval_every"]["anyOf"]:
        if option.get("type") == "integer":
            option["minimum"] = 1
    schema = _as_lrtool_reads(pydantic)
    # A section or `args:` whose lines are all commented out is null, read as left out.
    for name, prop in schema["properties"].items():
        if "$ref" in prop:
            schema["properties"][name] = {"anyOf": [prop, {"type": "null"}]}
    for spec in schema["$defs"].values():
        args = spec.get("properties", {}).get("args")
        if args is not None and args.get("type") == "object":
            args["type"] = ["object", "null"]
    # Only the names lrtool knows (checked by FindSpec's validator).
    schema["$defs"]["FindSpec"]["properties"]["suggest"]["enum"] = list(SUGGESTERS)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lrtool experiment (schema v1)"
    return schema
