"""The benchmark engine: one run of (arch, dataset, loss, seed, budget) with its run record."""
from .config import PROTOCOL_DEFAULTS, RunConfig
from .loop import RunExists, train
from .records import is_finished, read_summary

__all__ = ["PROTOCOL_DEFAULTS", "RunConfig", "RunExists", "is_finished", "read_summary", "train"]
