"""The book's answer, from every study with an analysis plan (grids/plans/*.yaml): per study, how its
comparisons of our designs (and any published challenger) with the benchmark's baselines came out, and
whether any design beat every baseline; the full-length studies first. The front page shows these."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from .plan import Plan, compare, load_plan, study_runs
from .study import sensitivity

ORDER = ("better", "worse", "equivalent", "undecided", "not tested")


def load_plans(folder: str | Path) -> list[Plan]:
    """Every plan in ``folder``: those fixed before their runs first (the full-length studies), then the others."""
    plans = [load_plan(p) for p in sorted(Path(folder).glob("*.yaml"))]
    return sorted(plans, key=lambda p: (not p.before_the_runs, p.study))


def study_answer(plan: Plan, runs: pd.DataFrame) -> str:
    """One study in a sentence or three: its runs so far, the count of each verdict over its first family,
    the contenders that beat every baseline (or that none did), and a ranking family's outcome."""
    mine = study_runs(plan, runs)
    complete = int((mine["status"] == "complete").sum())
    seeds = mine[mine["trained"]].groupby("loss_tag")["seed"].nunique()
    table = compare(plan, runs)
    labels = plan.labels()
    first = plan.families[0]
    block = table[table["family"] == first.name]
    counts = Counter(block["verdict"])
    margin = 100 * plan.margin
    words = {"better": "better", "worse": "worse", "equivalent": f"equivalent within ±{margin:g} points",
             "undecided": "undecided", "not tested": "not tested (under 3 seeds both trained)"}
    tally = ", ".join(f"{counts[v]} {words[v]}" for v in ORDER if counts[v])
    winners = [labels[a] for a, rows in block.groupby("a", sort=False) if (rows["verdict"] == "better").all()]
    text = (f"**{plan.title[0].upper() + plan.title[1:]}** ({complete} of {plan.planned} planned runs complete; "
            f"{_seed_range(seeds)} per loss; plan fixed {plan.raw.get('declared', 'before the runs')}). "
            f"Of its {len(block)} comparisons of {first.name}: {tally}. ")
    text += (f"{' and '.join(winners)} beat{'s' if len(winners) == 1 else ''} every baseline."
             if winners else "No contender beats every baseline.")
    now = sensitivity(plan, runs)
    if now:
        text += (f" With {now['seeds']} seeds and the spread of its own paired differences, its strictest test "
                 f"detects a difference of {100 * now['detectable']:.1f} points with 80% power.")
    for family in plan.families[1:]:
        rows = table[table["family"] == family.name]
        held = (rows["verdict"] == "better").all()
        text += (f" {family.name[0].upper() + family.name[1:]}: "
                 + ("it holds in every adjacent pair." if held else
                    f"not shown ({', '.join(f'{labels[a]} vs {labels[b]}: {v}' for a, b, v in zip(rows['a'], rows['b'], rows['verdict']))})."))
    return text


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


def scope(plans: list[Plan]) -> str:
    """What the answer covers: the studies' networks, data and lengths, from their plans."""
    return ("It covers FashionMNIST only (the CIFAR data sets are not on the machines these runs were made on), "
            "in " + "; ".join(plan.title for plan in plans) + ".")
