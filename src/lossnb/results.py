"""Run records into tables: one row per run, one per run and epoch, mean ± std per loss, pooled reliability bins.
The statistics on them are lossnb.stats (tests) and lossnb.analysis / lossnb.plan (decisions)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .trainer import records
from .trainer.records import FIT_FIELDS, METRIC_COLUMNS, SUMMARY_FIELDS

REQUIRED_CONFIG = ("arch", "dataset", "loss", "loss_params", "seed", "protocol", "epochs")


class RecordError(ValueError):
    pass


def run_dirs(runs_dir: str | Path) -> list[Path]:
    """Every finished record under runs_dir (checkpoints and staging folders are skipped)."""
    root = Path(runs_dir)
    return sorted(p.parent for p in root.rglob("summary.json")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_record(run_dir: Path, relative_path: str | None = None) -> dict:
    """One record, whole (lossnb.trainer.records.record_problem: every file there, parsed, one metrics row per
    epoch, made for this folder) and holding every field the book reads; else RecordError naming the file."""
    problem = records.record_problem(run_dir, relative_path)
    if problem:
        raise RecordError(problem)
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in REQUIRED_CONFIG:
        if key not in config.get("run", {}):
            raise RecordError(f"{run_dir / 'config.json'}: run.{key} is missing")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    return {"dir": run_dir, "config": config, "summary": summary, "metrics": metrics}


def load_runs(runs_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per run, one row per run and epoch). 'study' is the protocol with its budget, e.g.
    'report-convnet-e20'; 'task' is arch-dataset; 'loss_tag' names the loss with its hyperparameters.

    A directory that is not a readable record (a foreign folder, a damaged file) is skipped with a warning
    naming it and why; the list is in ``runs.attrs["skipped"]``."""
    rows, curves, skipped = [], [], []
    root = Path(runs_dir)
    if not root.is_dir():
        warnings.warn(f"no runs directory at {root}: no records to read", stacklevel=2)
    for run_dir in run_dirs(root):
        try:
            rec = read_record(run_dir, str(run_dir.relative_to(root)))
            parts = run_dir.relative_to(root).parts
            if len(parts) != 4:
                raise RecordError(f"not at runs/<study>/<task>/<loss>/<seed> (depth {len(parts)})")
        except (RecordError, OSError, ValueError, KeyError, pd.errors.ParserError) as err:
            skipped.append((str(run_dir), f"{type(err).__name__}: {err}"))
            warnings.warn(f"skipped {run_dir}: {err}", stacklevel=2)
            continue
        study, task, loss_tag, _ = parts
        config = rec["config"]
        run = config["run"]
        row = {"study": study, "task": task, "arch": run["arch"], "dataset": run["dataset"],
               "head": run.get("head", "linear"), "loss_tag": loss_tag, "loss": run["loss"],
               "loss_params": run["loss_params"], "seed": run["seed"], "epochs": run["epochs"],
               **{k: rec["summary"].get(k) for k in SUMMARY_FIELDS + FIT_FIELDS},
               "eval_split": rec["summary"].get("eval_split", "test"),
               "follows_200_epoch_protocol": bool(config.get("follows_200_epoch_protocol", False)),
               "image_prep": run.get("image_prep", "pad"),
               "norm_mean": _channels(config, "mean"), "norm_std": _channels(config, "std"),
               "pack_size": config.get("packing", {}).get("pack_size", 1),
               "eval_size": config.get("data", {}).get("eval_size"),
               "cpu_threads": config.get("environment", {}).get("cpu_threads"),
               "device_name": _device_name(config.get("environment", {})), "dir": str(run_dir)}
        rows.append(row)
        curves.append(rec["metrics"].assign(study=study, task=task, loss_tag=loss_tag, seed=run["seed"]))
    columns = ["study", "task", "arch", "dataset", "head", "loss_tag", "loss", "loss_params", "seed", "epochs",
               *SUMMARY_FIELDS, *FIT_FIELDS, "eval_split",
               "follows_200_epoch_protocol", "image_prep", "norm_mean", "norm_std", "pack_size", "eval_size",
               "cpu_threads", "device_name", "dir"]
    runs = pd.DataFrame(rows, columns=columns)  # the columns even when no record exists yet
    runs.attrs["skipped"] = skipped
    empty_curves = pd.DataFrame(columns=[*METRIC_COLUMNS, "study", "task", "loss_tag", "seed"])
    return runs, (pd.concat(curves, ignore_index=True) if curves else empty_curves)


def _channels(config: dict, key: str) -> tuple[float, ...] | None:
    """The per-channel statistic the run's images were normalised with (None where the record does not say)."""
    values = config.get("data", {}).get(key)
    return tuple(values) if values else None


def normalisation(runs: pd.DataFrame, dataset: str, image_prep: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel that the recorded runs of ``dataset`` in ``image_prep`` were normalised with, where
    they agree to a millionth (the same statistics summed on different devices differ in the last bits); else
    ValueError, naming the spread (the book states one)."""
    sel = runs[(runs["dataset"] == dataset) & (runs["image_prep"] == image_prep)]
    sel = sel.dropna(subset=["norm_mean", "norm_std"])
    if sel.empty:
        raise ValueError(f"no run of {dataset} in {image_prep} records its normalisation")
    if len({len(m) for m in sel["norm_mean"]}) > 1:
        raise ValueError(f"runs of {dataset} in {image_prep} were normalised over different channel counts")
    stats = [np.array(sel[column].tolist()) for column in ("norm_mean", "norm_std")]
    spread = max(float((s.max(axis=0) - s.min(axis=0)).max()) for s in stats)
    if spread > 1e-6:
        raise ValueError(f"runs of {dataset} in {image_prep} were normalised differently (spread {spread:.2g}); "
                         "the book states one")
    return stats[0][0], stats[1][0]


def _device_name(environment: dict) -> str | None:
    """The accelerator's name, or for a CPU run 'CPU (N threads)'; None where the record does not say."""
    if environment.get("device_name"):
        return environment["device_name"]
    if environment.get("device") == "cpu":
        threads = environment.get("cpu_threads")
        return f"CPU ({threads} thread{'s' if threads != 1 else ''})" if threads else "CPU"
    return None


DID_NOT_TRAIN_BELOW = 2.0  # a run whose best accuracy stays below twice chance did not train


def chance_of(runs: pd.DataFrame) -> pd.Series:
    """Each run's chance accuracy: 1 / the classes of its data set."""
    from .data import DATASETS

    return runs["dataset"].map(lambda d: 1 / DATASETS[d]["classes"])


def did_not_train(runs: pd.DataFrame, factor: float = DID_NOT_TRAIN_BELOW) -> pd.Series:
    """True for a complete run whose best accuracy stayed below ``factor`` times chance (1 / classes)."""
    return (runs["status"] == "complete") & (runs["best_test_acc"] < factor * chance_of(runs))


def with_trained(runs: pd.DataFrame, factor: float = DID_NOT_TRAIN_BELOW) -> pd.DataFrame:
    """A copy of ``runs`` with a ``trained`` column (complete, and best accuracy above ``factor`` times chance)
    and a ``collapsed`` one (trained, and final accuracy below that again: it fell back after training)."""
    trained = (runs["status"] == "complete") & ~did_not_train(runs, factor)
    return runs.assign(trained=trained, collapsed=trained & (runs["final_test_acc"] < factor * chance_of(runs)))


def mean_std_table(runs: pd.DataFrame, metrics=("best_test_acc", "final_test_acc", "final_test_ece",
                                                 "final_test_macro_f1")) -> pd.DataFrame:
    """Per loss: seeds that trained, and mean and sample std (ddof=1) of each metric over them; a complete run
    that did not train (best accuracy below twice chance) is counted in 'did not train' and left out of the
    means, which over a split outcome would describe no run."""
    failed = did_not_train(runs)
    done = runs[(runs["status"] == "complete") & ~failed]
    grouped = done.groupby("loss_tag")
    table = grouped.size().to_frame("seeds")
    table = table.reindex(sorted(set(runs.loc[runs["status"] == "complete", "loss_tag"])), fill_value=0)
    table["did not train"] = runs[failed].groupby("loss_tag").size().reindex(table.index, fill_value=0)
    for m in metrics:
        table[f"{m} mean"] = grouped[m].mean()
        table[f"{m} std"] = grouped[m].std(ddof=1)
    return table


def pooled_reliability(run_dirs_: list[str]) -> pd.DataFrame:
    """Final-epoch reliability bins summed over runs: per bin, count, mean confidence and accuracy."""
    count = conf = acc = None
    for d in run_dirs_:
        rel = json.loads((Path(d) / "summary.json").read_text()).get("final_reliability")
        if not rel:
            continue
        n = np.array(rel["count"], dtype=float)
        count = n if count is None else count + n
        conf = n * rel["mean_confidence"] if conf is None else conf + n * np.array(rel["mean_confidence"])
        acc = n * rel["accuracy"] if acc is None else acc + n * np.array(rel["accuracy"])
        edges = rel["bin_edges"]
    if count is None:
        return pd.DataFrame()
    safe = np.maximum(count, 1)
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "count": count,
                         "confidence": conf / safe, "accuracy": acc / safe})


def summary_table(summary: dict) -> pd.DataFrame:
    """A run's summary.json as a one-column table of its scalar fields (the reliability bins, a table of their
    own, left out); accuracies, ECE and macro-F1 in %."""
    rows = {}
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        percent = isinstance(value, float) and key.endswith(("_acc", "_ece", "_macro_f1"))
        rows[f"{key} %" if percent else key] = f"{100 * value:.2f}" if percent else value
    return pd.Series(rows, dtype=object).to_frame("summary")


def reliability_by_loss(runs: pd.DataFrame, labels: dict[str, str]) -> dict[str, pd.DataFrame]:
    """{loss in words: its final-epoch reliability bins pooled over ``runs``}, in the order the runs come."""
    return {labels.get(tag, tag): pooled_reliability(d["dir"].tolist()) for tag, d in runs.groupby("loss_tag",
                                                                                                   sort=False)}


def published_table(published: pd.DataFrame) -> pd.DataFrame:
    """Published best test accuracies (one row per loss, task and seed, in %) as 'mean ± std' over seeds per
    loss and task, 'not reported' where a task has no row for a loss."""
    def mean_std(values: pd.Series) -> str:
        values = values.dropna()
        return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1 else f"{values.mean():.2f}"

    return published.pivot_table(index="loss", columns="task", values="best_test_acc_percent", aggfunc=mean_std,
                                 sort=False).fillna("not reported")


def grid_status(grids_dir: str | Path, runs_dir: str | Path) -> pd.DataFrame:
    """Per grid file (the index, for rerunning): what it trains in words, runs named, runs with a whole record
    (complete or diverged), broken and not started, and its state in a word: complete, partial or not started."""
    from .grid import load_grid
    from .names import grid_in_words

    rows = []
    for path in sorted(Path(grids_dir).glob("*.yaml")):
        grid = load_grid(path)
        states = []
        for cfg in grid.runs:
            record = Path(runs_dir) / cfg.run_path()
            if not record.exists():
                states.append("not started")
                continue
            problem = records.record_problem(record, str(cfg.run_path()))
            states.append("broken" if problem else (records.read_summary(record) or {}).get("status"))
        count = {s: states.count(s) for s in ("complete", "diverged", "broken", "not started")}
        done = count["complete"] + count["diverged"]
        rows.append({"grid": path.name, "trains": grid_in_words(grid), "runs": len(states), **count,
                     "state": "complete" if done == len(states) else ("not started" if done == 0 else "partial")})
    return pd.DataFrame(rows).set_index("grid")
