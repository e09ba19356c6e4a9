"""The book's answer, from every study with an analysis plan (grids/plans/*.yaml): per study, how its
comparisons of our designs (and any published challenger) with the benchmark's baselines came out, and
whether any design beat every baseline; the full-length studies first. The front page shows these."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from .plan import Plan, compare, load_plan, study_runs
from .study import POINTS, ranking_sentence, sensitivity, spread_range

ORDER = ("better", "worse", "equivalent", "undecided", "not tested")


def load_plans(folder: str | Path) -> list[Plan]:
    """Every plan in ``folder``: those fixed before their runs first (the full-length studies), then the others."""
    plans = [load_plan(p) for p in sorted(Path(folder).glob("*.yaml"))]
    return sorted(plans, key=lambda p: (not p.before_the_runs, p.study))


def study_answer(plan: Plan, runs: pd.DataFrame) -> str:
    """One study in a few sentences: its runs so far; the count of each verdict over its first family and the
    contenders that beat every baseline (or that none did); each later family's outcome; what its seeds
    detect. A family with nothing tested yet is said to be so, not counted."""
    mine = study_runs(plan, runs)
    complete = int((mine["status"] == "complete").sum())
    seeds = mine[mine["trained"]].groupby("loss_tag")["seed"].nunique()
    table = compare(plan, runs)
    labels = plan.labels()
    text = (f"**{_capital(plan.title)}** ({complete} of {plan.planned} planned runs complete; "
            f"{_seed_range(seeds)} per loss; plan fixed {plan.raw.get('declared', 'before the runs')}).")
    untested = []
    for i, family in enumerate(plan.families):
        block = table[table["family"] == family.name]
        if (block["verdict"] == "not tested").all():
            untested.append(family.name)
        elif i == 0:
            text += " " + _first_family(family.name, block, labels, plan.margin)
        elif family.kind == "ranking":
            text += " " + ranking_sentence(_capital(family.name), block, labels, POINTS * plan.margin)
        else:
            text += f" {_capital(family.name)}: {_family_outcome(block, labels, plan.margin)}."
    if untested:
        text += (f" Not tested yet (a comparison needs 3 seeds that trained of both its losses): "
                 f"{'; '.join(untested)}.")
    now = sensitivity(plan, runs)
    if now:
        text += (f" With {now['seeds']} seeds and the spread of its own paired differences "
                 f"({spread_range(now, labels)}), its strictest test detects a difference of "
                 f"{POINTS * now['detectable']:.1f} points with 80% power.")
    return text


def _first_family(name: str, block: pd.DataFrame, labels: dict[str, str], margin: float) -> str:
    winners = [labels[a] for a, rows in block.groupby("a", sort=False) if (rows["verdict"] == "better").all()]
    text = f"Of its {len(block)} comparisons of {name}: {_tally(block, margin)}. "
    return text + (f"{' and '.join(winners)} beat{'s' if len(winners) == 1 else ''} every baseline."
                   if winners else "No contender beats every baseline.")


def _family_outcome(block: pd.DataFrame, labels: dict[str, str], margin: float) -> str:
    """A single comparison by its losses' names and verdict; several by the count of each verdict."""
    if len(block) == 1:
        r = block.iloc[0]
        return f"{labels.get(r['a'], r['a'])} vs {labels.get(r['b'], r['b'])} {r['verdict']}"
    return _tally(block, margin)


def _tally(block: pd.DataFrame, margin: float) -> str:
    counts = Counter(block["verdict"])
    words = {"better": "better", "worse": "worse", "equivalent": f"equivalent within ±{POINTS * margin:g} points",
             "undecided": "undecided", "not tested": "not tested (under 3 seeds both trained)"}
    return ", ".join(f"{counts[v]} {words[v]}" for v in ORDER if counts[v])


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def studies(plans: list[Plan], runs: pd.DataFrame) -> str:
    """The front page's list: a bullet per study with complete runs, then the studies still without any."""
    has_runs = [(study_runs(plan, runs)["status"] == "complete").any() for plan in plans]
    lines = [f"- {study_answer(plan, runs)}" for plan, ran in zip(plans, has_runs) if ran]
    waiting = [plan for plan, ran in zip(plans, has_runs) if not ran]
    if waiting:
        lines.append("- **Without runs yet**: " + "; ".join(
            f"{plan.title} ({plan.planned} planned runs)" for plan in waiting) + ".")
    return "\n".join(lines)


def _seed_range(seeds: pd.Series) -> str:
    if seeds.empty:
        return "no seeds yet"
    low, high = int(seeds.min()), int(seeds.max())
    return (f"{low} seed{'s' if low != 1 else ''}" if low == high else f"{low} to {high} seeds")


def headline(plans: list[Plan], runs: pd.DataFrame) -> str:
    """The answer in one sentence: in which studies a contender beat every baseline, or that none did yet."""
    found = []
    for plan in plans:
        block = compare(plan, runs)
        block = block[block["family"] == plan.families[0].name]
        found += [(plan.labels()[a], plan.title) for a, rows in block.groupby("a", sort=False)
                  if (rows["verdict"] == "better").all()]
    if not found:
        return ("**Not yet, on the evidence here: in no study does any of our designs (or MaxSup) beat every "
                "one of the benchmark's baselines under its plan's tests.**")
    return "**" + "; ".join(f"{name} beats every baseline in {title}" for name, title in found) + ".**"


def forest_table(plans: list[Plan], runs: pd.DataFrame) -> pd.DataFrame:
    """The first family of every plan with a tested comparison, as one table for lossnb.plotting.forest, its
    family named by the study."""
    blocks = []
    for plan in plans:
        block = compare(plan, runs)
        block = block[block["family"] == plan.families[0].name]
        if (block["verdict"] != "not tested").any():
            blocks.append(block.assign(family=plan.title))
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


def all_labels(plans: list[Plan]) -> dict[str, str]:
    return {tag: name for plan in plans for tag, name in plan.labels().items()}


ARCHITECTURES = {"convnet": "the report's ConvNet", "resnet20": "ResNet-20", "mobilenetv2": "MobileNetV2"}


def scope(plans: list[Plan], runs: pd.DataFrame) -> str:
    """What the answer covers in one sentence: the data set, and each network at the lengths it has complete
    runs of in a planned study."""
    done = pd.concat([study_runs(plan, runs) for plan in plans])
    done = done[done["status"] == "complete"]
    lengths = {arch: sorted(set(sel["epochs"]), reverse=True) for arch, sel in done.groupby("arch", sort=False)}
    parts = [f"{ARCHITECTURES.get(arch, arch)} at {' and '.join(map(str, epochs))} epochs"
             for arch, epochs in sorted(lengths.items(), key=lambda item: -max(item[1]))]
    return ("It covers FashionMNIST only (the CIFAR data sets are not on the machines these runs were made on): "
            + (", ".join(parts) if parts else "no network has complete runs yet")
            + ". Runs shorter than 200 epochs follow shortened protocols, not the benchmark's.")
