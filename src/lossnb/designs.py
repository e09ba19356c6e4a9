"""Our designs in the book: the setting each takes from a validation split, where the grids run it, the
evidence on it from every planned study, and the comparisons the design chapter makes after seeing results
(ablations, the calibration of label smoothing's two parts), tested as a plan's are and disclosed as post hoc."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pandas as pd

from .analysis import choose_on_validation
from .names import grid_in_words, labels_of, plain_name, study_in_words
from .plan import ECE_VERDICTS, Family, Plan, compare, compare_families
from .results import pooled_reliability, with_trained
from .study import answered, by_accuracy, runs_table, verdict_tables

POINTS = 100


def validation_choice(runs: pd.DataFrame, study: str, loss: str) -> tuple[str | None, pd.DataFrame]:
    """(the chosen tag, the study's table of ``loss``'s settings, best validation accuracy first): the setting
    with the highest mean best-epoch validation accuracy; (None, empty) where the study ran none."""
    chosen, _ = choose_on_validation(runs, study, loss)
    if chosen is None:
        return None, pd.DataFrame()
    sel = with_trained(runs[(runs["study"] == study) & (runs["loss"] == loss)])
    return chosen, runs_table(sel, by_accuracy(sel), labels_of(sel), split="val")


def choice_tables(runs: pd.DataFrame, loss: str, tuning_study: str, check_study: str,
                  grids_dir: str | Path) -> dict:
    """The design's settings chosen on validation splits: ``chosen`` on the tuning study and ``check`` on the
    check study (None where it ran no setting), each study's table of settings (best first), and ``grids``:
    the setting every test grid runs and why. The chapter says in words what the choice is."""
    chosen, table = validation_choice(runs, tuning_study, loss)
    check, check_table = validation_choice(runs, check_study, loss)
    reasons = {check: "the ResNet-20 split's choice"} if check else {}
    return {"chosen": chosen, "check": check, "tuning": table, "check_table": check_table if check else None,
            "grids": settings_in_grids(grids_dir, runs, loss, reasons | {chosen: "the ConvNet split's choice"})}


def label_of(runs: pd.DataFrame, tag: str | None) -> str:
    """A recorded loss tag in words ('capped CE p_cap=0.97, sharpness=10'); '–' for None."""
    return "–" if tag is None else labels_of(runs[runs["loss_tag"] == tag]).get(tag, tag)


def settings_in_grids(grids_dir: str | Path, runs: pd.DataFrame, loss: str, reasons: dict[str, str]) -> pd.DataFrame:
    """Per test grid that runs ``loss`` (its studies in words, and whether any of its runs has a record yet): the
    settings it runs and why (``reasons``: {tag: why}; a setting with no reason is an ablation)."""
    from .grid import load_grid

    rows = []
    for path in sorted(Path(grids_dir).glob("*.yaml")):
        grid = load_grid(path)
        if grid.protocol.endswith("tuning") or not any(cfg.loss == loss for cfg in grid.runs):
            continue
        recorded = runs["study"].isin({str(c.run_path().parts[0]) for c in grid.runs}).any()
        study = grid_in_words(grid) + ("" if recorded else " (not run yet)")
        for tag, params in dict.fromkeys((c.loss_tag(), tuple(sorted(c.loss_params.items())))
                                         for c in grid.runs if c.loss == loss):
            rows.append({"study": study, "setting": plain_name(loss, dict(params)),
                         "why": reasons.get(tag, "an ablation")})
    return pd.DataFrame(rows).set_index("study") if rows else pd.DataFrame()


def evidence(plans: list[Plan], runs: pd.DataFrame, loss: str) -> pd.DataFrame:
    """Every planned comparison of a setting of the design ``loss`` (a registry name) with a baseline, one row
    per study and baseline (the setting, the difference with its 95% CI, Holm-adjusted p of difference and
    equivalence, verdict), from every answered plan (every planned run complete: lossnb.study.answered)."""
    tables = []
    for plan in (p for p in plans if answered(p, runs)):
        comparisons = compare(plan, runs)
        mine = comparisons[comparisons["a"].map(lambda key: key.split("/")[-1].split("-")[0]) == loss]
        labels = plan.labels()
        for tag, rows in mine.groupby("a", sort=False):
            setting = label_of(runs, tag.split("/")[-1])
            # a study with nothing run yet has no rows of dashes
            for table in (verdict_tables(rows, labels).values() if rows["seeds"].max() else []):
                tables.append(table.assign(study=plan.title, setting=setting)
                              .set_index(["study", "setting"], append=True).reorder_levels([1, 2, 0]))
    return pd.concat(tables) if tables else pd.DataFrame()


def against_one(runs: pd.DataFrame, study: str, task: str, others: list[str], reference: str,
                name: str, metric: str = "best_test_acc", margin: float = 0.005,
                alpha: float = 0.05) -> pd.DataFrame:
    """Each of ``others`` against ``reference`` in one study and task, as one family tested like a plan's
    (paired t and TOST, Holm within the family): for comparisons chosen after seeing the results."""
    sel = with_trained(runs[(runs["study"] == study) & (runs["task"] == task)])
    present = set(sel["loss_tag"])
    pairs = [(o, reference) for o in others if o in present and reference in present]
    if not pairs:
        return pd.DataFrame()
    return compare_families(sel, [Family(name, "versus", pairs)], metric, margin, alpha)


def ablations(runs: pd.DataFrame, study: str, task: str, chosen: str, loss: str) -> pd.DataFrame:
    """Every other setting of ``loss`` the study ran, and cross-entropy, against the chosen setting: one family,
    for display (lossnb.study.verdict_tables); empty without such runs."""
    ran = runs.loc[(runs["study"] == study) & (runs["task"] == task), "loss_tag"].unique()
    variants = sorted(t for t in ran if t.split("-")[0] == loss and t != chosen) + ["ce"]
    table = against_one(runs, study, task, variants, chosen, "ablations")
    return verdict_tables(table, labels_of(runs[runs["study"] == study]))["ablations"] if len(table) else table


def ece_tables(runs: pd.DataFrame, parts: list[str], designs: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """('study (task)', ece_of_parts for display) for every test study and task that ran one of ``designs``."""
    tables = []
    test = runs[runs["loss_tag"].isin(designs) & (runs["eval_split"] == "test")]
    for (study, task), _ in test.groupby(["study", "task"]):
        ece = ece_of_parts(runs, study, task, parts)
        if len(ece):
            first_run = test[(test["study"] == study) & (test["task"] == task)].iloc[0]
            tables.append((f"**{study_in_words(first_run, capital=True)}**",
                           verdict_tables(ece, labels_of(runs[runs["study"] == study]))["final ECE"]))
    return tables


def ece_of_parts(runs: pd.DataFrame, study: str, task: str, parts: list[str], margin: float = 0.005,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Every pair of ``parts`` compared on final-epoch test ECE in one study, one family (paired t and TOST,
    Holm within it); verdicts read 'higher ECE' / 'lower ECE' for the first of the pair."""
    sel = with_trained(runs[(runs["study"] == study) & (runs["task"] == task)])
    present = [t for t in parts if t in set(sel["loss_tag"])]
    if len(present) < 2:
        return pd.DataFrame()
    table = compare_families(sel, [Family("final ECE", "versus", list(combinations(present, 2)))],
                             "final_test_ece", margin, alpha)
    return table.assign(verdict=table["verdict"].replace(ECE_VERDICTS))


def top_bin_shares(runs: pd.DataFrame, tags: list[str]) -> pd.DataFrame:
    """Per study (in words, with its device where two studies read alike), task (one model each: a linear and a
    cosine head are not pooled) and loss among ``tags``: the share of final-epoch test predictions in the top
    confidence bin, pooled over trained seeds, and the accuracy in that bin, in %."""
    rows = []
    trained = with_trained(runs)
    # a cosine head's recorded softmax is of raw cosines, not of the logits its loss trained: no confidence
    trained = trained[trained["trained"] & trained["loss_tag"].isin(tags) & ~trained["task"].str.contains("-cosine-")]
    labels = labels_of(trained) if len(trained) else {}
    for (study, task, tag), sel in trained.groupby(["study", "task", "loss_tag"]):
        bins = pooled_reliability(sel["dir"].tolist())
        if bins.empty:
            continue
        top = bins.iloc[-1]
        device = "GPU" if sel["device_name"].str.contains("NVIDIA|GPU", na=False).any() else "CPU"
        rows.append({"id": (study, task), "study": study_in_words(sel.iloc[0], capital=True), "device": device,
                     "loss": labels[tag], "seeds": len(sel),
                     f"% of predictions with confidence ≥ {top['bin_lo']:.3f}":
                         f"{POINTS * top['count'] / bins['count'].sum():.1f}",
                     "accuracy in that bin %": f"{POINTS * top['accuracy']:.1f}"})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    alike = table.groupby("study")["id"].transform("nunique") > 1
    table["study"] = table["study"].where(~alike, table["study"] + ", on a " + table["device"])
    return table.drop(columns=["id", "device"]).set_index(["study", "loss"])


def eps_sweep(runs: pd.DataFrame, loss: str, ls_tag: str, chosen: str) -> pd.DataFrame:
    """The trained test-set runs of every ε of ``loss``, with cross-entropy (ε = 0) and label smoothing
    (``ls_tag``) of the same studies and tasks for reference; columns eps, 'loss name' and 'tag' (the colour's:
    ``loss``'s line takes that of its ``chosen`` setting) added."""
    test = with_trained(runs[runs["eval_split"] == "test"])
    test = test[test["trained"]]
    studies = test.loc[test["loss"] == loss, ["study", "task"]].drop_duplicates()
    sel = test.merge(studies, on=["study", "task"])
    sel = sel[(sel["loss"] == loss) | sel["loss_tag"].isin(["ce", ls_tag])]
    eps = [0.0 if t == "ce" else p.get("eps") for t, p in zip(sel["loss_tag"], sel["loss_params"])]
    labels = labels_of(sel)  # the references by their setting; ``loss`` by its name alone, all its ε on one line
    names = [plain_name(loss) if name == loss else labels[t] for t, name in zip(sel["loss_tag"], sel["loss"])]
    tags = sel["loss_tag"].where(sel["loss"] != loss, chosen)
    return sel.assign(eps=eps, tag=tags, **{"loss name": names})


def capped_weight(p_t: float, p_cap: float, sharpness: float) -> float:
    """Capped CE's weight relative to cross-entropy at target probability p_t, in closed form:
    1 / (1 + (p_t / p_cap)^sharpness); 1/2 at the cap, σ(sharpness · log p_cap) at p_t = 1."""
    return 1 / (1 + (p_t / p_cap) ** sharpness)


def speed_table(speed_file: str | Path, losses: list[str], designs: list[str]) -> dict | None:
    """From benchmarks/loss_speed.py's results: ``table``, each loss's time ratio to F.cross_entropy per logits
    shape with its aten op count; ``over``, {design: the shapes where it exceeds the target ratio}; ``target``
    and ``machine``. None without the file."""
    path = Path(speed_file)
    if not path.exists():
        return None
    speed = json.loads(path.read_text())
    cost = pd.DataFrame([r for r in speed["results"] if r["loss"] in losses])
    cost["shape"] = cost["shape"].map(lambda s: f"{s[0]}x{s[1]}")
    shapes = list(dict.fromkeys(cost["shape"]))  # the benchmark's order: batch 128 first
    ratios = cost.pivot(index="loss", columns="shape", values="ratio_to_ce")
    table = ratios.loc[losses, shapes].round(2)
    target = speed["target_ratio"]
    over = {loss: [shape for shape in shapes if table.loc[loss, shape] > target] for loss in designs}
    table["tensor operations"] = cost.groupby("loss")["aten_ops"].first()
    table.index = [plain_name(loss) for loss in table.index]
    return {"table": table, "over": over, "target": target, "machine": speed["machine"], "ratios": ratios}
