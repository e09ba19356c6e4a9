"""A run's configuration, defined once: RunConfig's fields are the CLI's flags, a grid file's keys and the
run notebook's parameters, with their types and domains. The benchmark protocol is the default; every
shortening is visible in the run's name."""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import PurePosixPath
from typing import Any

from .. import losses
from ..data import DATASETS, IMAGE_PREPS
from ..models import HEADS, available_models
from .pack import FIRST_CONV_FORMS

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a protocol's name: one line, a folder's name anywhere

# the fields that define a run's protocol: a value other than the default is written into its directory name
BUDGET_SHORT = {"batch_size": "bs", "lr": "lr", "momentum": "mom", "weight_decay": "wd"}


def _f(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
       exclusive: bool = False, maximum: int | None = None) -> Any:
    """A field with what the CLI, grid validation and error messages need to know about it."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "exclusive": exclusive, "maximum": maximum}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _required(help: str) -> Any:
    return dataclasses.field(metadata={"help": help, "choices": None, "minimum": None, "exclusive": False})


@dataclasses.dataclass
class RunConfig:
    arch: str = _required("architecture (lossnb.models)")
    dataset: str = _required("data set")
    loss: str = _required("loss name (lossnb losses lists them), or a loss file: path/custom_loss.py[:function]")
    head: str = _f("linear", "classifier head: linear, or cosine (logits = cos θ; the angular-margin losses need it)",
                   choices=HEADS)
    # at most 2**32 - 1, numpy's and most libraries' range (torch takes up to 2**64 - 1; an epoch's generator
    # seeds with seed * 100_003 + epoch, which must stay below it)
    seed: int = _f(0, "seed of initialisation, data order and augmentation", minimum=0, maximum=2**32 - 1)
    loss_params: dict = _f({}, "loss hyperparameters")
    epochs: int = _f(200, "epochs (the cosine schedule spans them all)", minimum=1)
    batch_size: int = _f(128, "training batch size (the last partial batch is kept)", minimum=1)
    lr: float = _f(0.1, "SGD learning rate", minimum=0, exclusive=True)
    momentum: float = _f(0.9, "SGD momentum", minimum=0, maximum=1)  # above 1 every step grows: it diverges
    weight_decay: float = _f(5e-4, "SGD weight decay", minimum=0)
    nesterov: bool = _f(False, "Nesterov momentum")
    train_subset: typing.Optional[int] = _f(None, "train on a fixed random subset of N images", minimum=1)
    val_size: typing.Optional[int] = _f(None, "evaluate on N held-out training images, not on test", minimum=1)
    image_prep: str = _f("pad", "how images become 32x32: " + "; ".join(f"{k}: {v}" for k, v in IMAGE_PREPS.items()),
                         choices=tuple(IMAGE_PREPS))
    protocol: str = _f("bench", "protocol name, first part of the run directory")
    precision: str = _f("auto", "bf16 autocast or fp32 (auto: bf16 on CUDA; on a CPU the faster, measured)",
                        choices=("auto", "bf16", "fp32"))
    channels_last: str = _f("auto", "channels_last memory format (auto: on CUDA; on a CPU the faster, measured)",
                            choices=("auto", "on", "off"))
    first_conv: str = _f("auto", "a pack's first convolution: grouped, or one dense convolution with a block-diagonal "
                         "weight, the same function (auto: grouped on CUDA; on a CPU the faster, measured)",
                         choices=("auto", *FIRST_CONV_FORMS))
    compile: bool = _f(False, "torch.compile the model (no CUDA graphs then)")
    cuda_graphs: str = _f("auto", "capture each training step in a CUDA graph (auto: on CUDA, for stateless losses)",
                          choices=("auto", "on", "off"))
    device: str = _f("auto", "cpu, cuda, cuda:N or auto")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            setattr(self, field.name, _checked(field, getattr(self, field.name)))
        if self.arch not in available_models():
            raise ValueError(f"unknown arch {self.arch!r}; choose one of: {', '.join(available_models())}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
        self.loss_params = losses.registry.resolve_hparams(self.loss, dict(self.loss_params))
        if losses.spec(self.loss).logits == "cosine" and self.head != "cosine":
            raise ValueError(f"loss {self.loss!r} takes cosine logits and head={self.head!r}; set head: cosine")
        # a loss file is named by its stem and hash, fixed here: a file edited later is another run
        self._loss_tag = losses.spec(self.loss).name if losses.is_loss_file(self.loss) else None
        if not SAFE_NAME.fullmatch(self.protocol):
            raise ValueError(f"protocol name {self.protocol!r} must be one word of letters, digits and . _ + -, "
                             "starting with a letter or digit (it names a folder; a hidden one no table reads)")
        if self.loss_tag().startswith("."):
            raise ValueError(f"loss file {self.loss!r}: a name starting with '.' makes a hidden folder, which no "
                             "table reads; rename the file")
        _check_device_name(self.device)

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        """From a serialized config (config.json's 'run', a grid's expansion); unknown keys are refused, and
        settings added since a record was written take their defaults (which are what it ran with)."""
        if not isinstance(raw, dict):
            raise ValueError(f"a run's settings must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown run setting {unknown[0]!r}; the settings are: {', '.join(field_names())}")
        return cls(**raw)

    def budget_tag(self) -> str:
        """Every departure from the 200-epoch protocol, e.g. 'e15-n10000'; 'e200' for the protocol itself."""
        tag = [f"e{self.epochs}"]
        if self.train_subset:
            tag.append(f"n{self.train_subset}")
        if self.val_size:
            tag.append(f"val{self.val_size}")
        for key, short in BUDGET_SHORT.items():
            if getattr(self, key) != default(key):
                tag.append(f"{short}{getattr(self, key):g}")
        if self.nesterov:
            tag.append("nesterov")
        return "-".join(tag)

    def follows_protocol(self) -> bool:
        """The benchmark's 200-epoch recipe: every budget setting at its default, all data."""
        keys = ("epochs", "nesterov", *BUDGET_SHORT)
        return all(getattr(self, k) == default(k) for k in keys) and not self.train_subset and not self.val_size

    def loss_tag(self) -> str:
        return self._loss_tag or loss_tag_of(self.loss, self.loss_params)

    def task_tag(self) -> str:
        """<arch>-<dataset>, or <arch>-cosine-<dataset> with a cosine head."""
        return f"{self.arch}-cosine-{self.dataset}" if self.head == "cosine" else f"{self.arch}-{self.dataset}"

    def run_path(self) -> PurePosixPath:
        """runs/<protocol>-<budget>/<task>/<loss>-<params>/seed<seed>"""
        return PurePosixPath(f"{self.protocol}-{self.budget_tag()}", self.task_tag(), self.loss_tag(),
                             f"seed{self.seed}")

    def pack_key(self) -> tuple:
        """Runs with equal keys can train as one pack: everything but the loss and the seed is shared."""
        shared = {k: v for k, v in self.to_dict().items() if k not in ("loss", "loss_params", "seed")}
        return tuple(sorted((k, repr(v)) for k, v in shared.items()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def loss_tag_of(loss: str, params: dict) -> str:
    """A registry loss's folder name: its name and every hyperparameter (defaults filled in), e.g.
    'label_smoothing-conventionuniform-eps0.1'."""
    resolved = losses.registry.resolve_hparams(loss, dict(params))
    text = "-".join(f"{k}{_fmt(v)}" for k, v in sorted(resolved.items()))
    return f"{loss}-{text}" if text else loss


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def default(name: str) -> Any:
    return _FIELDS[name].default


def field_type(field: dataclasses.Field) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a field."""
    hint = _HINTS[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0], True) if args else (hint, False)


def _checked(field: dataclasses.Field, value: Any) -> Any:
    """The value, type-checked (ints accepted for floats) and inside its domain; else one line naming both."""
    if value is dataclasses.MISSING:
        raise ValueError(f"{field.name} is required")
    kind, optional = field_type(field)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}[kind]
        raise ValueError(f"{field.name} must be {what}{' or null' if optional else ''}, got {value!r}")
    meta = field.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"{field.name}={value!r}; choose one of: {', '.join(meta['choices'])}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{field.name}={value!r}; it must be a finite number")
    high = meta.get("maximum")
    if high is not None and value > high:
        raise ValueError(f"{field.name}={value!r}; it must be <= {high}")
    low = meta["minimum"]
    if low is not None and (value <= low if meta["exclusive"] else value < low):
        raise ValueError(f"{field.name}={value!r}; it must be {'>' if meta['exclusive'] else '>='} {low:g}")
    return value


def _check_device_name(name: str) -> None:
    from .environment import check_device_name  # torch is imported only where a device is named

    check_device_name(name)


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)
