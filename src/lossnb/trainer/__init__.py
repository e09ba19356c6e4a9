"""The benchmark engine: runs of (arch, dataset, loss, seed, budget), solo or packed, with their run records.

Its names are imported when first used: `lossnb --help` and other commands that train nothing need no torch."""
import importlib

_WHERE = {"RunConfig": "config", "RunExists": "loop", "train": "loop", "train_pack": "loop", "is_finished": "records",
          "read_summary": "records", "RunBusy": "workspace", "RunFiles": "workspace"}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
