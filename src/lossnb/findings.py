"""The facts behind the book's findings, and the check beside each one.

A chapter states a finding in words a person wrote, inserts its numbers when the chapter executes (myst-nb glue),
and beside it calls ``check`` on each verdict or fact the sentence states. When new records stop supporting a
sentence, executing the chapter fails with one line naming the finding and what the records now say, so a
finding never outlives its evidence. The facts are computed here, once, for every page that states them.
"""
from __future__ import annotations

import pandas as pd

from .plan import Plan, study_runs
from .trainer.records import FINISHED


class FindingUnsupported(AssertionError):
    """A sentence of the book that the records no longer support."""


def check(finding: str, holds: bool, records_say: str) -> None:
    """Fail the chapter, in one line, where ``finding`` states what the records (``records_say``) do not."""
    if not holds:
        raise FindingUnsupported(f"the finding {finding!r} no longer holds: the records say {records_say}")


def comparison(table: pd.DataFrame, a: str, b: str) -> dict:
    """The row of a comparison table (plan.compare, designs.ece_of_parts) that compares ``a`` with ``b``."""
    rows = table[(table["a"] == a) & (table["b"] == b)]
    if len(rows) != 1:
        raise FindingUnsupported(f"no comparison of {a} with {b} in the records' table")
    return rows.iloc[0].to_dict()


def verdict_of(table: pd.DataFrame, a: str, b: str) -> str:
    """The verdict on ``a`` against ``b`` in a comparison table (see comparison)."""
    return comparison(table, a, b)["verdict"]


def verdicts(table: pd.DataFrame, family: str | None = None) -> set[str]:
    """The verdicts a table (or one family of it) holds."""
    return set((table if family is None else table[table["family"] == family])["verdict"])


def run_outcomes(plan: Plan, runs: pd.DataFrame) -> dict:
    """How the plan's runs ended: how many finished (complete or diverged: the plan is answered when every
    planned run has), how many are complete, trained, did not train (best accuracy under the plan's threshold)
    or collapsed after training (final accuracy under it again), how many failed (diverged or either of those),
    and the losses of the complete runs that failed."""
    mine = study_runs(plan, runs)
    done = mine[mine["status"] == "complete"]
    failed = done[~done["trained"] | done["collapsed"]]
    diverged = int((mine["status"] == "diverged").sum())
    return {"finished": int(mine["status"].isin(FINISHED).sum()), "complete": len(done),
            "trained": int(done["trained"].sum()), "diverged": diverged, "failed": diverged + len(failed),
            "did_not_train": int((~done["trained"]).sum()), "collapsed": int(done["collapsed"].sum()),
            "failed_losses": list(dict.fromkeys(failed["loss_tag"])),
            "did_not_train_by_loss": (~done["trained"]).groupby(done["loss_tag"]).sum().astype(int).to_dict(),
            "seeds_by_loss": done.groupby("loss_tag")["seed"].nunique().to_dict()}


def all_train_chance(outcomes: dict, runs: int) -> float:
    """The probability that ``runs`` runs all train and hold, each failing (diverging, not training, or collapsing
    after training) at the rate of a study's finished runs (``outcomes``, from run_outcomes)."""
    return (1 - outcomes["failed"] / outcomes["finished"]) ** runs


def fit_at_end(plan: Plan, runs: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Whether the network fits its training data: per run that trained and did not collapse, the last epoch's
    training accuracy (on the augmented batches it trained on, in training mode) against its test accuracy.
    Counts the runs whose training accuracy is below their test accuracy, and gives the mean of (train - test)
    over all of them and the largest of its means per loss."""
    mine = study_runs(plan, runs)
    kept = mine[mine["trained"] & ~mine["collapsed"]][["loss_tag", "seed"]]
    last = plan.select(curves).sort_values("epoch").groupby(["loss_tag", "seed"]).tail(1)
    last = last.merge(kept, on=["loss_tag", "seed"])
    gap = last["train_acc"] - last["test_acc"]
    return {"runs": len(last), "train_below_test": int((gap < 0).sum()), "mean_gap": float(gap.mean()),
            "largest_loss_gap": float(gap.groupby(last["loss_tag"]).mean().max()),
            "train_acc": float(last["train_acc"].mean()), "test_acc": float(last["test_acc"].mean())}


def plain_fit_at_end(plan: Plan, runs: pd.DataFrame) -> dict:
    """The fit as the pilot's regime criterion measures it: per complete run that trained and did not collapse,
    accuracy on its own un-augmented training images at the end (evaluation mode) minus its final test accuracy.
    Counts the runs whose gap is above zero, and gives the mean gap, the least gap of a run and the least and
    largest of its means per loss."""
    mine = study_runs(plan, runs)
    kept = mine[(mine["status"] == "complete") & mine["trained"] & ~mine["collapsed"] & mine["train_eval_acc"].notna()]
    gap = kept["train_eval_acc"] - kept["final_test_acc"]
    per_loss = gap.groupby(kept["loss_tag"]).mean()
    return {"runs": len(kept), "above": int((gap > 0).sum()), "mean_gap": float(gap.mean()),
            "least_gap": float(gap.min()), "smallest_loss_gap": float(per_loss.min()),
            "largest_loss_gap": float(per_loss.max())}


def accuracy_beside(plan: Plan, other: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss that both plans run: its mean of the plan's metric over the runs that trained in each plan's study
    (columns named by study) and ``gain``, the plan's mean minus the other's. A description across two studies,
    not a test: their runs share seeds but not networks."""
    means = {}
    for each in (plan, other):
        mine = study_runs(each, runs)
        means[each.study] = mine[mine["trained"]].groupby("loss_tag")[each.metric].mean()
    table = pd.DataFrame(means).dropna()
    return table.assign(gain=table[plan.study] - table[other.study])
