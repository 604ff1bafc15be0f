"""The experiment file: its schema (one pydantic object), loading, and `--set` overrides.

Every problem in a file is reported at once, one bullet per YAML key, with the line it
stands on and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .suggest import DEFAULT_METHOD, SUGGESTERS


class Spec(BaseModel):
    """Base for every section: unknown keys are errors, so a typo cannot pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
        None, description="Optional local state_dict file loaded after building (pretrained)."
    )
    groups: list[str] | None = Field(
        None,
        description="Module-name prefixes, earliest layers first, that split the parameters "
        "into groups for discriminative learning rates. Parameters matching no prefix join the "
        "first group. Default: automatic (torchvision classifiers: body and head; nn.Sequential: "
        "its top-level children; else one group).",
    )

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
    batch_size: int = Field(64, ge=1, description="Mini-batch size (per process).")
    val_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share held out for validation when the source has no validation split; "
        "the split is seeded.",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers (DataLoader path only).")
    in_memory: bool | None = Field(
        None,
        description="Materialise the dataset as tensors on the device (fast path). Default: "
        "automatic (tabular sources, tensor datasets and torchvision datasets without "
        "augmentation that fit in memory).",
    )


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
    start_lr: float = Field(1e-7, gt=0, description="First learning rate of the sweep.")
    end_lr: float = Field(10.0, gt=0, description="Last learning rate of the sweep.")
    num_steps: int = Field(100, ge=2, description="Number of optimizer steps (mini-batches).")
    mode: Literal["exp", "linear"] = Field("exp", description="How the rate grows.")
    smoothing: float = Field(
        0.98, ge=0, lt=1, description="Beta of the bias-corrected EMA of the loss."
    )
    diverge_factor: float = Field(
        4.0, gt=1, description="Stop once the smoothed loss exceeds this times its best."
    )
    suggest: str = Field(DEFAULT_METHOD, description="Suggestion method shown as the default.")
    val_loss: bool = Field(
        False,
        description="Record the loss on fixed validation batches at each step (Smith's variant).",
    )
    val_batches: int = Field(
        4, ge=1, description="How many validation batches `val_loss` evaluates at each step."
    )
    grad_accum: int = Field(1, ge=1, description="Mini-batches accumulated per step.")
    precision: Precision = Field("fp32", description="fp32, bf16 or fp16 (autocast).")
    clip_grad_norm: float | None = Field(None, gt=0, description="Clip the gradient norm.")

    @field_validator("suggest")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in SUGGESTERS:
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(SUGGESTERS)}")
        return value


class TrainSpec(Spec):
    epochs: int = Field(5, ge=1, description="Epochs of the main one-cycle schedule.")
    lr_max: float | list[float] | str | None = Field(
        None,
        description="Peak rate: a number, a list (one per group), 'LOW:HIGH', ':HIGH' or 'auto'.",
    )
    pct_start: float = Field(0.25, gt=0, lt=1, description="Share of steps spent warming up.")
    div_factor: float = Field(25.0, gt=0, description="Initial rate = lr_max / div_factor.")
    final_div_factor: float = Field(
        1e5, gt=0, description="Final rate = initial rate / final_div_factor."
    )
    moms: tuple[float, float, float] = Field(
        (0.95, 0.85, 0.95),
        description="Momentum (SGD) or beta1 (Adam) at start, peak rate and end.",
    )
    anneal: Literal["cos", "linear"] = Field("cos", description="Annealing shape.")
    freeze_epochs: int = Field(
        0, ge=0, description="Epochs training only the last group before unfreezing."
    )
    grad_accum: int = Field(1, ge=1, description="Mini-batches accumulated per step.")
    precision: Precision = Field("fp32", description="fp32, bf16 or fp16 (autocast).")
    clip_grad_norm: float | None = Field(None, gt=0, description="Clip the gradient norm.")
    eval_every: Literal["epoch"] | int = Field(
        "epoch", description="Evaluate every epoch, or every N optimizer steps."
    )

    @field_validator("eval_every")
    @classmethod
    def _positive(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'epoch' or a number of steps >= 1")
        return value


class Experiment(Spec):
    """One experiment: what to build and how to sweep and train it."""

    name: str | None = Field(None, description="Run name; default: the file's stem.")
    seed: int = Field(0, description="Seeds the weights, the split and the data order.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps.")
    model: ModelSpec = Field(default_factory=lambda: ModelSpec.model_validate({}))
    data: DataSpec = Field(default_factory=DataSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"],
        description="accuracy for classification; [] for regression.",
    )
    find: FindSpec = Field(default_factory=FindSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output_dir: str = Field("runs", description="Where runs/<name>/<timestamp>-<command>/ go.")

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value


# --- YAML ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-7` as a float: YAML 1.1 wants a dot (`1.0e-7`), users don't."""


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


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with lrtool's number rules; a syntax error names the line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}.") from None


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML text to its 1-based line, for error messages."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    if root is not None:
        walk(root, ())
    return lines


# --- overrides ----------------------------------------------------------------------------


def set_key(raw: dict[str, Any], key: str, value: Any, *, origin: str = "--set") -> None:
    """Set a dotted key (`train.epochs`) in a raw config dict, creating sections as needed."""
    parts = key.strip().split(".")
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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `KEY=VALUE` overrides (dotted keys, YAML-typed values) to a raw config dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set expects KEY=VALUE with a dotted key (e.g. train.epochs=3), got {item!r}."
            )
        set_key(raw, key, parse_yaml(value, source=f"--set {key}"))
    return raw


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


def _describe(err: dict[str, Any]) -> str:
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (valid keys: {', '.join(valid)})"
    message = err["msg"]
    message = message.removeprefix("Value error, ")
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], dict):
        message += f" (got {err['input']!r})"
    return message


def format_validation_error(
    err: ValidationError, source: str, lines: dict[tuple[str, ...], int]
) -> str:
    problems = []
    for item in err.errors():
        # Literal/union errors carry the member tried ('str', 'int', ...) in loc: drop it.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = lines.get(tuple(str(p) for p in loc))
        at = f" (line {line})" if line else ""
        problems.append(f"  • {key}{at}: {_describe({**item, 'loc': loc})}")
    # One bullet per key: a union field reports each member; keep the first.
    unique = list(dict.fromkeys(problems))
    count = len(unique)
    noun = "problem" if count == 1 else "problems"
    return f"{source} is not a valid experiment ({count} {noun}):\n" + "\n".join(unique)


_UNION_TAGS = {"float", "int", "str", "list[float]", "literal['epoch']", "bool", "none"}


def validate(raw: Any, source: str = "<config>", text: str = "") -> Experiment:
    """Validate a raw mapping into an Experiment, reporting every problem at once."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} must be a YAML mapping of keys (model:, data:, ...), "
            f"got {type(raw).__name__}."
        )
    try:
        return Experiment.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, _key_lines(text))) from None


def load_experiment(
    path: str | Path,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
) -> Experiment:
    """Read, override and validate an experiment file. The name defaults to the file's stem.

    `overrides` are `--set KEY=VALUE` strings; `values` maps dotted keys to values already
    parsed (command-line flags such as `--num-steps`), applied last.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"Experiment file {path} {what}; pass the path of a YAML file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read experiment file {path}: {err}.") from None
    raw = parse_yaml(text, source=str(path))
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must be a YAML mapping of keys (model:, data:, ...), got {type(raw).__name__}."
        )
    raw = apply_overrides(dict(raw or {}), overrides or [])
    for key, value in (values or {}).items():
        if value is not None:
            set_key(raw, key, value, origin="option")
    exp = validate(raw, source=str(path), text=text)
    if exp.name is None:
        exp.name = path.stem
    _resolve_paths(exp, path.parent)
    return exp


def _resolve_paths(exp: Experiment, base: Path) -> None:
    """Relative file paths are read from the current folder; failing that, beside the YAML.

    So `lrtool find experiments/x.yaml` and `cd experiments && lrtool find x.yaml` both work.
    """

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            if not Path(value).exists() and (base / value).exists():
                return str(base / value)
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


def json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment file, for editors' autocompletion."""
    schema = Experiment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lrtool experiment (schema v1)"
    return schema
