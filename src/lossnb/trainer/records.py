"""Run records: config.json, metrics.csv and summary.json in one directory, each written atomically.

A run is finished when summary.json exists (status 'complete' or 'diverged'). While a
run is under way its record is written beside its checkpoint, outside git, and moved
into runs/ in one rename when it finishes: runs/ never holds a half-written record.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_ece", "test_macro_f1",
                  "epoch_seconds", "train_images_per_second"]
SUMMARY_FIELDS = ["status", "epochs_completed", "best_test_acc", "best_epoch", "final_test_acc", "final_test_loss",
                  "final_test_ece", "final_test_macro_f1", "wall_seconds"]
FINISHED = ("complete", "diverged")


@contextlib.contextmanager
def _replacing(path: Path, mode: str):
    """A file written beside ``path`` and renamed over it when complete: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with _replacing(path, "w") as f:
        f.write(text)


def atomic_torch_save(obj: Any, path: Path) -> None:
    with _replacing(path, "wb") as f:
        torch.save(obj, f)


def publish_dir(staging: Path, target: Path) -> None:
    """Move a finished record directory into place, replacing an older one (a forced re-run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old)


def write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row[k]) for k in METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_finished(run_dir: Path) -> bool:
    summary = read_summary(run_dir)
    return summary is not None and summary.get("status") in FINISHED
