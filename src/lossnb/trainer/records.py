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

from .. import losses
from .environment import describe_environment

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_ece", "test_macro_f1",
                  "epoch_seconds", "train_images_per_second"]
SUMMARY_FIELDS = ["status", "epochs_completed", "best_test_acc", "best_epoch", "final_test_acc", "final_test_loss",
                  "final_test_ece", "final_test_macro_f1", "wall_seconds"]
# a complete run's fit, measured once as it ends (records made before it was measured lack it)
FIT_FIELDS = ["train_eval_acc", "train_eval_loss"]
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
    """Move a finished record directory into place, replacing an older one (a forced re-run). ``staging`` sits
    on the destination's file system (see workspace.RunFiles), so each move is one rename."""
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


CHECKPOINT_KEYS = ("epoch", "model", "momentum", "loss_state", "rows", "wall_seconds")


def load_checkpoint(path: Path) -> dict:
    """A run's checkpoint (to the CPU, tensors only: weights_only never runs code); a corrupt or foreign file is
    refused with one line that names it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:200]}); "
                         "delete it or pass --force to restart the run") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing[0]!r} (written by another version of lossnb?); "
                         "pass --force to restart the run")
    return state


def start_staging(staging: Path, config: dict, rows: list[dict]) -> None:
    """A fresh staging folder holding the whole record but the summary: a run that ends at any point (even
    diverging at its first step) publishes config.json, metrics.csv (perhaps only its header) and summary.json."""
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed process: rewritten from the checkpoint
    staging.mkdir(parents=True)
    write_json(staging / "config.json", config)
    write_metrics(staging / "metrics.csv", rows)


class RecordBroken(ValueError):
    """A record directory that is not a whole record: a file missing, cut short or inconsistent."""


def read_summary(run_dir: Path) -> dict | None:
    """summary.json as a mapping; None where it is missing or not a JSON object (a broken record)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def record_problem(run_dir: Path, relative_path: str | None = None) -> str | None:
    """None where ``run_dir`` holds a whole record: summary.json a JSON object with a finished status,
    config.json with its run's settings (and, given ``relative_path``, made for this place under runs/), and
    metrics.csv with every column, one row per completed epoch and a number in every cell. Else what is wrong,
    in one line naming the file."""
    for name in ("config.json", "metrics.csv", "summary.json"):
        if not (run_dir / name).is_file():
            return f"{run_dir / name} is missing"
    summary = read_summary(run_dir)
    if summary is None:
        return f"{run_dir / 'summary.json'} is not a JSON object (cut short?)"
    if summary.get("status") not in FINISHED:
        return f"{run_dir / 'summary.json'}: status {summary.get('status')!r} is not one of {', '.join(FINISHED)}"
    try:
        config = json.loads((run_dir / "config.json").read_text())
        run = config["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{run_dir / 'config.json'} does not hold a run's settings (cut short?)"
    if relative_path is not None and config.get("run_path", relative_path) != relative_path:
        return f"{run_dir / 'config.json'} was made for {config['run_path']}, not for this folder"
    if not isinstance(run, dict):
        return f"{run_dir / 'config.json'}: 'run' is not a mapping"
    missing = [key for key in SUMMARY_FIELDS if key not in summary]
    if missing:
        return f"{run_dir / 'summary.json'}: {missing[0]} is missing"
    if summary["status"] == "complete" and summary["epochs_completed"] != run.get("epochs"):
        return (f"{run_dir / 'summary.json'}: complete after {summary['epochs_completed']!r} epochs, but its run has "
                f"{run.get('epochs')!r}")
    return _metrics_problem(run_dir / "metrics.csv", summary.get("epochs_completed"))


def _metrics_problem(path: Path, epochs: Any) -> str | None:
    try:
        reader = csv.DictReader(io.StringIO(path.read_text()))
        rows, header = list(reader), reader.fieldnames or []
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        return f"{path} cannot be read ({err})"
    missing = [c for c in METRIC_COLUMNS if c not in header]
    if missing:
        return f"{path}: column {missing[0]} is missing"
    if len(rows) != epochs:
        return f"{path} has {len(rows)} epoch rows; summary.json says {epochs} epochs completed"
    for i, row in enumerate(rows):
        for column in METRIC_COLUMNS:
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                return f"{path}: row {i + 1}, {column} is {row[column]!r}, not a number (cut short?)"
            if value != value:  # NaN: a finished epoch has every number
                return f"{path}: row {i + 1}, {column} is NaN"
    return None


def is_finished(run_dir: Path) -> bool:
    """A whole record with a finished status (see record_problem)."""
    return (run_dir / "summary.json").is_file() and record_problem(run_dir) is None


# how a run executes, not what it computes (a memory format, a device, graphs, a pack's form of its first
# convolution change the order of float rounding only): a record made one way answers for the others
EXECUTION_ONLY = ("device", "compile", "cuda_graphs", "channels_last", "first_conv")


class RecordMismatch(ValueError):
    """A finished record sits where a run with other settings would be written."""


def check_identity(run_dir: Path, cfg) -> None:
    """Raise RecordMismatch naming both values where the finished record at ``run_dir`` was made with settings
    other than ``cfg``'s (two values that print alike, such as gamma 2 and 2.0000001, share a folder name but
    are not one run). Settings added since the record was written take their defaults, which it ran with."""
    from ..losses import is_loss_file
    from .config import RunConfig

    path = run_dir / "config.json"
    try:
        recorded = RunConfig.from_dict(json.loads(path.read_text())["run"]).to_dict()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RecordMismatch(f"{path}: cannot be read as a run's settings ({err}); move the record away or "
                             "retrain it with --force") from None
    asked = cfg.to_dict()
    skip = set(EXECUTION_ONLY) | ({"loss"} if is_loss_file(cfg.loss) else set())  # a loss file: its hash is in the name
    for key in sorted(set(asked) - skip):
        if recorded.get(key) != asked[key]:
            raise RecordMismatch(f"{run_dir} was made with {key}={recorded.get(key)!r}, not {key}={asked[key]!r}; "
                                 "use another protocol name for these settings, or --force to replace it")


# ---------------------------------------------------------------- a run's record from its pack
def summary_of(run, k: int, status: str, diverged_at=None) -> dict:
    """Member k's summary.json as its run ends (``run``: a trainer.state.PackRun)."""
    rows, cfg = run.rows[k], run.cfgs[k]
    summary = {"status": status, "epochs_completed": len(rows), "wall_seconds": run.wall_seconds,
               "protocol": cfg.protocol, "budget": cfg.budget_tag(), "eval_split": run.data.eval_split}
    if rows:
        best = max(rows, key=lambda r: r["test_acc"])
        final = rows[-1]
        summary.update(best_test_acc=best["test_acc"], best_epoch=best["epoch"], final_test_acc=final["test_acc"],
                       final_test_loss=final["test_loss"], final_test_ece=final["test_ece"],
                       final_test_macro_f1=final["test_macro_f1"], final_reliability=run.reliability[k])
    else:
        summary.update({key: None for key in SUMMARY_FIELDS if key not in summary})
    if diverged_at:
        summary["diverged_at"] = {"epoch": diverged_at[0], "step": diverged_at[1]}
    return summary


def config_of(run, k: int) -> dict:
    """Member k's config.json: its settings, what they resolved to, its pack, loss, data and machine."""
    cfg, data = run.cfgs[k], run.data
    crop = "RandomCrop(32, padding=4)" + (" + RandomHorizontalFlip" if data.flip else " (no flip for this data set)")
    return {
        "run": cfg.to_dict(), "run_path": str(cfg.run_path()),
        "follows_200_epoch_protocol": cfg.follows_protocol(),
        "resolved": {**run.execution, "cuda_graphs": run.graphs is not None},
        "packing": {"pack_size": run.k, "member": k, "pack": [str(c.run_path()) for c in run.cfgs],
                    "note": "trained as one packed model with the runs listed; wall and epoch seconds are the "
                            "pack's, train_images_per_second is this run's images per second"},
        "loss": losses.describe(cfg.loss),
        "data": {"source": data.source, "checksums": data.checksums, "train_size": len(data.train_y),
                 "eval_size": len(data.test_y), "eval_split": data.eval_split, "mean": data.mean, "std": data.std,
                 "image_prep": data.prep, "augmentation": crop + ", batched on device"},
        "environment": describe_environment(run.device),
    }
