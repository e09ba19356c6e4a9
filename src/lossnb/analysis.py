"""The decisions the book states, as functions of run tables (lossnb.results.load_runs): every pair of losses
tested with one correction, a design's verdict against the baselines, our numbers beside a published row, and
the cost of a run. Notebooks call these and draw; no notebook cell decides a claim."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .results import did_not_train, mean_std_table
from .stats import holm
from .trainer.config import loss_tag_of


def all_pairs(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """Every pair of losses of one study, on the seeds both completed: mean paired difference (higher mean minus
    lower), its std, a two-sided paired t-test (scipy.stats.ttest_rel) and Holm's adjustment over all pairs."""
    trained = runs[(runs["status"] == "complete") & ~did_not_train(runs)]  # a failed run is counted apart
    wide = trained.pivot_table(index="seed", columns="loss_tag", values=metric)
    order = wide.mean().sort_values(ascending=False).index.tolist()
    rows = []
    for a, b in combinations(order, 2):
        both = wide[[a, b]].dropna()
        diff = both[a] - both[b]
        rows.append({"higher": a, "lower": b, "seeds": len(both), "mean diff": diff.mean(),
                     "std diff": diff.std(ddof=1) if len(both) > 1 else np.nan,
                     "p (paired t)": stats.ttest_rel(both[a], both[b]).pvalue if len(both) > 2 else np.nan})
    pairs = pd.DataFrame(rows, columns=["higher", "lower", "seeds", "mean diff", "std diff", "p (paired t)"])
    pairs["p (Holm)"] = holm(pairs["p (paired t)"].to_numpy()) if len(pairs) else []
    return pairs


def beats(pairs: pd.DataFrame, a: str, b: str, alpha: float = 0.05) -> bool:
    """``a`` has the higher mean than ``b`` and the paired test says so after Holm's correction."""
    row = pairs[(pairs["higher"] == a) & (pairs["lower"] == b)]
    return bool(len(row)) and bool(row["p (Holm)"].iloc[0] < alpha)


def ordering(pairs: pd.DataFrame, a: str, b: str, alpha: float = 0.05) -> dict:
    """What the study says of ``a`` against ``b``: their paired mean difference (a - b) and Holm p, and the
    verdict, "a > b", "a < b", "no difference survives Holm", or "not tested" below 3 common seeds."""
    row = pairs[((pairs["higher"] == a) & (pairs["lower"] == b)) | ((pairs["higher"] == b) & (pairs["lower"] == a))]
    if not len(row):
        raise ValueError(f"no pair {a!r} / {b!r} in this study")
    row = row.iloc[0]
    sign = 1 if row["higher"] == a else -1
    held = bool(row["p (Holm)"] < alpha)
    verdict = (f"{a} > {b}" if sign > 0 else f"{a} < {b}") if held else "no difference survives Holm"
    if np.isnan(row["p (Holm)"]):
        verdict = f"not tested ({int(row['seeds'])} common seeds; a test needs 3)"
    return {"a": a, "b": b, "seeds": int(row["seeds"]), "mean diff": sign * row["mean diff"],
            "p (Holm)": row["p (Holm)"], "verdict": verdict}


def design_verdict(pairs: pd.DataFrame, design: str, baselines: list, alpha: float = 0.05) -> dict:
    """The book's rule: a design meets the target in a study when it beats every baseline (higher mean, Holm-
    adjusted paired p < alpha, over all pairs of the study). A baseline is a loss tag, or a list of tags of one
    loss at several settings (each one the study ran must be beaten); a baseline the study lacks leaves the
    design unjudged."""
    present = set(pairs["higher"]) | set(pairs["lower"])
    groups = [[b] if isinstance(b, str) else list(b) for b in baselines]
    missing = [" or ".join(g) for g in groups if not set(g) & present]
    ran = [t for g in groups for t in g if t in present]
    won = {b: beats(pairs, design, b, alpha) for b in ran}
    lost = {b: beats(pairs, b, design, alpha) for b in ran}
    return {"design": design, "beats": [b for b, w in won.items() if w], "beaten_by": [b for b, w in lost.items() if w],
            "missing": missing, "meets_target": not missing and design in present and all(won.values())}


def verdict_line(verdict: dict) -> str:
    """A design's verdict in words, naming what it beat, what beat it and what the study lacked."""
    if verdict["missing"]:
        return f"not judged: {', '.join(verdict['missing'])} did not run here"
    line = "meets the target" if verdict["meets_target"] else "does not meet the target"
    line += f"; beats {', '.join(verdict['beats'])}" if verdict["beats"] else "; beats no baseline"
    return line + (f"; beaten by {', '.join(verdict['beaten_by'])}" if verdict["beaten_by"] else "")


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


def ci_half_width(pairs: pd.DataFrame, level: float = 0.95) -> pd.Series:
    """Half-width of the t confidence interval of each pair's mean paired difference: std / sqrt(n) times the
    t quantile with n - 1 degrees of freedom (NaN below 2 seeds)."""
    n = pairs["seeds"].astype(float)
    quantile = stats.t.ppf(0.5 + level / 2, (n - 1).where(n > 1))
    return pd.Series(quantile * pairs["std diff"] / np.sqrt(n), index=pairs.index)


def tags(*losses) -> list[str]:
    """Loss tags (the run folders' names) of (name, params) pairs or bare names, e.g. tags("ce",
    ("label_smoothing", {"eps": 0.1})): a notebook names its baselines by loss and settings, not by path."""
    return [loss_tag_of(*entry) if isinstance(entry, (tuple, list)) else loss_tag_of(entry, {}) for entry in losses]


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


def cost_per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss: device minutes a run took, its pack's wall time shared equally among the pack's runs."""
    done = runs[runs["status"] == "complete"].assign(
        minutes=lambda r: r["wall_seconds"] / r["pack_size"].clip(lower=1) / 60)
    return done.groupby("loss_tag").agg(runs=("minutes", "size"), minutes_per_run=("minutes", "mean"),
                                        pack_size=("pack_size", "max"), device=("device_name", "first"))
