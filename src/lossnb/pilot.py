"""A pilot's verdict on its records: each candidate network against the criteria written down before its runs
(grids/pilots/*.yaml), the choice its rule makes, and the spread of paired differences that the chosen network
hands to the full-length study's power computation. Validation split only: the pilot's records evaluate on
images held out of the training set."""
from __future__ import annotations

import dataclasses
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .grid import load_grid
from .plan import pooled_sd
from .results import with_trained
from .trainer.records import FINISHED

FULL_TRAINING_SET = 60_000  # a full-length study trains on every training image; the pilot holds 10,000 out
CORES = 2  # "hours of this 2-core machine": the criteria's unit of cost


@dataclasses.dataclass
class Pilot:
    path: Path
    study: str  # the runs' top folder: protocol and budget, e.g. pilot-bn-e200-val10000
    candidates: list[str]  # cheapest first
    reference: str | None
    least_mean_gap: float
    hours: float
    planned_runs: int
    raw: dict
    cost_file: Path | None = None  # an amendment's idle-machine measurement of each candidate (benchmarks/pilot_cost.py)

    @property
    def grid_file(self) -> Path:
        """The grid of the pilot's runs."""
        return self.path.parent / self.raw["grid"]


def load_pilot(path: str | Path) -> Pilot:
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    grid = load_grid(path.parent / raw["grid"])  # its runs' top folder names the pilot's study
    criteria = raw["criteria"]
    measured = [a["cost_measure"] for a in raw.get("amendments") or [] if "cost_measure" in a]
    return Pilot(path, str(grid.runs[0].run_path().parts[0]), list(raw["candidates"]), raw.get("reference"),
                 float(criteria["regime"]["least_mean_gap"]), float(criteria["cost"]["hours"]),
                 int(criteria["cost"]["runs"]), raw, path.parent / measured[-1] if measured else None)


def measured_hours(pilot: Pilot) -> dict[str, float]:
    """{network: hours of the planned grid} from the amendment's idle-machine measurement: the planned runs'
    training images over the rate lossnb trained at in the arrangement the grid takes (evaluation included)."""
    if pilot.cost_file is None or not pilot.cost_file.exists():  # until it has run, the wall-time measure stands
        return {}
    measured = json.loads(pilot.cost_file.read_text())["candidates"]
    epochs = load_grid(pilot.path.parent / pilot.raw["grid"]).runs[0].epochs
    return {row["arch"]: pilot.planned_runs * epochs * FULL_TRAINING_SET / row["images_per_second"] / 3600
            for row in measured}


def pilot_runs(pilot: Pilot, runs: pd.DataFrame) -> pd.DataFrame:
    """The pilot's finished records (a diverged run is one that did not train, so its network is not stable), with
    trained / collapsed, each run's fit gap (accuracy on its own un-augmented training images minus final
    validation accuracy) and its cost in machine-hours at full length."""
    done = with_trained(runs[(runs["study"] == pilot.study) & runs["status"].isin(FINISHED)])
    threads = done["cpu_threads"].fillna(CORES)
    # the pack's wall time is shared by its runs, and a process of t threads holds t of the cores
    seconds = done["wall_seconds"] * threads / (CORES * done["pack_size"])
    train_size = FULL_TRAINING_SET - done["eval_size"]
    return done.assign(gap=done["train_eval_acc"] - done["final_test_acc"],
                       full_length_hours=seconds * FULL_TRAINING_SET / train_size / 3600)


def candidate_table(pilot: Pilot, runs: pd.DataFrame, as_written: bool = False) -> pd.DataFrame:
    """Per network (candidates cheapest first, then the reference): runs, failures, accuracies, the fit gap, the
    planned grid's hours (by the amended measure where the pilot has one, unless ``as_written``; the pilot's wall
    times beside it), and whether each criterion is met (reference: not judged)."""
    done = pilot_runs(pilot, runs)
    amended = {} if as_written else measured_hours(pilot)
    rows = []
    for arch in pilot.candidates + ([pilot.reference] if pilot.reference else []):
        mine = done[done["arch"] == arch]
        trained = mine[mine["trained"]]
        whole = mine[mine["status"] == "complete"]  # a diverged run stopped early: no measure of a run's cost
        wall = pilot.planned_runs * whole["full_length_hours"].mean() if len(whole) else np.nan
        hours = amended.get(arch, np.nan) if amended else wall
        stable = bool(len(mine)) and bool(mine["trained"].all() and not mine["collapsed"].any())
        regime = (len(trained) > 0 and trained["gap"].mean() >= pilot.least_mean_gap
                  and bool((trained["gap"] > 0).all()))
        rows.append({"arch": arch, "candidate": arch in pilot.candidates, "runs": len(mine),
                     "did not train": int((~mine["trained"]).sum()), "collapsed": int(mine["collapsed"].sum()),
                     "best val acc": trained["best_test_acc"].mean(), "final val acc": trained["final_test_acc"].mean(),
                     "train acc (un-augmented)": trained["train_eval_acc"].mean(), "mean gap": trained["gap"].mean(),
                     "least gap": trained["gap"].min(), "grid hours": hours, "wall-time hours": wall,
                     "stable": stable, "regime": bool(regime),
                     "affordable": bool(hours <= pilot.hours)})
    return pd.DataFrame(rows).set_index("arch")


def choice(pilot: Pilot, table: pd.DataFrame) -> tuple[str | None, str]:
    """(network, why) by the pilot's rule: the cheapest candidate that is stable and in the regime within the
    cost; else the stable affordable candidate with the largest mean gap; None while a cheaper candidate that
    could still qualify has no runs."""
    candidates = table[table["candidate"]]
    for arch, row in candidates.iterrows():
        if row["runs"] == 0:
            return None, f"{arch} has no finished run yet"
        if row["stable"] and row["regime"] and row["affordable"]:
            return arch, "the cheapest candidate that is stable and fits its training data within the cost"
    fallback = candidates[candidates["stable"] & candidates["affordable"]]
    if fallback.empty:
        return None, "no candidate is stable within the cost"
    return str(fallback["mean gap"].idxmax()), "no candidate fits its training data within the cost: the stable " \
                                               "affordable one closest to it"


def paired_spread(pilot: Pilot, runs: pd.DataFrame, arch: str, metric: str = "best_test_acc") -> dict:
    """The standard deviation of paired differences (by seed) between the pilot's losses on ``arch``, pooled over
    the pairs weighted by their degrees of freedom, as the study's power rule uses it."""
    done = pilot_runs(pilot, runs)
    wide = done[(done["arch"] == arch) & done["trained"]].pivot_table(index="seed", columns="loss_tag",
                                                                       values=metric)
    sd, dof, pairs = pooled_sd(wide, combinations(sorted(wide.columns), 2))
    return {"pooled_sd": sd, "dof": dof, "pairs": pairs}


# the candidates in a narrow column; the chapter's prose names them in full
SHORT_NAMES = {"convnet_bn": "BatchNorm ConvNet", "convnet_bn_w2": "BatchNorm ConvNet ×2 wide",
               "convnet_bn_w4": "BatchNorm ConvNet ×4 wide", "convnet": "report's ConvNet"}


def page_table(table: pd.DataFrame) -> pd.DataFrame:
    """candidate_table as the chapter shows it: networks in words, accuracies and gaps in points, hours rounded
    (the pilot's wall-time hours beside the amended measure where there is one), each criterion met or not (the
    reference is not judged)."""
    def mark(row, criterion):
        return "–" if not row["candidate"] or not row["runs"] else ("yes" if row[criterion] else "no")

    rows = []
    for arch, row in table.iterrows():
        rows.append({"network": SHORT_NAMES.get(arch, arch), "runs": row["runs"],
                     "failed": row["did not train"] + row["collapsed"],
                     "best val acc %": f"{100 * row['best val acc']:.2f}",
                     "train acc % (un-aug.)": f"{100 * row['train acc (un-augmented)']:.2f}",
                     "mean gap": f"{100 * row['mean gap']:.2f}", "least gap": f"{100 * row['least gap']:.2f}",
                     "grid hours": f"{row['grid hours']:.0f}", "wall-time hours": f"{row['wall-time hours']:.0f}",
                     "stable": mark(row, "stable"),
                     "regime": mark(row, "regime"), "afford-able": mark(row, "affordable")})
    out = pd.DataFrame(rows).set_index("network")
    if out["grid hours"].equals(out["wall-time hours"]):  # no amended measure: one cost column
        out = out.drop(columns="wall-time hours")
    else:
        out = out.rename(columns={"grid hours": "idle hours"})
    return out.replace({"nan": "–"})


def epoch_time_spread(pilot: Pilot, runs: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    """Per candidate, the largest over its runs of its slowest epoch's wall time over its median epoch's. Every
    epoch of a run does the same work, so a large ratio is time the machine spent on other things (or the
    process stopped), which the pilot's wall-time cost measure counts as the network's."""
    done = pilot_runs(pilot, runs)
    keys = ["study", "task", "loss_tag", "seed"]
    mine = curves.merge(done[keys + ["arch"]], on=keys)
    per_run = mine.groupby(["arch", *keys[1:]])["epoch_seconds"].agg(
        lambda s: s.max() / s.median() if s.median() > 0 else float("nan"))  # no times: no spread to tell
    spread = per_run.groupby("arch").max()
    return spread.reindex([a for a in pilot.candidates if a in spread.index])
