"""Export a registry loss as one self-contained ``compute_loss`` (only torch imported).

The benchmark takes a ``custom_loss.py`` defining ``compute_loss(logits, targets,
config)``. We write the loss function's own source and the helpers it calls
(found by walking the names its code uses), so the exported text is the very
code the library runs, with the hyperparameters bound as literals.
"""
from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types

from .contract import check_inputs
from . import registry
from .registry import resolve_hparams, spec

# module objects a loss may use, and the import line that brings each into the export
_ALLOWED_MODULES = {
    "torch": "import torch",
    "torch.nn.functional": "import torch.nn.functional as F",
    "math": "import math",
}


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _codes(obj) -> list[types.CodeType]:
    """A function's code, or the code of each method of a class (an autograd.Function with its own backward)."""
    if not isinstance(obj, type):
        return [obj.__code__]
    members = [m.__func__ if isinstance(m, (staticmethod, classmethod)) else m for m in vars(obj).values()]
    return [m.__code__ for m in members if isinstance(m, types.FunctionType)]


def _function_source(fn) -> str:
    """The function's (or class's) source from its ``def`` line: registry decorators are left out."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    lines = source.splitlines()
    return "\n".join(lines[node.lineno - 1:]) + "\n"


def _dependencies(fn) -> tuple[list, set[str]]:
    """Helper functions and classes ``fn`` uses (transitively, callees first) and the import lines it needs."""
    ordered, imports, seen = [], set(), set()

    def visit(f):
        if f in seen:
            return
        seen.add(f)
        module_globals = sys.modules[f.__module__].__dict__
        for name in sorted(set().union(*map(_code_names, _codes(f)))):
            obj = module_globals.get(name)
            if isinstance(obj, types.ModuleType):
                if obj.__name__ not in _ALLOWED_MODULES:
                    raise RuntimeError(f"{f.__name__} uses module {obj.__name__}, which an export may not import")
                imports.add(_ALLOWED_MODULES[obj.__name__])
            elif isinstance(obj, (types.FunctionType, type)) and obj.__module__.startswith("lossnb.losses"):
                visit(obj)
        ordered.append(f)

    visit(fn)
    return ordered, imports


def export_source(name: str, **hparams) -> str:
    """Source of a standalone module defining ``compute_loss`` for loss ``name`` with ``hparams``."""
    s = spec(name)
    bound = resolve_hparams(name, hparams)
    functions, imports = _dependencies(s.fn)
    checks, check_imports = _dependencies(check_inputs)  # the contract, checked as lossnb checks it
    functions, imports = checks + [f for f in functions if f not in checks], imports | check_imports
    args = ", ".join(f"{k}={v!r}" for k, v in bound.items())
    state_arg = "_STATE, " if s.stateful else ""
    call = f"{s.fn.__name__}(logits, targets, config, {state_arg}{args})".replace(", )", ")")
    header = [
        f'r"""compute_loss for the benchmark\'s custom_loss.py: lossnb loss {name!r}.',
        "",
        f"Paper: {s.paper}.",
        f"Per-sample formula (LaTeX): {s.formula}",
        f"Hyperparameters: {args or '(none)'}.",
    ]
    if s.logits == "cosine":
        header += ["", "Needs cosine logits: logits[i, j] = cos(angle between sample i's L2-normalised feature and class",
                   "j's L2-normalised weight), from a cosine classifier head. On a plain linear head it is not this loss."]
    header.append('"""')
    parts = ["\n".join(header), "\n".join(sorted(imports))]
    if s.stateful:
        parts.append("# state kept across batches (this loss is stateful); reset it for a new run with _STATE.clear()\n_STATE = {}")
    parts += [_function_source(f) for f in functions]
    parts.append(
        "def compute_loss(logits, targets, config):\n"
        '    """logits (N, C) float, targets (N,) integer class ids, config {num_classes, epoch, total_epochs}\n'
        '    -> scalar."""\n'
        "    targets = check_inputs(logits, targets, config)\n"
        f"    return {call}\n"
    )
    return "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"


registry.EXPORTERS.append(export_source)
