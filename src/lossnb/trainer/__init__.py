"""The benchmark engine: runs of (arch, dataset, loss, seed, budget), solo or packed, with their run records."""
from .config import RunConfig
from .loop import RunExists, train, train_pack
from .records import is_finished, read_summary
from .workspace import RunBusy, RunFiles

__all__ = ["RunBusy", "RunConfig", "RunExists", "RunFiles", "is_finished", "read_summary", "train", "train_pack"]
