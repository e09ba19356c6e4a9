"""Classification losses behind one contract: ``loss(logits, targets, config) -> scalar``.

>>> import lossnb.losses as L
>>> focal = L.get("focal", gamma=2.0)
>>> loss = focal(logits, targets, {"num_classes": 10, "epoch": 0, "total_epochs": 200})

``available()`` lists the names; ``describe(name)`` gives paper, formula and
hyperparameters; ``export_source(name, **hparams)`` writes a standalone
``compute_loss`` for the benchmark's custom_loss.py. Wherever a name is taken, a loss file
(``path/custom_loss.py`` or ``path/file.py:function``) is taken too.
"""
from . import angular, capped, complement, online_ls, recipe, robust, shaped, softmax, sparse  # noqa: F401  (importing registers the losses)
from .export import export_source
from .files import is_loss_file
from .registry import Loss, LossSpec, Param, available, get, make_config, spec


def describe(name: str) -> dict:
    """Paper, formula, summary and hyperparameters (default and domain) of a loss."""
    s = spec(name)
    return {
        "name": s.name,
        "paper": s.paper,
        "formula": s.formula,
        "summary": s.summary,
        "stateful": s.stateful,
        "logits": s.logits,
        "params": {k: {"default": p.default, "domain": p.domain, "doc": p.doc} for k, p in s.params.items()},
        **({"file": s.source_file} if s.source_file else {}),
    }


__all__ = ["Loss", "LossSpec", "Param", "available", "describe", "export_source", "get", "is_loss_file",
           "make_config", "spec"]
