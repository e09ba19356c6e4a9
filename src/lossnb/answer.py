"""The front page's material from every study with an analysis plan (grids/plans/*.yaml): the plans in the
order the page shows them, and every plan's first family as one table for its figure. The page's sentences
are written in the chapter; lossnb.findings computes their facts and checks them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .plan import Plan, compare, load_plan
from .study import answered


def load_plans(folder: str | Path) -> list[Plan]:
    """Every plan in ``folder``: those fixed before their runs first (the full-length studies), then the others."""
    plans = [load_plan(p) for p in sorted(Path(folder).glob("*.yaml"))]
    return sorted(plans, key=lambda p: (not p.before_the_runs, p.study))


def forest_table(plans: list[Plan], runs: pd.DataFrame) -> pd.DataFrame:
    """The first family of every answered plan (every planned run complete: lossnb.study.answered) with a tested
    comparison, as one table for lossnb.plotting.forest, its family named by the study."""
    blocks = []
    for plan in (p for p in plans if answered(p, runs)):
        block = compare(plan, runs)
        block = block[block["family"] == plan.families[0].name]
        if (block["verdict"] != "not tested").any():
            blocks.append(block.assign(family=plan.title))
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


def all_labels(plans: list[Plan]) -> dict[str, str]:
    return {tag: name for plan in plans for tag, name in plan.labels().items()}
