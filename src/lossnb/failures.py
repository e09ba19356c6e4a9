"""Runs that did not train or that collapsed after training, and what their records say about why: from which
epoch their training accuracy stayed below the plan's threshold, and whether their last test cross-entropy is log C, the cross-entropy of a
uniform output (every class given the same probability), which says the network's scores no longer depend on
its input. The test loss is cross-entropy on the model's raw output whatever the training loss or head, so one
criterion serves every run."""
from __future__ import annotations

import math

import pandas as pd

from .data.datasets import DATASETS
from .plan import Plan, study_runs
from .results import chance_of

COLUMNS = ["loss", "seed", "the plan counts it as", "best test acc %", "best epoch", "train acc at chance from epoch",
           "last test cross-entropy", "log C", "reading"]
UNIFORM_TOLERANCE = 1e-4  # relative: the records keep six significant digits; any trained run is far from log C


def at_chance_from(train_acc: pd.Series, threshold: float) -> int | None:
    """The first epoch (1 = the first) from which every later epoch's training accuracy is below
    ``threshold``; None where the last one is not."""
    above = (train_acc.to_numpy() >= threshold).nonzero()[0]
    if len(above) == len(train_acc):
        return None
    return 1 if not len(above) else int(above[-1]) + 2


def chance_threshold(plan: Plan, sel: pd.DataFrame) -> pd.Series:
    """For each run of ``sel``: the plan's threshold, ``did_not_train_below`` times chance (1 / classes)."""
    return plan.did_not_train_below * chance_of(sel)


def failed_runs(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """The complete runs of the plan that did not train or that ended below the plan's threshold, with that
    threshold in a ``chance_threshold`` column."""
    mine = study_runs(plan, runs)
    mine = mine.assign(chance_threshold=chance_threshold(plan, mine))
    return mine[(mine["status"] == "complete") & (~mine["trained"] | mine["collapsed"])]


def failure_table(plan: Plan, runs: pd.DataFrame, curves: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """One row per failed run (failed_runs): how the plan counts it, its best test accuracy, the epoch from which
    its training accuracy stayed below the threshold, its last test cross-entropy beside log C, and what those
    say."""
    epochs = plan.select(curves)
    rows = []
    for run in failed_runs(plan, runs).to_dict("records"):
        curve = epochs[(epochs["loss_tag"] == run["loss_tag"]) & (epochs["seed"] == run["seed"])].sort_values("epoch")
        classes = DATASETS[run["dataset"]]["classes"]
        start = at_chance_from(curve["train_acc"], run["chance_threshold"])
        last = float(curve["test_loss"].iloc[-1])
        counted = ("trained: its best epoch came before the collapse" if run["trained"] else
                   "did not train: kept out")
        rows.append({"loss": labels.get(run["loss_tag"], run["loss_tag"]), "seed": run["seed"],
                     "the plan counts it as": counted, "best test acc %": round(100 * run["best_test_acc"], 2),
                     "best epoch": int(run["best_epoch"]) + 1, "train acc at chance from epoch": start,
                     "last test cross-entropy": last, "log C": round(math.log(classes), 5),
                     "reading": _reading(start, last, classes)})
    return pd.DataFrame(rows, columns=COLUMNS).set_index(["loss", "seed"])


def failure_figure(plan: Plan, runs: pd.DataFrame, curves: pd.DataFrame, labels: dict[str, str]):
    """Train and test accuracy per epoch of each failed run, a panel each in failure_table's order, with chance
    dotted and the plan's threshold dashed; None where no run failed."""
    from .plotting import train_test_curves

    failed = failed_runs(plan, runs)
    if not len(failed):
        return None
    rows = plan.select(curves).merge(failed[["loss_tag", "seed"]], on=["loss_tag", "seed"])
    rows = rows.assign(loss_tag=[_panel_name(t, s, labels) for t, s in zip(rows["loss_tag"], rows["seed"])])
    names = [_panel_name(tag, seed, labels) for tag, seed in zip(failed["loss_tag"], failed["seed"])]
    chances = set(chance_of(failed))
    guides = {} if len(chances) > 1 else {"chance": (chance := chances.pop()),
                                          f"{plan.did_not_train_below:g} × chance": plan.did_not_train_below * chance}
    return train_test_curves(rows, names, {}, guides=guides,
                             ylim=(0, 100))  # one scale: a fall from 60% and a flicker at 12% look as they are


def _panel_name(tag: str, seed: int, labels: dict[str, str]) -> str:
    return f"{labels.get(tag, tag)}\nseed {seed}"


def _reading(start: int | None, last: float, classes: int) -> str:
    text = ("training accuracy above the threshold at the end" if start is None else
            f"training accuracy at chance from epoch {start}")
    if abs(last - math.log(classes)) <= UNIFORM_TOLERANCE * math.log(classes):
        return text + "; at the end, its output uniform to 4 digits (test cross-entropy log C): it all but ignores the image"
    return text + "; its output at the end not uniform"
