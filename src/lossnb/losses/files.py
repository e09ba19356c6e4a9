"""Losses from files: a benchmark-style ``custom_loss.py`` (a module-level ``compute_loss(logits, targets,
config)``, torch only) wherever a loss name is accepted. ``path/custom_loss.py`` names its ``compute_loss``;
``path/file.py:function`` names another function of the file.

A loss file is code: importing it runs it, with the rights of whoever runs lossnb, exactly as the benchmark
runs its custom_loss.py. A run names the file by its stem and the first hex digits of its SHA-256, and its
record keeps a copy of the file, so every number is traceable to the code that made it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
from pathlib import Path

from . import registry
from .registry import LossSpec

DEFAULT_FUNCTION = "compute_loss"
HASH_DIGITS = 10


def is_loss_file(name: str) -> bool:
    return isinstance(name, str) and (name.endswith(".py") or ".py:" in name)


@dataclasses.dataclass(frozen=True)
class LossFile:
    path: Path
    function: str
    sha256: str
    source: str

    @property
    def tag(self) -> str:
        """How runs and tables name it: file stem, function if not compute_loss, hash prefix."""
        parts = [self.path.stem] + ([self.function] if self.function != DEFAULT_FUNCTION else [])
        return "-".join(parts + [self.sha256[:HASH_DIGITS]])

    def provenance(self) -> dict:
        return {"path": str(self.path), "function": self.function, "sha256": self.sha256}


def resolve(name: str) -> LossFile:
    """The file and function ``name`` points at, read now (its hash is of these bytes)."""
    path_text, _, function = name.partition(".py:")
    path = Path(path_text + ".py" if function else name)
    function = function or DEFAULT_FUNCTION
    if not function.isidentifier():
        raise ValueError(f"loss file {name!r}: {function!r} is not a function name (write FILE.py:FUNCTION)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"loss file {str(path)!r} cannot be read ({err.strerror or err})") from None
    return LossFile(path.resolve(), function, hashlib.sha256(raw).hexdigest(), raw.decode("utf-8", "replace"))


_SPECS: dict[tuple[str, str, str], LossSpec] = {}


def file_spec(name: str) -> LossSpec:
    """A registry entry for a loss file: its function bound under the contract, no hyperparameters."""
    lf = resolve(name)
    key = (str(lf.path), lf.function, lf.sha256)
    if key not in _SPECS:
        fn, module = _load(lf)
        doc = (inspect.getdoc(fn) or inspect.getdoc(module) or "").strip()
        summary = doc.splitlines()[0] if doc else f"{lf.function} from {lf.path.name}"
        _SPECS[key] = LossSpec(lf.tag, _bound(fn), {}, f"loss file {lf.path} (sha256 {lf.sha256})", "", summary,
                               source_file=lf.provenance())
    return _SPECS[key]


def _bound(fn):
    def compute(logits, targets, config):
        return fn(logits, targets, config)

    compute.__name__ = fn.__name__
    return compute


def _load(lf: LossFile):
    module_name = f"lossnb_loss_file_{lf.sha256[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, lf.path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error it raises is theirs, reported in one line
        raise ValueError(f"loss file {lf.path} failed to import: {type(err).__name__}: {err}") from None
    fn = getattr(module, lf.function, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module_name)
        raise ValueError(f"loss file {lf.path} defines no function {lf.function!r}; its functions: "
                         f"{', '.join(found) or '(none)'}")
    return fn, module


def copy_verified(provenance: dict, destination: Path) -> None:
    """Copy the loss file into a run record, refusing a file edited since the run was configured (its hash,
    and so its run's name, would no longer match the code that trains)."""
    raw = Path(provenance["path"]).read_bytes()
    if hashlib.sha256(raw).hexdigest() != provenance["sha256"]:
        raise ValueError(f"loss file {provenance['path']} changed since the run was configured "
                         f"(sha256 {provenance['sha256'][:HASH_DIGITS]}...); configure the run again")
    destination.write_bytes(raw)


registry.FILE_SPECS.append(lambda name: file_spec(name) if is_loss_file(name) else None)
