"""A planned study in tables: per loss, its seeds and failed runs and its accuracy with a confidence interval;
each verdict of the plan; its runs so far and what its seeds detect; the same losses in another study beside it.
Chapters display these and say in their own words what they mean; the numbers come from lossnb.plan and
lossnb.stats."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import stats
from .findings import run_outcomes
from .names import study_in_words
from .plan import Plan, study_runs

POINTS = 100  # accuracies are fractions in records and points (%) on the page


LEAST_FOR_AN_INTERVAL = 3  # seeds: a t interval from two spans most of the scale and says nothing
NBSP = "\u00a0"  # an interval breaks before its bracket, never inside it, in a table cell that wraps


def percent_ci(values) -> str:
    """'91.23 [90.95, 91.51]': mean and 95% t interval, in points, cut at 0 and 100; the mean alone below 3
    values."""
    values = np.asarray(values, dtype=float)
    mean, low, high = stats.mean_ci(values * POINTS, bounds=(0, POINTS))
    if np.isnan(mean):
        return "–"
    if np.isnan(low) or len(values) < LEAST_FOR_AN_INTERVAL:
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f},{NBSP}{high:.2f}]"


def loss_table(plan: Plan, runs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """One row per loss of the plan: runs recorded, those that did not train or diverged (with their seeds),
    and over the trained ones best and final test accuracy and final ECE (mean [95% CI], %), and the median
    best epoch."""
    return runs_table(study_runs(plan, runs), plan.tags(), labels)


def runs_table(sel: pd.DataFrame, tags: list[str], labels: dict[str, str], split: str = "test") -> pd.DataFrame:
    """The same table for any runs with a ``trained`` column (lossnb.plan.study_runs, mark_trained), one row
    per tag in order; ``split`` names the evaluation split in the column headers."""
    rows = []
    for tag in tags:
        mine = sel[sel["loss_tag"] == tag]
        ok = mine[mine["trained"]]
        failed = mine[(mine["status"] == "complete") & ~mine["trained"]]
        diverged = mine[mine["status"] == "diverged"]
        rows.append({"loss": labels.get(tag, tag), "runs": len(mine), "trained": len(ok),
                     "did not train": _seeds(failed), "diverged": _seeds(diverged),
                     f"best {split} acc %": percent_ci(ok["best_test_acc"]),
                     f"final {split} acc %": percent_ci(ok["final_test_acc"]),
                     f"final {split} ECE %": percent_ci(ok["final_test_ece"]),
                     "best epoch": f"{ok['best_epoch'].median() + 1:.0f}" if len(ok) else "–"})
    table = pd.DataFrame(rows).set_index("loss")
    final = f"final {split} acc %"
    if len(sel) and (sel.loc[sel["trained"], "best_test_acc"] == sel.loc[sel["trained"], "final_test_acc"]).all():
        table = table.drop(columns=final)  # the best epoch was the last in every run: one column says it
    return table


def by_accuracy(sel: pd.DataFrame) -> list[str]:
    """The loss tags of ``sel`` (with a ``trained`` column), highest mean best accuracy over trained runs first,
    then those with no trained run."""
    means = sel[sel["trained"]].groupby("loss_tag")["best_test_acc"].mean().sort_values(ascending=False)
    return list(means.index) + sorted(set(sel["loss_tag"]) - set(means.index))


def trained_runs(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the plan's losses that trained, in the order the plan names the losses."""
    sel = study_runs(plan, runs)
    sel = sel[sel["trained"] & sel["loss_tag"].isin(plan.tags())]
    return sel.sort_values("loss_tag", key=lambda tags: tags.map(plan.tags().index), kind="stable")


def unplanned_tables(runs: pd.DataFrame, split: str = "test") -> list[tuple[str, object, pd.DataFrame]]:
    """(the study in words, its seed dots, its runs_table) for each study and task of ``runs``, highest mean best
    accuracy first; for studies no plan tests (validation studies, tasks apart)."""
    from .names import labels_of, study_in_words
    from .plotting import seed_dots
    from .results import with_trained

    tables = []
    for (name, task), sel in runs.groupby(["study", "task"]):
        sel = with_trained(sel)
        order, labels = by_accuracy(sel), labels_of(sel)
        tables.append((f"**{study_in_words(sel.iloc[0], capital=True)}**",
                       seed_dots(sel, order, labels, xlabel=f"best {split} accuracy (%)"),
                       runs_table(sel, order, labels, split=split)))
    return tables


def outside_plan(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """The losses the plan's study trained on its task that no family of the plan compares, as a runs_table,
    highest mean best accuracy first (empty where there are none)."""
    from .names import labels_of

    mine = study_runs(plan, runs)
    others = mine[~mine["loss_tag"].isin(plan.tags())]
    if others.empty:
        return pd.DataFrame()
    return runs_table(others, by_accuracy(others), labels_of(others))


def pictured_runs(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the curve and calibration figures average: those that trained, less those that collapsed after
    training (the ``collapsed`` column of study_runs). The plan's tables count a collapsed run as trained, by
    its best accuracy; a figure of means shows what a working run does, and the failure table shows each
    collapsed run apart."""
    sel = trained_runs(plan, runs)
    return sel[~sel["collapsed"]]


def curves_of(plan: Plan, curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows of the plan's pictured runs (pictured_runs): a run that did not train is out of the
    curves' means as out of the plan's (the seed dots show it), and so is one that collapsed (the failure
    table and its curves show it)."""
    pictured = pictured_runs(plan, runs)[["loss_tag", "seed"]]
    return plan.select(curves).merge(pictured, on=["loss_tag", "seed"])


def last_epochs(mine: pd.DataFrame, tags: list[str], labels: dict[str, str], share: float = 0.1,
                ends: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per loss, means over the runs of ``mine`` (curves_of): the change of test accuracy over the last ``share``
    of the epochs, and training minus test accuracy at the last epoch, in points. Is the network still
    learning when the schedule ends, and has training accuracy pulled away from test accuracy? The training
    accuracy of the curves is read on the augmented batches; where ``ends`` (study_runs of the same plan) records
    the accuracy on the un-augmented training images at the end, a third column gives that minus the final test
    accuracy over the same runs: the fit as the pilot's regime criterion measures it."""
    last = int(mine["epoch"].max())
    back = max(1, round(share * (last + 1)))
    at = mine[mine["epoch"].isin([last - back, last])].pivot_table(
        index=["loss_tag", "seed"], columns="epoch", values=["test_acc", "train_acc"])
    per_run = pd.DataFrame({"gain": at[("test_acc", last)] - at[("test_acc", last - back)],
                            "gap": at[("train_acc", last)] - at[("test_acc", last)]}).dropna()
    columns = {"gain": f"test acc change over the last {back} epochs (pts)",
               "gap": "train − test acc at the last epoch, augmented (pts)"}
    if ends is not None and "train_eval_acc" in ends and ends["train_eval_acc"].notna().any():
        own = ends.set_index(["loss_tag", "seed"])
        per_run["plain_gap"] = own["train_eval_acc"] - own["final_test_acc"]
        columns["plain_gap"] = "train − test acc at the end, un-augmented (pts)"
    means = POINTS * per_run.groupby("loss_tag").mean()
    present = [t for t in tags if t in means.index]
    table = means.loc[present, list(columns)].round(2).rename(columns=columns)
    table = table.set_axis([labels.get(t, t) for t in present])
    table.attrs["epochs"] = back
    return table


def panels_present(plan: Plan, mine: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The plan's figure panels (Plan.panels) holding only the losses ``mine`` (curves_of) has, empty panels
    dropped."""
    present = set(mine["loss_tag"])
    panels = [(title, [t for t in tags if t in present]) for title, tags in plan.panels()]
    return [(title, tags) for title, tags in panels if tags]


def answered(plan: Plan, runs: pd.DataFrame) -> bool:
    """Whether every planned run has finished (complete, or stopped where it diverged: an outcome the plan counts
    as a failure, not a run still to come). A plan's tests are read once, then: before it, the pages that gather
    every study's comparisons (and a study's own spread) leave the study out, since an interim look is not what
    its plan provides for."""
    return run_outcomes(plan, runs)["finished"] == plan.planned


def without_unanswered(plans: list[Plan], runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` less the runs of every plan not yet answered: for a chapter that reads every study's records
    (tables across studies, calibration families), so that a study under way shows nothing of its test sets
    there before its plan's one reading."""
    under_way = [p for p in plans if not answered(p, runs)]
    drop = pd.Series(False, index=runs.index)
    for plan in under_way:
        drop |= (runs["study"] == plan.study) & runs["task"].isin(plan.tasks)
    return runs[~drop]


def failure_rate_table(plan: Plan, runs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """lossnb.plan.failure_rates for display: per loss, its failed runs out of its finished ones (complete or
    diverged) and the rate with its exact 95% interval, in %."""
    from .plan import failure_rates

    rows = {}
    for r in failure_rates(plan, runs).to_dict("records"):
        rows[labels.get(r["loss_tag"], r["loss_tag"])] = {
            "failed": f"{r['failed']} of {r['runs']}",
            "rate %, exact 95% CI": "–" if not r["runs"] else
            f"{POINTS * r['rate']:.0f} [{POINTS * r['ci low']:.0f},{NBSP}{POINTS * r['ci high']:.0f}]"}
    return pd.DataFrame(rows).T


def progress_table(plans: list[Plan], runs: pd.DataFrame) -> pd.DataFrame:
    """Per plan (its study in words): runs planned, complete, trained, failed to train, collapsed after training,
    diverged, and when the plan was fixed. A chapter says in its own words what these counts mean for it."""
    rows = {}
    for plan in plans:
        counts = run_outcomes(plan, runs)
        rows[plan.heading] = {"planned": plan.planned, **{key.replace("_", " "): counts[key] for key in (
            "complete", "trained", "did_not_train", "collapsed", "diverged")},
            "plan fixed": "before the runs" if plan.before_the_runs else "after the runs"}
    return pd.DataFrame(rows).T


def _seeds(runs: pd.DataFrame) -> str:
    return f"{len(runs)} (seed {', '.join(map(str, sorted(runs['seed'])))})" if len(runs) else "0"


def verdict_tables(comparisons: pd.DataFrame, labels: dict[str, str]) -> dict[str, pd.DataFrame]:
    """{family: its comparisons for display}: a − b in points with its 95% CI, the Holm-adjusted p of the
    difference and of equivalence, the verdict; one row per comparison, the comparison as its index."""
    tables = {}
    for family, block in comparisons.groupby("family", sort=False):
        tables[family] = pd.DataFrame({
            "seeds": block["seeds"].to_numpy(),
            "a − b (pts), 95% CI": [_diff(r) for r in block.to_dict("records")],
            "p, difference": block["p (t, Holm)"].map(_p).to_numpy(),
            "p, equivalence": block["p (TOST, Holm)"].map(_p).to_numpy(),
            "verdict": block["verdict"].to_numpy()},
            index=pd.Index([f"{labels.get(a, a)} − {labels.get(b, b)}" for a, b in zip(block["a"], block["b"])],
                           name="a − b"))
    return tables


def _diff(row: dict) -> str:
    if np.isnan(row["mean diff"]):
        return "–"
    text = f"{POINTS * row['mean diff']:+.2f}"
    if np.isnan(row["ci low"]):
        return text
    return f"{text} [{POINTS * row['ci low']:+.2f},{NBSP}{POINTS * row['ci high']:+.2f}]"


def _p(p: float) -> str:
    """Two significant digits ('0.027', '0.41', '1'), and '< 0.001' below that."""
    return "–" if np.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def beside_other_study(plan: Plan, runs: pd.DataFrame, other: str, labels: dict[str, str]) -> pd.DataFrame:
    """The plan's losses in its study and in ``other`` (same task): best accuracy mean [95% CI] and each loss's
    rank by mean in either, over runs that trained."""
    columns = {}
    for study in (other, plan.study):
        sel = study_runs(plan, runs, study)
        ok = sel[sel["trained"]]
        means = ok.groupby("loss_tag")["best_test_acc"].mean()
        ranks = means.rank(ascending=False, method="min")
        length = f"{int(sel['epochs'].iloc[0])} epochs" if len(sel) else study  # the two studies differ in length
        columns[f"{length}: best acc %"] = {t: percent_ci(ok.loc[ok["loss_tag"] == t, "best_test_acc"])
                                            for t in plan.tags()}
        columns[f"{length}: rank"] = {t: f"{ranks[t]:.0f}" if t in ranks else "–" for t in plan.tags()}
    table = pd.DataFrame(columns)
    table.index = [labels.get(t, t) for t in table.index]
    return table


def cost_table(plan: Plan, runs: pd.DataFrame, curves: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Per loss: complete runs, mean wall minutes per run (a pack's time shared among its runs), mean training
    images per second over epochs, and the machines that ran them."""
    sel = study_runs(plan, runs)
    done = sel[sel["status"] == "complete"]
    mine = plan.select(curves)
    rows = {}
    for tag in plan.tags():
        d = done[done["loss_tag"] == tag]
        rate = mine.loc[mine["loss_tag"] == tag, "train_images_per_second"]
        rows[labels.get(tag, tag)] = {
            "runs": len(d), "minutes / run": f"{(d['wall_seconds'] / d['pack_size'].clip(lower=1)).mean() / 60:.1f}"
            if len(d) else "–", "images / s": f"{rate.mean():,.0f}" if len(rate) else "–",
            "machine": ", ".join(sorted(set(d["device_name"].dropna()))) or "–"}
    return pd.DataFrame(rows).T


def seeds_table(plans: list[Plan], runs: pd.DataFrame) -> pd.DataFrame:
    """Per plan (a column: its study in words), what its seeds detect with 80% power at the strictest test of its first
    family: at the spread its power rule planned on (the source study's paired differences) and, as a
    description rather than a test, at the spread of its own once every planned run has finished; the target
    where the seed budget could not reach it, and the range of its own pairs' spreads with the widest pair named
    (a pooled spread is led by it)."""
    from .plan import PlanError, seed_count

    rows = {}
    for plan in plans:
        row = {"seeds": "–", "α (strictest)": f"{plan.alpha / len(plan.families[0].pairs):.4f}",
               "planned on SD": "no power rule (plan fixed after the runs)", "detects, planned": "–",
               "target": "–", "own SD": "–", "own pairs' SDs": "–", "detects, own SD": "–"}
        if plan.seeds:
            try:
                rule = seed_count(plan, runs)
            except PlanError:
                row["planned on SD"] = f"the records of {plan.seeds['source']['study']} are not here"
            else:
                where = plan.seeds["source"]
                source = runs[(runs["study"] == where["study"]) & (runs["task"] == where["task"])].iloc[0]
                row |= {"seeds": str(len(plan.seeds["order"][:rule["seeds"]])),
                        "planned on SD": f"{POINTS * rule['sd']:.2f} ({study_in_words(source)}, "
                                         f"{len(rule['pairs'])} pairs" + (
                            f"; the {plan.seeds['upper_confidence']:.0%} upper confidence limit of "
                            f"{POINTS * rule['estimate']:.2f})" if plan.seeds.get("upper_confidence") else ")"),
                        "detects, planned": f"{POINTS * rule['detectable']:.2f}",
                        "target": f"{POINTS * plan.seeds['target']:g}" + (
                            f" (not reached within {plan.seeds['most']} seeds)" if rule["capped"] else "")}
        now = sensitivity(plan, runs) if answered(plan, runs) else None  # its own spread: once it has finished
        if now:
            a, b = now["widest"]
            labels = plan.labels()
            pairs = "1 pair" if now["pairs"] == 1 else f"{now['pairs']} pairs"
            widest = f"{labels.get(a, a)} − {labels.get(b, b)}"
            row |= {"own SD": f"{POINTS * now['sd']:.2f} ({pairs}, {now['seeds']} seeds)",
                    "own pairs' SDs": f"one pair: {widest}" if now["pairs"] == 1 else
                    f"{POINTS * now['narrowest_sd']:.2f} to {POINTS * now['widest_sd']:.2f}, widest {widest}",
                    "detects, own SD": f"{POINTS * now['detectable']:.2f}"}
            if row["seeds"] == "–":
                row["seeds"] = str(now["seeds"])
        rows[plan.heading] = row
    return pd.DataFrame(rows)  # a column per study: the quantities are long, the studies few


def sensitivity(plan: Plan, runs: pd.DataFrame, power: float = 0.8) -> dict | None:
    """The smallest difference the first family's strictest test (alpha / its size) detects with ``power``,
    at the spread of the study's own paired differences (pooled over the pairs, weighted by their degrees of
    freedom: the same computation as a plan's power rule, so one spread is one number wherever it appears) and
    the median common seed count; None before any pair has 3 common seeds."""
    from .plan import compare, pooled_sd

    table = compare(plan, runs)
    first = table[(table["family"] == plan.families[0].name) & (table["seeds"] >= 3)]
    if not len(first):
        return None
    mine = study_runs(plan, runs)
    wide = mine[mine["trained"]].pivot_table(index="seed", columns="loss_tag", values=plan.metric)
    sd, _, per_pair = pooled_sd(wide, zip(first["a"], first["b"]))
    sds = pd.Series(per_pair)
    seeds = int(first["seeds"].median())
    alpha = plan.alpha / len(plan.families[0].pairs)
    # a pooled spread is led by its largest terms: the pair that sets it is named beside it
    return {"sd": sd, "pairs": len(first), "seeds": seeds, "widest": sds.idxmax(), "widest_sd": float(sds.max()),
            "narrowest_sd": float(sds.min()), "detectable": stats.detectable_difference(sd, seeds, alpha, power)}
