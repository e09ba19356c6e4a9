"""A study's analysis plan (grids/plans/*.yaml), fixed before its runs, and the verdicts it yields on the
records: its families of paired comparisons, each tested for a difference and for equivalence within the
margin with Holm's correction inside the family, the runs that did not train, and the seed count its power
rule gives."""
from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import yaml

from . import stats
from .names import plain_name
from .results import with_trained
from .trainer.config import loss_tag_of
from .trainer.records import FINISHED
from .yaml_errors import one_line

REQUIRED_KEYS = ("grid", "task", "metric", "alpha", "margin", "families")
# title: the study in words; declared: when the plan was fixed (a plan written after its runs says so, and has no
# power rule: its seeds were already run)
TOP_KEYS = (*REQUIRED_KEYS, "title", "declared", "test", "margin_why", "did_not_train_below", "seeds", "secondary",
            "amendments")
BEFORE_THE_RUNS = "before the runs"
SEED_KEYS = ("rule", "source", "target", "power", "least", "most", "order")
# optional: the spread's one-sided upper confidence level, where the source is a small pilot (Browne 1995)
SEED_OPTIONS = ("upper_confidence",)
SOURCE_PAIRS = ("first family", "every pair")  # which of the source's paired differences the spread pools
VERDICTS = ("better", "worse", "equivalent", "undecided", "not tested")
# analyses named secondary before the runs: the rate of runs that fail per loss, and calibration against one loss
SECONDARY_KEYS = ("failures", "calibration")
CALIBRATION_KEYS = ("metric", "against", "margin", "text")
ECE_VERDICTS = {"better": "higher ECE", "worse": "lower ECE"}  # for the first of the pair, on a calibration error


class PlanError(ValueError):
    pass


@dataclasses.dataclass
class Family:
    name: str
    kind: str  # "versus": every contender against every baseline; "ranking": adjacent pairs, best first
    pairs: list[tuple[str, str]]  # (a, b) loss tags; a difference is a - b


@dataclasses.dataclass
class Plan:
    path: Path
    study: str  # the grid's runs folder, e.g. bench-fmnist-convnet-e200
    tasks: list[str]  # one task; or several (a loss on two heads), whose losses are then keyed "<task>/<loss tag>"
    metric: str
    alpha: float
    margin: float
    did_not_train_below: float
    families: list[Family]
    seeds: dict | None  # the power rule; None for a plan declared after its runs
    raw: dict
    planned: int  # runs its grid holds for the plan's task

    @property
    def task(self) -> str:
        """The task, or the plan's tasks joined by " + " (for headings)."""
        return " + ".join(self.tasks)

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def select(self, frame: pd.DataFrame, study: str | None = None) -> pd.DataFrame:
        """The rows of ``frame`` (runs or curves) of the plan's study (or ``study``) and tasks; with several
        tasks, loss_tag becomes the plan's key "<task>/<loss tag>"."""
        sel = frame[(frame["study"] == (study or self.study)) & frame["task"].isin(self.tasks)]
        return sel.assign(loss_tag=sel["task"] + "/" + sel["loss_tag"]) if self.multi_task else sel

    @property
    def title(self) -> str:
        return self.raw.get("title", self.study)

    @property
    def heading(self) -> str:
        """The title opening a heading or a figure's title."""
        return self.title[:1].upper() + self.title[1:]

    @property
    def before_the_runs(self) -> bool:
        return self.raw.get("declared", BEFORE_THE_RUNS) == BEFORE_THE_RUNS

    def labels(self) -> dict[str, str]:
        """{loss tag: the loss in words}: with its settings only where the plan names the loss at more than one
        (focal γ=2, focal γ=0.5); the settings of every loss are in the plan, quoted by its chapter."""
        listed = [e for f in self.raw["families"] for key in ("contenders", "baselines", "ranking")
                  for e in f.get(key, [])]
        entries = {_tag(e, self.multi_task): _name_params(e) for e in listed}
        names = [name for name, _ in entries.values()]
        labels = {tag: plain_name(name, params if names.count(name) > 1 else {}) for tag, (name, params) in
                  entries.items()}
        return labels | {_tag(e, self.multi_task): e["label"] for e in listed if isinstance(e, dict) and "label" in e}

    def panels(self) -> list[tuple[str, list[str]]]:
        """(title, loss tags) groups for figures: each family's baselines, then its contenders, then a
        ranking's losses not shown yet; MAE (far below every other loss) on its own."""
        groups, shown = [], set()
        for f in self.raw["families"]:
            for key, title in (("baselines", "baselines"), ("contenders", "contenders"), ("ranking", f["name"])):
                tags = [t for t in (_tag(e, self.multi_task) for e in f.get(key, [])) if t not in shown]
                shown.update(tags)
                groups += [(title, [t for t in tags if not t.startswith("mae")]), ("MAE", [t for t in tags if
                                                                                      t.startswith("mae")])]
        return [(title, tags) for title, tags in groups if tags]

    def tags(self) -> list[str]:
        """Every loss the plan compares, in the order it names them."""
        return list(dict.fromkeys(t for f in self.families for pair in f.pairs for t in pair))


def load_plan(path: str | Path) -> Plan:
    """A plan file, checked: every error names the file and the key."""
    from .grid.spec import GridError, load_grid  # the grid package imports the trainer; a plan needs it only here

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise PlanError(f"{path}: cannot read the plan ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise PlanError(f"{path}: not valid YAML ({one_line(err)})") from None
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: a plan is a mapping of {', '.join(TOP_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if unknown or missing:
        raise PlanError(f"{path}: " + (f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}")
                        + f"; a plan has: {', '.join(TOP_KEYS)}")
    try:
        grid = load_grid(path.parent / raw["grid"])
    except GridError as err:
        raise PlanError(f"{path}: its grid: {err}") from None
    tasks = raw["task"] if isinstance(raw["task"], list) else [raw["task"]]
    studies = {r.task_tag(): str(r.run_path().parts[0]) for r in grid.runs}
    absent = [t for t in tasks if t not in studies]
    if absent:
        raise PlanError(f"{path}: task {absent[0]!r} is not in {raw['grid']}")
    study = studies[tasks[0]]
    multi = len(tasks) > 1
    families = [_family(entry, path, multi) for entry in raw["families"]]
    ran = {f"{r.task_tag()}/{r.loss_tag()}" if multi else r.loss_tag() for r in grid.runs if r.task_tag() in tasks}
    for family in families:
        for tag in (t for pair in family.pairs for t in pair):
            if tag not in ran:
                raise PlanError(f"{path}: family {family.name!r} compares {tag}, which {raw['grid']} does not run")
    if "seeds" in raw:
        _check_seeds(raw["seeds"], path)
    if "secondary" in raw:
        _check_secondary(raw["secondary"], path, ran, raw["grid"], multi)
    return Plan(path, study, tasks, raw["metric"], float(raw["alpha"]), float(raw["margin"]),
                float(raw.get("did_not_train_below", 2.0)), families, raw.get("seeds"), raw,
                sum(r.task_tag() in tasks for r in grid.runs))


def _check_seeds(seeds: dict, path: Path) -> None:
    keys = set(seeds) if isinstance(seeds, dict) else set()
    if not set(SEED_KEYS) <= keys <= set(SEED_KEYS + SEED_OPTIONS):
        raise PlanError(f"{path}: seeds needs exactly: {', '.join(SEED_KEYS)} (and may have "
                        f"{', '.join(SEED_OPTIONS)})")
    pairs = seeds["source"].get("pairs", SOURCE_PAIRS[0]) if isinstance(seeds["source"], dict) else None
    if pairs not in SOURCE_PAIRS:
        raise PlanError(f"{path}: seeds.source.pairs is {pairs!r}; choose one of: {', '.join(SOURCE_PAIRS)}")
    level = seeds.get("upper_confidence", 0.5)
    if not (isinstance(level, (int, float)) and 0.5 <= level < 1):
        raise PlanError(f"{path}: seeds.upper_confidence is {level!r}; a level from 0.5 up to (not including) 1")


def _check_secondary(secondary, path: Path, ran: set[str], grid: str, multi: bool) -> None:
    if not isinstance(secondary, dict) or not set(secondary) <= set(SECONDARY_KEYS):
        raise PlanError(f"{path}: secondary holds some of: {', '.join(SECONDARY_KEYS)}")
    calibration = secondary.get("calibration")
    if calibration is None:
        return
    if not isinstance(calibration, dict) or set(calibration) != set(CALIBRATION_KEYS):
        raise PlanError(f"{path}: secondary.calibration needs exactly: {', '.join(CALIBRATION_KEYS)}")
    against = _tag(calibration["against"], multi)
    if against not in ran:
        raise PlanError(f"{path}: secondary.calibration is against {against}, which {grid} does not run")


def pooled_sd(wide: pd.DataFrame, pairs) -> tuple[float, int, dict[tuple[str, str], float]]:
    """The standard deviation of paired differences a - b (columns of ``wide``, one row per seed), pooled over
    the pairs that ran on at least 2 common seeds, weighted by their degrees of freedom: (sd, dof, {pair used:
    its own sd})."""
    variances, dfs, used = [], [], {}
    for a, b in pairs:
        if {a, b} <= set(wide.columns):
            diff = (wide[a] - wide[b]).dropna()
            if len(diff) > 1:
                variances.append(diff.var(ddof=1))
                dfs.append(len(diff) - 1)
                used[(a, b)] = float(diff.std(ddof=1))
    if not used:
        return float("nan"), 0, {}
    return float(np.sqrt(np.dot(dfs, variances) / np.sum(dfs))), int(np.sum(dfs)), used


def _name_params(entry) -> tuple[str, dict]:
    return (entry, {}) if isinstance(entry, str) else (entry["name"], entry.get("params") or {})


def _tag(entry, multi_task: bool = False) -> str:
    """A plan entry's key: its loss tag, prefixed by its ``task`` in a plan of several tasks."""
    tag = loss_tag_of(*_name_params(entry))
    return f"{entry['task']}/{tag}" if multi_task else tag


def _family(entry: dict, path: Path, multi: bool) -> Family:
    if not isinstance(entry, dict) or "name" not in entry:
        raise PlanError(f"{path}: each family needs a name and either contenders + baselines or a ranking")
    if "ranking" in entry:
        _tasks_named(entry["ranking"], path, multi)
        order = [_tag(e, multi) for e in entry["ranking"]]
        return Family(entry["name"], "ranking", list(zip(order, order[1:])))
    if "contenders" in entry and "baselines" in entry:
        _tasks_named(entry["contenders"] + entry["baselines"], path, multi)
        pairs = [(_tag(c, multi), _tag(b, multi)) for c in entry["contenders"] for b in entry["baselines"]]
        return Family(entry["name"], "versus", pairs)
    raise PlanError(f"{path}: family {entry['name']!r} needs contenders + baselines or a ranking")


def _tasks_named(entries: list, path: Path, multi: bool) -> None:
    if multi and any(not isinstance(e, dict) or "task" not in e for e in entries):
        raise PlanError(f"{path}: a plan of several tasks names each loss's task: {{name: ..., task: ...}}")


# ---------------------------------------------------------------- runs that did not train
def study_runs(plan: Plan, runs: pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """The plan's runs (its study, or another study of the same task), with a ``trained`` column: False for a
    run that diverged or did not train; the tests use only the trained ones."""
    return with_trained(plan.select(runs, study), plan.did_not_train_below)


# ---------------------------------------------------------------- verdicts
def compare(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison of the plan on the seeds both losses trained: the mean difference a - b (in the
    metric's unit) with its 95% CI, the paired t-test and TOST p-values, each Holm-adjusted within its
    family, and the verdict."""
    return compare_families(study_runs(plan, runs), plan.families, plan.metric, plan.margin, plan.alpha)


def compare_families(runs: pd.DataFrame, families: list[Family], metric: str, margin: float,
                     alpha: float) -> pd.DataFrame:
    """``compare`` for any runs with a ``trained`` column and any families (a chapter's comparisons made after
    its results, which it discloses, use this with the same tests as a plan)."""
    wide = runs[runs["trained"]].pivot_table(index="seed", columns="loss_tag", values=metric)
    rows = []
    for family in families:
        block = []
        for a, b in family.pairs:
            both = wide[[a, b]].dropna() if {a, b} <= set(wide.columns) else pd.DataFrame(columns=[a, b])
            diff = (both[a] - both[b]).to_numpy(dtype=float)
            mean, low, high = stats.mean_ci(diff)
            block.append({"family": family.name, "a": a, "b": b, "seeds": len(diff), "mean diff": mean,
                          "ci low": low, "ci high": high, "p (t)": stats.paired_t(diff),
                          "p (TOST)": stats.tost(diff, margin)})
        table = pd.DataFrame(block)
        for test in ("t", "TOST"):
            table[f"p ({test}, Holm)"] = _holm_over_family(table[f"p ({test})"].to_numpy())
        rows.append(table)
    out = pd.concat(rows, ignore_index=True)
    out["verdict"] = [verdict(r, alpha) for r in out.to_dict("records")]
    return out


def _holm_over_family(p: np.ndarray) -> np.ndarray:
    """Holm over the whole planned family: a comparison not yet testable counts as p = 1 (it uses up its
    share of alpha, as in the plan), and keeps no adjusted p of its own."""
    adjusted = stats.holm(np.where(np.isnan(p), 1.0, p))
    return np.where(np.isnan(p), np.nan, adjusted)


def verdict(row: dict, alpha: float) -> str:
    """better / worse (difference test holds), equivalent (it does not, TOST does), undecided, or not tested
    (fewer than 3 common seeds)."""
    if np.isnan(row["p (t, Holm)"]):
        return "not tested"
    if row["p (t, Holm)"] < alpha:
        return "better" if row["mean diff"] > 0 else "worse"
    return "equivalent" if row["p (TOST, Holm)"] < alpha else "undecided"


# ---------------------------------------------------------------- the seed count
def seed_count(plan: Plan, runs: pd.DataFrame) -> dict:
    """The plan's power rule on its source study: the pooled standard deviation of paired differences there (of
    the first family's pairs, or of every pair of the source's losses), raised to its upper confidence limit
    where the rule asks for one; the seeds it asks for, and the difference those seeds detect."""
    rule = plan.seeds
    if not rule:
        raise PlanError(f"{plan.path}: no power rule (a plan declared after its runs)")
    source = runs[(runs["study"] == rule["source"]["study"]) & (runs["task"] == rule["source"]["task"])
                  & (runs["status"] == "complete")]
    wide = source.pivot_table(index="seed", columns="loss_tag", values=plan.metric)
    first = plan.families[0]
    every = rule["source"].get("pairs") == "every pair"
    pairs = list(combinations(sorted(wide.columns), 2)) if every else first.pairs
    estimate, dof, used = pooled_sd(wide, pairs)
    if not used:
        raise PlanError(f"{plan.path}: no pair of the {'losses' if every else 'first family'} ran in "
                        f"{rule['source']['study']}")
    level = rule.get("upper_confidence")
    sd = stats.sd_upper_limit(estimate, dof, level) if level else estimate
    alpha = plan.alpha / len(first.pairs)
    n = next((n for n in range(int(rule["least"]), int(rule["most"]) + 1)
              if stats.detectable_difference(sd, n, alpha, rule["power"]) <= rule["target"]), int(rule["most"]))
    detectable = stats.detectable_difference(sd, n, alpha, rule["power"])
    return {"sd": sd, "estimate": estimate, "dof": dof, "pairs": list(used), "alpha": alpha, "seeds": n,
            "capped": detectable > rule["target"], "detectable": detectable, "seed_list": list(rule["order"][:n])}


# ---------------------------------------------------------------- secondary analyses
def failure_rates(plan: Plan, runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per loss the plan compares: its finished runs, those that failed (diverged, did not train, or collapsed
    after training), the rate, and its exact (Clopper-Pearson) interval: a handful of failures in tens of runs is
    where the normal approximation fails."""
    done = study_runs(plan, runs)
    done = done[done["status"].isin(FINISHED)]  # a diverged run is not trained: one failure
    rows = []
    for tag in plan.tags():
        mine = done[done["loss_tag"] == tag]
        failed = int((~mine["trained"] | mine["collapsed"]).sum())
        low, high = (scipy.stats.binomtest(failed, len(mine)).proportion_ci(level, method="exact")
                     if len(mine) else (np.nan, np.nan))
        rows.append({"loss_tag": tag, "runs": len(mine), "failed": failed,
                     "rate": failed / len(mine) if len(mine) else np.nan, "ci low": low, "ci high": high})
    return pd.DataFrame(rows)


def calibration(plan: Plan, runs: pd.DataFrame) -> pd.DataFrame:
    """The plan's secondary calibration family: every other loss it compares against one (``against``) on the
    named metric, by the plan's paired tests with Holm within this family; verdicts read 'higher ECE' / 'lower
    ECE' for the first of the pair. Empty for a plan without it."""
    spec = (plan.raw.get("secondary") or {}).get("calibration")
    if not spec:
        return pd.DataFrame()
    against = _tag(spec["against"], plan.multi_task)
    family = Family("calibration", "versus", [(t, against) for t in plan.tags() if t != against])
    table = compare_families(study_runs(plan, runs), [family], spec["metric"], float(spec["margin"]), plan.alpha)
    return table.assign(verdict=table["verdict"].replace(ECE_VERDICTS))
