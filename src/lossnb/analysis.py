"""Decisions on run tables (lossnb.results.load_runs) that are not a plan's tests: the setting chosen on a
validation split, the ECE of pooled reliability bins, and our numbers beside a published row. The plans'
tests are in lossnb.plan; notebooks call these and draw, and no notebook cell decides a claim."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .results import mean_std_table


def choose_on_validation(runs: pd.DataFrame, study: str, loss: str, metric: str = "best_test_acc"):
    """(the loss tag, the table of settings): the setting of registry loss ``loss`` with the highest mean
    ``metric`` in ``study``, which must evaluate on a validation split; (None, empty) if it ran none."""
    sel = runs[(runs["study"] == study) & (runs["loss"] == loss)]
    if sel.empty:
        return None, pd.DataFrame()
    splits = set(sel["eval_split"])
    if splits != {"val"}:
        raise ValueError(f"{study} evaluates on {', '.join(sorted(splits))}: settings are chosen on a validation "
                         "split only")
    table = mean_std_table(sel)
    return table[f"{metric} mean"].idxmax(), table


def pooled_ece(bins: pd.DataFrame) -> float:
    """Expected calibration error of reliability bins pooled over runs (lossnb.results.pooled_reliability): the
    count-weighted mean |accuracy - confidence|. It can differ from the mean of the runs' own ECEs."""
    weight = bins["count"] / bins["count"].sum()
    return float((weight * (bins["accuracy"] - bins["confidence"]).abs()).sum())


def beside_published(runs: pd.DataFrame, published: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Our best-epoch accuracy beside a published one of the same task, both as mean ± std (in %) over their
    seeds: one row per published loss we ran (``names`` maps the published name to our loss tag), with ours
    minus theirs and Welch's t-test between the two sets of seeds (unpaired: the same seed number does not give
    the same initialisation in another harness)."""
    table = mean_std_table(runs)
    done = runs[runs["status"] == "complete"]
    rows = []
    for loss, pub in published.groupby("loss", sort=False):
        tag = names.get(loss)
        if tag not in table.index:
            continue
        ours = 100 * done.loc[done["loss_tag"] == tag, "best_test_acc"].to_numpy()
        theirs = pub["best_test_acc_percent"].to_numpy(dtype=float)
        testable = len(ours) > 1 and len(theirs) > 1
        rows.append({"loss": loss, "ours": tag, "seeds (ours)": len(ours), "ours mean %": ours.mean(),
                     "ours std %": ours.std(ddof=1) if len(ours) > 1 else np.nan, "seeds (theirs)": len(theirs),
                     "theirs mean %": theirs.mean(), "theirs std %": theirs.std(ddof=1) if len(theirs) > 1 else np.nan,
                     "ours - theirs (pts)": ours.mean() - theirs.mean(),
                     "p (Welch t)": stats.ttest_ind(ours, theirs, equal_var=False).pvalue if testable else np.nan,
                     "source": ", ".join(pub["source"].unique())})
    return pd.DataFrame(rows)


def published_report(runs: pd.DataFrame, published: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """beside_published for display: the published name, ours and theirs, the difference and Welch's p
    (uncorrected, descriptive); empty where no loss the benchmark reports has a record here."""
    side = beside_published(runs, published, names)
    return side.drop(columns=["source"]).set_index("loss").round(3) if len(side) else side
