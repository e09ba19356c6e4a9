"""The loss registry: every loss by name, with its hyperparameters, paper and formula.

A registered loss is a pure function ``fn(logits, targets, config, **hparams)``
(or ``fn(logits, targets, config, state, **hparams)`` when it keeps state across
batches). ``get(name, **hparams)`` binds the hyperparameters after checking them
and returns a :class:`Loss`, a plain callable with the benchmark's contract.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from .domains import is_real
from .contract import check_inputs


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter: its default, its domain (a predicate) and the domain in words."""

    default: Any
    valid: Callable[[Any], bool]
    domain: str
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable
    params: dict[str, Param]
    paper: str
    formula: str  # LaTeX, per sample; the batch loss is the mean over samples
    summary: str
    stateful: bool = False
    source_file: dict | None = None  # a loss file's path, function and sha256 (lossnb.losses.files)
    logits: str = "any"  # "cosine": the logits must be cosines, from a cosine classifier head


_REGISTRY: dict[str, LossSpec] = {}


def register(name: str, *, paper: str, formula: str, summary: str,
             params: dict[str, Param] | None = None, stateful: bool = False, logits: str = "any"):
    """Decorator adding a loss function to the registry under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"loss {name!r} registered twice")
        _REGISTRY[name] = LossSpec(name, fn, dict(params or {}), paper, formula, summary, stateful,
                                   logits=logits)
        return fn

    return deco


def available() -> list[str]:
    """Names of every registered loss, sorted."""
    return sorted(_REGISTRY)


# Loss files (files.py) and the standalone export (export.py) build on this module; they plug in here when the
# package imports them, so that the registry imports neither and stays a leaf.
FILE_SPECS: list[Callable[[str], "LossSpec | None"]] = []  # each: a loss file's entry, or None if not one
EXPORTERS: list[Callable[..., str]] = []  # export_source(name, **hparams)


def spec(name: str) -> LossSpec:
    """The registry entry of ``name`` (or of a loss file, ``path.py`` or ``path.py:function``); an unknown name
    lists the choices."""
    for file_spec in FILE_SPECS:
        found = file_spec(name)
        if found is not None:
            return found
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(available())}, or a loss file "
                         "(path/custom_loss.py)") from None


def resolve_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, unknown names and out-of-domain values rejected with the domain named."""
    s = spec(name)
    unknown = sorted(set(hparams) - set(s.params))
    if unknown:
        choices = ", ".join(s.params) or "(none)"
        raise ValueError(f"loss {name!r} has no hyperparameter {unknown[0]!r}; its hyperparameters are: {choices}")
    resolved = {k: p.default for k, p in s.params.items()}
    resolved.update(hparams)
    for key, value in resolved.items():
        p = s.params[key]
        if _is_number(p.default) and not _is_number(value):  # a word or a list where a number goes
            raise ValueError(f"loss {name!r}: {key}={_shown(value)} is not a number; its domain is {p.domain}")
        if _is_number(value) and not is_real(value):
            raise ValueError(f"loss {name!r}: {key}={_shown(value)} is not a finite number; its domain is {p.domain}")
        try:
            ok = bool(p.valid(value))
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"loss {name!r}: {key}={_shown(value)} is outside its domain ({p.domain})")
    return resolved


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any, most: int = 40) -> str:
    """A value for a one-line message: its repr, cut with its length where it is long (a 400-digit number)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def make_config(num_classes: int, epoch: int = 0, total_epochs: int = 1) -> dict[str, int]:
    """A contract config dict; handy in notebooks and tests."""
    return {"num_classes": int(num_classes), "epoch": int(epoch), "total_epochs": int(total_epochs)}


class Loss:
    """A registry loss with its hyperparameters bound: ``loss(logits, targets, config)``.

    Every call checks the contract (lossnb.losses.contract.check_inputs: shapes, dtypes, config keys, the
    target range without a host sync on CUDA), and the exported compute_loss runs the same check.
    """

    def __init__(self, name: str, **hparams: Any):
        self.spec = spec(name)
        self.name = name
        self.hparams = resolve_hparams(name, hparams)
        self.state: dict[str, Any] = {}

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, config: dict) -> torch.Tensor:
        targets = check_inputs(logits, targets, config)
        if self.spec.stateful:
            return self.spec.fn(logits, targets, config, self.state, **self.hparams)
        return self.spec.fn(logits, targets, config, **self.hparams)

    def reset(self) -> None:
        """Forget state kept across batches (a new run starts from scratch)."""
        self.state.clear()

    def state_dict(self) -> dict[str, Any]:
        return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.clear()
        self.state.update(state)

    def export(self) -> str:
        """Self-contained ``compute_loss`` source for the benchmark's custom_loss.py."""
        if self.spec.source_file:  # a loss file is already one
            return Path(self.spec.source_file["path"]).read_text()
        return EXPORTERS[0](self.name, **self.hparams)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"Loss({self.name!r}{', ' if args else ''}{args})"


def get(name: str, **hparams: Any) -> Loss:
    """The loss ``name`` with hyperparameters ``hparams`` (the rest at their defaults)."""
    return Loss(name, **hparams)
