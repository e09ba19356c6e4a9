"""A run's configuration: the benchmark protocol by default, every shortening visible in the run's name."""
from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any

from .. import losses
from ..data import DATASETS
from ..models import available_models

PROTOCOL_DEFAULTS = {"epochs": 200, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                     "nesterov": False}


@dataclasses.dataclass
class RunConfig:
    arch: str
    dataset: str
    loss: str
    seed: int = 0
    loss_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    train_subset: int | None = None
    val_size: int | None = None
    protocol: str = "bench"
    precision: str = "auto"  # auto | bf16 | fp32
    channels_last: str = "auto"  # auto | on | off
    compile: bool = False
    device: str = "auto"

    def __post_init__(self):
        if self.arch not in available_models():
            raise ValueError(f"unknown arch {self.arch!r}; choose one of: {', '.join(available_models())}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
        self.loss_params = losses.registry.resolve_hparams(self.loss, dict(self.loss_params))
        for key, choices in (("precision", ("auto", "bf16", "fp32")), ("channels_last", ("auto", "on", "off"))):
            if getattr(self, key) not in choices:
                raise ValueError(f"{key}={getattr(self, key)!r}; choose one of: {', '.join(choices)}")
        for key in ("epochs", "batch_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if not self.protocol or "/" in self.protocol:
            raise ValueError(f"protocol name {self.protocol!r} must be non-empty and contain no '/'")

    def budget_tag(self) -> str:
        """Every departure from the 200-epoch protocol, e.g. 'e15-n10000'; 'e200' for the protocol itself."""
        tag = [f"e{self.epochs}"]
        if self.train_subset:
            tag.append(f"n{self.train_subset}")
        if self.val_size:
            tag.append(f"val{self.val_size}")
        for key, short in (("batch_size", "bs"), ("lr", "lr"), ("momentum", "mom"), ("weight_decay", "wd")):
            if getattr(self, key) != PROTOCOL_DEFAULTS[key]:
                tag.append(f"{short}{getattr(self, key):g}")
        if self.nesterov:
            tag.append("nesterov")
        return "-".join(tag)

    def loss_tag(self) -> str:
        params = "-".join(f"{k}{_fmt(v)}" for k, v in sorted(self.loss_params.items()))
        return f"{self.loss}-{params}" if params else self.loss

    def run_path(self) -> PurePosixPath:
        """runs/<protocol>-<budget>/<arch>-<dataset>/<loss>-<params>/seed<seed>"""
        return PurePosixPath(f"{self.protocol}-{self.budget_tag()}", f"{self.arch}-{self.dataset}",
                             self.loss_tag(), f"seed{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
