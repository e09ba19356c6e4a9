"""Analysis plans: verdicts on synthetic records of known differences, Holm within each family (statsmodels'
Holm as reference), failed runs kept out, and the committed plan of the 200-epoch ConvNet study consistent with
its grid and fixed before its runs."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from conftest import write_synthetic_record
from lossnb.grid.spec import load_grid
from lossnb.plan import PlanError, compare, load_plan, seed_count
from lossnb.results import load_runs

ROOT = Path(__file__).parents[1]
SEEDS = range(6)
CE = np.array([0.900, 0.910, 0.905, 0.895, 0.902, 0.908])
NOISE = np.array([0.001, -0.001, 0.0005, -0.0005, 0.0, 0.0002])
ACC = {  # loss tag: (name, params, accuracies by seed)
    "ce": ("ce", {}, CE),
    "ls": ("label_smoothing", {"eps": 0.1}, CE + 0.001 * np.array([1, -1, 1, -1, 1, -1])),
    "capped": ("capped_ce", {"p_cap": 0.97, "sharpness": 10}, CE + 0.02 + NOISE),  # clearly better
    "selfshaped": ("selfshaped_ls", {"eps": 0.2}, CE + NOISE),  # within +-0.5 points, tightly
    "complement": ("complement_ls", {"eps": 0.1}, CE + np.array([0.03, -0.03, 0.02, -0.02, 0.01, -0.015])),
    "focal2": ("focal", {"gamma": 2}, CE - 0.03 + NOISE),
    "mae": ("mae", {}, np.array([0.05, 0.6, 0.62, 0.58, 0.61, 0.59])),  # seed 0 did not train (below 2 x 10%)
}
GRID = {"protocol": "t", "budget": {"epochs": 2}, "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
        "losses": [{"name": n, "params": p} for n, p, _ in ACC.values()], "seeds": list(SEEDS)}
PLAN = {"grid": "grid.yaml", "task": "convnet-fashionmnist", "metric": "best_test_acc", "test": "paired",
        "alpha": 0.05, "margin": 0.005, "margin_why": "test", "did_not_train_below": 2.0,
        "families": [{"name": "designs", "contenders": [{"name": n, "params": p} for n, p, _ in
                                                        (ACC["capped"], ACC["selfshaped"], ACC["complement"])],
                      "baselines": ["ce", {"name": "label_smoothing", "params": {"eps": 0.1}}]},
                     {"name": "ranking", "ranking": [{"name": "focal", "params": {"gamma": 2}}, "ce", "mae"]}],
        "seeds": {"rule": "r", "source": {"study": "t-e2", "task": "convnet-fashionmnist"}, "target": 0.01,
                  "power": 0.8, "least": 3, "most": 6, "order": list(SEEDS)},
        "amendments": []}


@pytest.fixture
def study(tmp_path):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    for name, params, accs in ACC.values():
        for seed in SEEDS:
            write_synthetic_record(tmp_path / "runs", name, seed, float(accs[seed]), loss_params=params)
    runs, _ = load_runs(tmp_path / "runs")
    return load_plan(tmp_path / "plan.yaml"), runs


def verdicts(table):
    return {(r["a"].split("-")[0], r["b"].split("-")[0]): r["verdict"] for r in table.to_dict("records")}


def test_each_comparison_gets_the_verdict_its_numbers_support(study):
    plan, runs = study
    got = verdicts(compare(plan, runs))
    assert got[("capped_ce", "ce")] == "better"
    assert got[("selfshaped_ls", "ce")] == "equivalent"
    assert got[("complement_ls", "ce")] == "undecided"  # mean near 0, spread far wider than the margin
    assert got[("focal", "ce")] == "worse"
    assert got[("ce", "mae")] == "better"


def test_each_comparisons_p_value_is_the_paired_t_test_of_the_records(study):
    """scipy's ttest_rel on the accuracies as written: a test whose seeds move both losses together (capped CE
    against cross-entropy), where an unpaired test (ttest_ind) gives another p-value by orders of magnitude."""
    plan, runs = study
    table = compare(plan, runs)
    for row in table.to_dict("records"):
        a = runs[runs["loss_tag"] == row["a"]].set_index("seed")["best_test_acc"]
        b = runs[runs["loss_tag"] == row["b"]].set_index("seed")["best_test_acc"]
        both = pd.concat([a, b], axis=1, keys=["a", "b"]).dropna()
        both = both[(both > 0.2).all(axis=1)]  # runs that trained, as the plan counts them
        if len(both) >= 3:
            assert row["p (t)"] == pytest.approx(scipy.stats.ttest_rel(both["a"], both["b"]).pvalue, rel=1e-9)
    capped = table[(table["a"].str.startswith("capped_ce")) & (table["b"] == "ce")].iloc[0]
    a = runs[runs["loss_tag"] == capped["a"]].sort_values("seed")["best_test_acc"]
    b = runs[runs["loss_tag"] == "ce"].sort_values("seed")["best_test_acc"]
    assert scipy.stats.ttest_ind(a, b).pvalue > 10 * capped["p (t)"]


def test_holm_runs_within_each_family_only(study):
    plan, runs = study
    table = compare(plan, runs)
    for name, block in table.groupby("family"):
        np.testing.assert_allclose(block["p (t, Holm)"], multipletests(block["p (t)"], method="holm")[1])
        np.testing.assert_allclose(block["p (TOST, Holm)"], multipletests(block["p (TOST)"], method="holm")[1])
    assert (table["family"] == "designs").sum() == 6 and (table["family"] == "ranking").sum() == 2


def test_tost_and_the_difference_are_on_seeds_both_losses_trained(study):
    plan, runs = study
    row = compare(plan, runs).set_index(["a", "b"]).loc[("ce", "mae")]
    assert row["seeds"] == 5  # mae's seed 0 ended at 5%, below twice chance: not a run that trained
    a, b = CE[1:], ACC["mae"][2][1:]
    assert row["mean diff"] == pytest.approx(np.mean(a - b))
    assert row["p (TOST)"] == pytest.approx(ttost_paired(a, b, -0.005, 0.005)[0])


def test_a_comparison_without_three_common_seeds_is_not_tested_and_still_counts_in_holm(study, tmp_path):
    plan, runs = study
    runs = runs[~((runs["loss"] == "complement_ls") & (runs["seed"] > 1))]
    table = compare(plan, runs)
    designs = table[table["family"] == "designs"]
    untested = designs["a"].str.startswith("complement_ls")
    assert set(designs.loc[untested, "verdict"]) == {"not tested"}
    p = designs["p (t)"].fillna(1.0)  # the plan's family keeps its size
    np.testing.assert_allclose(designs.loc[~untested, "p (t, Holm)"],
                               multipletests(p, method="holm")[1][~untested.to_numpy()])


def test_a_plan_naming_a_loss_its_grid_does_not_run_is_refused(tmp_path):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**GRID, "losses": ["ce"]}))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    with pytest.raises(PlanError, match="does not run"):
        load_plan(tmp_path / "plan.yaml")


@pytest.mark.parametrize("text, message", [("alpha: [0.05\n", r"not valid YAML \(line 2, column 1: expected ','"),
                                           (None, r"cannot read the plan \(No such file or directory\)$")])
def test_an_unreadable_plan_is_one_line(tmp_path, text, message):
    path = tmp_path / "plan.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PlanError, match=message) as err:
        load_plan(path)
    assert "\n" not in str(err.value)


def test_the_power_rule_takes_the_fewest_seeds_that_reach_the_target(study):
    plan, runs = study
    diffs = [ACC[a][2] - ACC[b][2] for a in ("capped", "selfshaped", "complement") for b in ("ce", "ls")]
    sd = np.sqrt(np.mean([np.var(d, ddof=1) for d in diffs]))  # equal seeds: the df-weighted pool is the mean
    alpha = 0.05 / 6
    want = next((n for n in range(3, 7) if sd * TTestPower().solve_power(nobs=n, alpha=alpha, power=0.8) <= 0.01), 6)
    rule = seed_count(plan, runs)
    assert rule["sd"] == pytest.approx(sd) and rule["seeds"] == want and rule["alpha"] == alpha
    looser = seed_count(load_plan_with(plan, target=1.0), runs)
    assert looser["seeds"] == 3 and not looser["capped"]


def test_a_pilot_source_pools_every_pair_and_plans_on_the_upper_limit_of_its_spread(study):
    """A small pilot ran other losses than the plan compares: the rule pools every pair of them and plans on
    the 80% upper confidence limit of that spread."""
    plan, runs = study
    tags = ["ce", "ls", "capped", "selfshaped", "complement", "focal2", "mae"]
    diffs = [ACC[a][2] - ACC[b][2] for i, a in enumerate(tags) for b in tags[i + 1:]]
    pooled = np.sqrt(np.mean([np.var(d, ddof=1) for d in diffs]))  # equal seeds: the df-weighted pool is the mean
    dof = len(diffs) * (len(SEEDS) - 1)
    rule = seed_count(load_plan_with(plan, source={**plan.raw["seeds"]["source"], "pairs": "every pair"},
                                     upper_confidence=0.8), runs)
    assert rule["estimate"] == pytest.approx(pooled) and rule["dof"] == dof and len(rule["pairs"]) == len(diffs)
    assert rule["sd"] == pytest.approx(pooled * np.sqrt(dof / scipy.stats.chi2.ppf(0.2, dof)))
    from lossnb.study import seeds_table
    planned_on = seeds_table([load_plan(plan.path.with_name("plan2.yaml"))], runs).iloc[:, 0]["planned on SD"]
    assert planned_on.endswith(f"; the 80% upper confidence limit of {100 * pooled:.2f})")


@pytest.mark.parametrize("change, message", [
    ({"upper_confidence": 1.5}, "seeds.upper_confidence is 1.5; a level from 0.5"),
    ({"source": {"study": "t-e2", "task": "convnet-fashionmnist", "pairs": "all"}},
     "seeds.source.pairs is 'all'; choose one of: first family, every pair"),
    ({"confidence": 0.8}, "seeds needs exactly: rule, source"),
])
def test_a_bad_power_rule_option_is_one_line_naming_it(study, change, message):
    plan, _ = study
    with pytest.raises(PlanError, match=message) as err:
        load_plan_with(plan, **change)
    assert "\n" not in str(err.value)


def test_a_studys_own_spread_is_pooled_as_the_power_rule_pools_it(study):
    """Unequal seeds (capped CE without seed 5): the spread weights each pair by its degrees of freedom, as a
    plan's power rule does, so one study's spread is one number on every page."""
    from lossnb.study import sensitivity

    plan, runs = study
    runs = runs[~((runs["loss"] == "capped_ce") & (runs["seed"] == 5))]
    diffs = [(ACC[a][2] - ACC[b][2])[:5 if a == "capped" else 6] for a in ("capped", "selfshaped", "complement")
             for b in ("ce", "ls")]
    dof = [len(d) - 1 for d in diffs]
    want = np.sqrt(sum(k * np.var(d, ddof=1) for k, d in zip(dof, diffs)) / sum(dof))
    assert sensitivity(plan, runs)["sd"] == pytest.approx(want)


@pytest.mark.parametrize("target, words", [(0.01, "1"), (0.001, "0.1")])
def test_a_target_the_seed_budget_cannot_reach_is_said_in_points(study, target, words):
    from lossnb.study import seeds_table

    plan, runs = study
    tight = load_plan_with(plan, target=target, most=3)  # 3 seeds, ~1-point spread: neither target is reached
    assert seed_count(tight, runs)["capped"]
    assert seeds_table([tight], runs).iloc[:, 0]["target"] == f"{words} (not reached within 3 seeds)"


def test_the_progress_table_counts_each_plans_runs_as_their_records_say(study, tmp_path):
    """The fixture's MAE seed 0 did not train; one more record, of focal at seed 3, collapsed after training; a
    plan written after its runs says so."""
    from lossnb.study import progress_table

    plan, _ = study
    write_synthetic_record(tmp_path / "runs", "focal", 3, 0.9, final=0.1, loss_params={"gamma": 2})
    runs, _ = load_runs(tmp_path / "runs")
    after = {k: v for k, v in PLAN.items() if k != "seeds"} | {"declared": "after the runs", "title": "late"}
    (tmp_path / "after.yaml").write_text(yaml.safe_dump(after))
    table = progress_table([plan, load_plan(tmp_path / "after.yaml")], runs)
    n = len(ACC) * len(SEEDS)
    assert table.iloc[0][["planned", "complete", "trained", "did not train", "collapsed", "diverged"]].tolist() == \
        [n, n, n - 1, 1, 1, 0]
    assert table["plan fixed"].tolist() == ["before the runs", "after the runs"] and table.index[1] == "Late"


def test_the_failure_rate_of_each_loss_has_the_exact_binomial_interval(study, tmp_path):
    """MAE's seed 0 did not train and a focal run collapsed after training: each is one failure of its loss,
    with the Clopper-Pearson interval (statsmodels' 'beta' method as reference)."""
    from statsmodels.stats.proportion import proportion_confint

    from lossnb.plan import failure_rates

    plan, _ = study
    write_synthetic_record(tmp_path / "runs", "focal", 3, 0.9, final=0.1, loss_params={"gamma": 2})
    runs, _ = load_runs(tmp_path / "runs")
    rates = failure_rates(plan, runs).set_index("loss_tag")
    assert rates["failed"].to_dict() == {t: int(t.startswith(("mae", "focal"))) for t in plan.tags()}
    for tag in ("mae", "focal-gamma2", "ce"):
        low, high = proportion_confint(rates.loc[tag, "failed"], 6, alpha=0.05, method="beta")
        assert (rates.loc[tag, "ci low"], rates.loc[tag, "ci high"]) == pytest.approx((low, high))
    assert rates.loc["ce", "rate"] == 0 and rates.loc["mae", "rate"] == pytest.approx(1 / 6)
    from lossnb.study import failure_rate_table

    low, high = proportion_confint(1, 6, alpha=0.05, method="beta")
    row = failure_rate_table(plan, runs, {"mae": "MAE"}).loc["MAE"]
    assert (row["failed"], row["rate %, exact 95% CI"]) == ("1 of 6", f"17 [{100 * low:.0f},\u00a0{100 * high:.0f}]")


def test_the_calibration_family_compares_every_loss_with_its_reference_on_final_ece(tmp_path):
    """Label smoothing's final ECE 3 points above cross-entropy's in every seed (give or take 0.1): 'higher ECE';
    focal's within 0.1 points: equivalent at a 1-point margin; Holm over the two comparisons (statsmodels)."""
    from lossnb.plan import calibration

    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**GRID, "losses": ["ce", "label_smoothing", "focal"]}))
    wobble = 0.001 * np.array([1, -1, 1, -1, 1, -1])
    ece = {"ce": 0.02 + NOISE, "label_smoothing": 0.05 + NOISE + wobble, "focal": 0.02 + NOISE - wobble}
    for loss, values in ece.items():
        for seed in SEEDS:
            write_synthetic_record(tmp_path / "runs", loss, seed, 0.9, final_test_ece=float(values[seed]))
    plan_raw = {**PLAN, "families": [{"name": "f", "contenders": ["label_smoothing", "focal"], "baselines": ["ce"]}],
                "secondary": {"calibration": {"metric": "final_test_ece", "against": "ce", "margin": 0.01,
                                              "text": "t"}}}
    plan_raw.pop("seeds")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan_raw))
    runs, _ = load_runs(tmp_path / "runs")
    table = calibration(load_plan(tmp_path / "plan.yaml"), runs).set_index("a").rename(lambda a: a.split("-")[0])
    p = [scipy.stats.ttest_rel(ece[loss], ece["ce"]).pvalue for loss in ("label_smoothing", "focal")]
    assert table["p (t, Holm)"].tolist() == pytest.approx(multipletests(p, method="holm")[1].tolist())
    assert table["verdict"].to_dict() == {"label_smoothing": "higher ECE", "focal": "equivalent"}


@pytest.mark.parametrize("secondary, message", [
    ({"power": 1}, "secondary holds some of: failures, calibration"),
    ({"calibration": {"metric": "final_test_ece", "against": "ce"}}, "secondary.calibration needs exactly"),
    ({"calibration": {"metric": "final_test_ece", "against": "poly1", "margin": 0.01, "text": "t"}},
     "secondary.calibration is against poly1-epsilon1, which grid.yaml does not run"),
])
def test_a_bad_secondary_analysis_is_one_line_naming_it(study, secondary, message):
    plan, _ = study
    path = plan.path.with_name("plan2.yaml")
    path.write_text(yaml.safe_dump({**plan.raw, "secondary": secondary}))
    with pytest.raises(PlanError, match=message) as err:
        load_plan(path)
    assert "\n" not in str(err.value)


def load_plan_with(plan, **seeds):
    raw = {**plan.raw, "seeds": {**plan.raw["seeds"], **seeds}}
    path = plan.path.with_name("plan2.yaml")
    path.write_text(yaml.safe_dump(raw))
    return load_plan(path)


# ---------------------------------------------------------------- the committed plan
BEFORE_THE_RUNS = sorted(p for p in (ROOT / "grids" / "plans").glob("*.yaml") if load_plan(p).before_the_runs)


def test_the_full_length_studies_have_plans_fixed_before_their_runs():
    assert {p.name for p in BEFORE_THE_RUNS} >= {"bench-fmnist-convnet.yaml", "bench-fmnist-resnet20.yaml",
                                                 "bench-fmnist-mnv2.yaml"}


@pytest.mark.parametrize("path", BEFORE_THE_RUNS, ids=lambda p: p.stem)
def test_a_committed_plans_seeds_are_its_grids(path):
    plan = load_plan(path)
    runs, _ = load_runs(ROOT / "runs")
    rule = seed_count(plan, runs)
    grid = load_grid(plan.path.parent / plan.raw["grid"])
    assert sorted({r.seed for r in grid.runs if r.task_tag() == plan.task}) == sorted(rule["seed_list"])
    assert rule["seed_list"][:3] == [42, 123, 456]


@pytest.mark.parametrize("path", BEFORE_THE_RUNS, ids=lambda p: p.stem)
def test_every_record_of_a_plans_study_was_made_after_the_plan_was_committed(path):
    git = ["git", "-C", str(ROOT)]
    first = subprocess.run([*git, "log", "--diff-filter=A", "--format=%H", "--", str(path)],
                           capture_output=True, text=True)
    if first.returncode or not first.stdout.strip():
        pytest.skip("no git history of the plan here")
    plan_commit = first.stdout.split()[-1]
    plan = load_plan(path)
    for config in (ROOT / "runs" / plan.study / plan.task).rglob("config.json"):
        commit = json.loads(config.read_text())["environment"]["git"]["commit"]
        ancestor = subprocess.run([*git, "merge-base", "--is-ancestor", plan_commit, commit])
        assert ancestor.returncode == 0, f"{config} was made at {commit}, before the plan ({plan_commit})"


@pytest.mark.slow
def test_the_full_length_convnet_chapter_fails_naming_the_finding_its_records_no_longer_support(tmp_path):
    """The chapter states findings checked against its records. On synthetic records of the whole study in which
    capped CE beats every baseline by 2 points, its finding that every comparison is undecided fails, named in
    the error; without records, the first check (the study complete) fails, before anything is computed."""
    import papermill

    plan = load_plan(ROOT / "grids" / "plans" / "bench-fmnist-convnet.yaml")
    notebook = ROOT / "notebooks" / "convnet_200.ipynb"
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    for tag in plan.tags():
        name, _, _ = tag.partition("-")
        entry = next(e for f in plan.raw["families"] for k in ("contenders", "baselines", "ranking")
                     for e in f.get(k, []) if (e if isinstance(e, str) else e["name"]) == name)
        params = {} if isinstance(entry, str) else entry.get("params", {})
        if name == "focal":
            params = {"gamma": 2} if "gamma2" in tag else {"gamma": 0.5}
        for seed in plan.raw["seeds"]["order"]:
            acc = 0.86 + {"capped_ce": 0.02, "mae": -0.3}.get(name, 0.0) + rng.normal(0, 0.001)
            write_synthetic_record(runs, name, seed, float(acc), epochs=200, protocol="bench-fmnist-convnet",
                                   loss_params=params)
    (tmp_path / "empty").mkdir()
    errors = {}
    for folder in (runs, tmp_path / "empty"):
        with pytest.raises(papermill.PapermillExecutionError) as caught:
            papermill.execute_notebook(str(notebook), str(tmp_path / f"{folder.name}.ipynb"),
                                       parameters={"runs_dir": str(folder)}, cwd=str(notebook.parent),
                                       kernel_name="python3", progress_bar=False)
        assert caught.value.ename == "FindingUnsupported"
        errors[folder.name] = caught.value.evalue
    assert "'every comparison of the designs and MaxSup with the baselines is undecided'" in errors["runs"]
    assert "'better'" in errors["runs"]  # what the records say now
    assert "'every planned run of this study is complete'" in errors["empty"] and "0 of 100" in errors["empty"]


def test_the_loss_table_gives_scipys_t_interval_over_trained_runs_and_names_the_failed_seeds(study):
    from scipy import stats as scipy_stats

    from lossnb import study as study_tables

    plan, runs = study
    table = study_tables.loss_table(plan, runs, {"mae": "MAE"})
    mae = ACC["mae"][2][1:] * 100  # seed 0 did not train
    low, high = scipy_stats.t.interval(0.95, len(mae) - 1, loc=mae.mean(), scale=scipy_stats.sem(mae))
    assert table.loc["MAE", "best test acc %"] == f"{mae.mean():.2f} [{low:.2f},\u00a0{high:.2f}]"
    assert table.loc["MAE", "did not train"] == "1 (seed 0)" and table.loc["MAE", "trained"] == 5
    ordered = study_tables.by_accuracy(study_tables.study_runs(plan, runs))
    assert ordered[0].startswith("capped_ce") and ordered[-1] == "mae"
    assert list(study_tables.trained_runs(plan, runs)["loss_tag"].unique()) == plan.tags()


def test_the_curves_hold_the_epochs_of_runs_that_trained_only(study, tmp_path):
    from lossnb import study as study_tables

    plan, _ = study
    runs, curves = load_runs(tmp_path / "runs")
    mine = study_tables.curves_of(plan, curves, runs)
    mae = mine[mine["loss_tag"] == "mae"]
    assert sorted(mae["seed"].unique()) == [1, 2, 3, 4, 5]  # seed 0 did not train: out of the means
    assert len(mae) == 5 * 2  # every epoch of the others, once
    assert set(mine["loss_tag"]) == set(plan.tags())


@pytest.mark.parametrize("uniform", [True, False])
def test_a_run_that_did_not_train_is_read_from_its_record(study, tmp_path, uniform):
    import torch
    import torch.nn.functional as F

    from lossnb.failures import failure_table
    from lossnb.trainer import records

    plan, _ = study
    uniform_ce = float(F.cross_entropy(torch.zeros(1, 10), torch.tensor([3])))  # every class 1/10
    metrics = next((tmp_path / "runs").glob("**/mae/seed0/metrics.csv"))
    rows = [{c: 0.0 for c in records.METRIC_COLUMNS} | {"epoch": e, "train_acc": acc, "test_acc": 0.05,
                                                         "test_loss": uniform_ce if uniform else 2.9}
            for e, acc in enumerate([0.25, 0.1])]  # above twice chance in epoch 1, at chance from epoch 2
    records.write_metrics(metrics, rows)
    runs, curves = load_runs(tmp_path / "runs")
    table = failure_table(plan, runs, curves, {"mae": "MAE"})
    assert list(table.index) == [("MAE", 0)]  # the one run below twice chance
    row = table.iloc[0]
    assert row["train acc at chance from epoch"] == 2 and row["the plan counts it as"].startswith("did not train")
    assert ("uniform to 4 digits" in row["reading"]) == uniform


def test_a_run_that_collapsed_after_training_is_listed_and_still_counted_as_the_plan_says(study, tmp_path):
    from lossnb.failures import failure_table

    plan, _ = study
    name, params, accs = ACC["complement"]
    write_synthetic_record(tmp_path / "runs", name, 5, float(accs[5]), final=0.1, loss_params=params)
    runs, curves = load_runs(tmp_path / "runs")
    table = failure_table(plan, runs, curves, {})
    collapsed = table.loc[("complement_ls-eps0.1", 5)]  # best accuracy above twice chance, final at chance
    assert collapsed["the plan counts it as"].startswith("trained")
    assert collapsed["best test acc %"] == round(100 * accs[5], 2)
    assert len(table) == 2  # and MAE's seed 0, which did not train


def test_a_collapsed_run_counts_in_the_plan_but_not_in_the_curves_or_calibration(study, tmp_path):
    from lossnb import study as study_tables

    plan, _ = study
    name, params, accs = ACC["complement"]
    write_synthetic_record(tmp_path / "runs", name, 5, float(accs[5]), final=0.1, loss_params=params)
    runs, curves = load_runs(tmp_path / "runs")
    complement = "complement_ls-eps0.1"
    trained = study_tables.trained_runs(plan, runs)
    assert 5 in set(trained[trained["loss_tag"] == complement]["seed"])  # the plan reads its best accuracy
    pictured = study_tables.pictured_runs(plan, runs)
    assert sorted(pictured[pictured["loss_tag"] == complement]["seed"]) == [0, 1, 2, 3, 4]
    assert sorted(pictured[pictured["loss_tag"] == "mae"]["seed"]) == [1, 2, 3, 4, 5]  # did not train: out too
    mine = study_tables.curves_of(plan, curves, runs)
    assert sorted(mine[mine["loss_tag"] == complement]["seed"].unique()) == [0, 1, 2, 3, 4]


def test_each_failed_run_gets_a_panel_of_its_own_epochs_with_chance_drawn(study, tmp_path):
    import pandas as pd

    from lossnb.failures import failure_figure

    plan, _ = study
    name, params, accs = ACC["complement"]
    run_dir = write_synthetic_record(tmp_path / "runs", name, 5, float(accs[5]), final=0.1, loss_params=params)
    runs, curves = load_runs(tmp_path / "runs")
    fig = failure_figure(plan, runs, curves, {"mae": "MAE", "complement_ls-eps0.1": "compl."})
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in shown) == ["MAE\nseed 0", "compl.\nseed 5"]
    panel = next(ax for ax in shown if ax.get_title().endswith("seed 5"))
    assert panel.get_ylim() == (0, 100)  # every failed run on one scale
    on_disk = pd.read_csv(run_dir / "metrics.csv")
    test_line = next(line for line in panel.get_lines() if line.get_label() == "test")
    assert list(test_line.get_ydata()) == pytest.approx(list(100 * on_disk["test_acc"]))
    guides = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert guides["chance"] == [10.0, 10.0]  # FashionMNIST: 10 classes
    assert guides["2 × chance"] == [20.0, 20.0]  # the plan's did_not_train_below
    assert failure_figure(plan, runs[runs["loss"] == "ce"], curves, {}) is None


def test_a_plan_written_after_its_runs_has_no_power_rule_and_states_what_its_seeds_detect(study, tmp_path):
    from lossnb import study as study_tables

    plan, runs = study
    after = {k: v for k, v in PLAN.items() if k != "seeds"} | {"declared": "after the runs"}
    (tmp_path / "after.yaml").write_text(yaml.safe_dump(after))
    late = load_plan(tmp_path / "after.yaml")
    column = study_tables.seeds_table([late], runs).iloc[:, 0]
    now = study_tables.sensitivity(late, runs)
    # the first family is 3 contenders x 2 baselines: its strictest Holm step tests at alpha / 6
    detectable = TTestPower().solve_power(effect_size=None, nobs=now["seeds"], alpha=0.05 / 6, power=0.8,
                                          alternative="two-sided") * now["sd"]
    assert column["detects, own SD"] == f"{100 * detectable:.2f}" and column["α (strictest)"] == f"{0.05 / 6:.4f}"
    assert column["planned on SD"].startswith("no power rule") and column["detects, planned"] == "–"


def test_a_plan_over_two_heads_compares_one_loss_on_each_by_seed(tmp_path):
    grid = {"protocol": "h", "budget": {"epochs": 2}, "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
            "losses": ["ce", {"name": "ce", "head": "cosine"}], "seeds": list(SEEDS)}
    linear = {"name": "ce", "task": "convnet-fashionmnist", "label": "CE, linear head"}
    cosine = {"name": "ce", "task": "convnet-cosine-fashionmnist", "label": "CE on cosines"}
    plan = {"grid": "grid.yaml", "task": ["convnet-fashionmnist", "convnet-cosine-fashionmnist"],
            "metric": "best_test_acc", "alpha": 0.05, "margin": 0.005, "declared": "after the runs",
            "families": [{"name": "heads", "contenders": [cosine], "baselines": [linear]}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    for seed in SEEDS:
        write_synthetic_record(tmp_path / "runs", "ce", seed, float(CE[seed]), protocol="h")
        write_synthetic_record(tmp_path / "runs", "ce", seed, float(CE[seed] - 0.05 + NOISE[seed]), protocol="h",
                               head="cosine")
    runs, _ = load_runs(tmp_path / "runs")
    loaded = load_plan(tmp_path / "plan.yaml")
    row = compare(loaded, runs).iloc[0]
    assert (row["seeds"], row["verdict"]) == (6, "worse")
    assert row["mean diff"] == pytest.approx(np.mean(-0.05 + NOISE))
    assert set(loaded.labels().values()) == {"CE, linear head", "CE on cosines"}
    from lossnb.study import seeds_table
    column = seeds_table([loaded], runs).iloc[:, 0]
    assert column["own SD"] == f"{100 * np.std(NOISE, ddof=1):.2f} (1 pair, 6 seeds)"
    assert column["own pairs' SDs"] == "one pair: CE on cosines − CE, linear head"
    plan["families"][0]["baselines"] = ["ce"]  # which head's ce? a plan of two tasks must say
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match="names each loss's task"):
        load_plan(tmp_path / "plan.yaml")


def test_a_final_accuracy_equal_to_the_best_in_every_run_is_one_column(study):
    from lossnb import study as study_tables

    plan, runs = study
    assert "final test acc %" not in study_tables.loss_table(plan, runs, {})  # synthetic: best epoch = last
    runs = runs.assign(final_test_acc=runs["best_test_acc"] - 0.001)
    assert "final test acc %" in study_tables.loss_table(plan, runs, {})


def test_the_sensitivity_names_the_pair_whose_spread_leads_it(study):
    from lossnb.study import seeds_table

    plan, runs = study
    sds = {(c, b): np.std(ACC[c][2] - ACC[b][2], ddof=1) for c in ("capped", "selfshaped", "complement")
           for b in ("ce", "ls")}  # from the accuracies as written, not from the records
    (c, b), widest = max(sds.items(), key=lambda item: item[1])
    names = {"capped": "capped CE", "selfshaped": "self-shaped LS", "complement": "complement LS", "ce": "cross-entropy",
             "ls": "label smoothing"}
    column = seeds_table([plan], runs).iloc[:, 0]
    assert column["own pairs' SDs"] == f"{100 * min(sds.values()):.2f} to {100 * widest:.2f}, widest {names[c]} − {names[b]}"


def test_the_last_epochs_table_reads_the_change_of_test_accuracy_and_the_final_train_test_gap():
    from lossnb.study import last_epochs

    epochs = np.arange(20)  # the last tenth: 2 epochs, from epoch 17 to 19
    rows = []
    for tag, seed, rise, gap in [("ce", 0, 0.004, -0.01), ("ce", 1, 0.006, -0.02), ("mae", 0, -0.002, 0.01)]:
        test = 0.8 + rise * (epochs >= 18) + rise * (epochs >= 19)  # 2 x rise over the last two epochs
        rows += [{"loss_tag": tag, "seed": seed, "epoch": e, "test_acc": t, "train_acc": t + gap}
                 for e, t in zip(epochs, test)]
    table = last_epochs(pd.DataFrame(rows), ["ce", "mae"], {"ce": "CE"})
    assert list(table.index) == ["CE", "mae"]
    assert list(table.iloc[:, 0]) == pytest.approx([100 * 2 * 0.005, 100 * 2 * -0.002])  # CE: mean of 0.8, 1.2
    assert list(table.iloc[:, 1]) == pytest.approx([-1.5, 1.0])
    assert table.shape[1] == 2  # no record of the un-augmented fit, no column for it


def test_the_last_epochs_table_adds_the_un_augmented_fit_where_the_records_hold_it():
    from lossnb.study import last_epochs

    rows = [{"loss_tag": tag, "seed": seed, "epoch": e, "test_acc": 0.9, "train_acc": 0.88}
            for tag, seed in [("ce", 0), ("ce", 1), ("mae", 0)] for e in range(10)]
    ends = pd.DataFrame({"loss_tag": ["ce", "ce", "mae", "mae"], "seed": [0, 1, 0, 1],  # mae seed 1 has no curve
                         "train_eval_acc": [0.93, 0.94, 0.90, 0.99], "final_test_acc": [0.91, 0.91, 0.91, 0.91]})
    table = last_epochs(pd.DataFrame(rows), ["ce", "mae"], {}, ends=ends)
    assert "un-augmented" in table.columns[2] and "augmented" in table.columns[1]
    # CE: (2 + 3) / 2 points; MAE: -1 point, its seed 1 (no curve, not pictured) left out
    assert list(table.iloc[:, 2]) == pytest.approx([2.5, -1.0])
    assert list(table.iloc[:, 1]) == pytest.approx([-2.0, -2.0])


def test_a_study_with_a_planned_run_missing_is_left_out_of_every_page_that_gathers_verdicts(study):
    """A plan's tests are read once, on every run it plans: before that, the front page's figure and the
    designs' evidence leave the study out, and its own spread is not described."""
    from lossnb import designs
    from lossnb.answer import forest_table
    from lossnb.study import answered, seeds_table

    plan, runs = study
    assert len(runs) == plan.planned  # the fixture writes every planned run
    one_short = runs.drop(index=runs.index[runs["loss"] == "ce"][0])
    assert answered(plan, runs) and not answered(plan, one_short)
    assert len(forest_table([plan], runs)) == len(plan.families[0].pairs)
    assert forest_table([plan], one_short).empty
    assert not designs.evidence([plan], runs, "complement_ls").empty
    assert designs.evidence([plan], one_short, "complement_ls").empty
    assert seeds_table([plan], runs).iloc[:, 0]["own SD"] != "–"
    assert seeds_table([plan], one_short).iloc[:, 0]["own SD"] == "–"


def test_a_run_that_diverged_answers_its_place_in_the_plan_as_one_failure(study, tmp_path):
    """A run stopped where its loss went non-finite is an outcome, not a run still to come: the plan is answered,
    the run counts as its loss's failure (Clopper-Pearson interval, statsmodels' 'beta' method as reference) and
    stays out of the tests, which compare focal loss on its other five seeds."""
    from statsmodels.stats.proportion import proportion_confint

    from lossnb.findings import run_outcomes
    from lossnb.plan import failure_rates
    from lossnb.study import answered

    plan, _ = study
    run_dir = write_synthetic_record(tmp_path / "runs", "focal", 2, 0.7, loss_params={"gamma": 2},
                                     status="diverged", epochs_completed=1, diverged_at={"epoch": 1, "step": 3})
    metrics = run_dir / "metrics.csv"  # as the trainer leaves it: the rows of the epochs before the one it stopped in
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
    runs, _ = load_runs(tmp_path / "runs")
    assert (runs["status"] == "diverged").sum() == 1 and len(runs) == plan.planned
    assert answered(plan, runs)
    outcomes = run_outcomes(plan, runs)
    assert (outcomes["finished"], outcomes["complete"], outcomes["diverged"], outcomes["failed"]) == \
        (plan.planned, plan.planned - 1, 1, 2)  # the fixture's MAE seed 0 did not train: the other failure
    rates = failure_rates(plan, runs).set_index("loss_tag")
    assert (rates.loc["focal-gamma2", "runs"], rates.loc["focal-gamma2", "failed"]) == (6, 1)
    low, high = proportion_confint(1, 6, alpha=0.05, method="beta")
    assert (rates.loc["focal-gamma2", "ci low"], rates.loc["focal-gamma2", "ci high"]) == pytest.approx((low, high))
    table = compare(plan, runs)
    with_focal = table[(table["a"] == "focal-gamma2") | (table["b"] == "focal-gamma2")]
    assert len(with_focal) and (with_focal["seeds"] == 5).all()


def test_the_runs_of_a_study_under_way_are_left_out_of_pages_that_read_every_record(study):
    from lossnb.study import without_unanswered

    plan, runs = study
    other = runs.assign(study="another-e2")  # a study no plan names: always kept
    both = pd.concat([runs, other], ignore_index=True)
    assert len(without_unanswered([plan], both)) == len(both)
    one_short = both.drop(index=both.index[(both["study"] == plan.study) & (both["loss"] == "ce")][0])
    kept = without_unanswered([plan], one_short)
    assert (kept["study"] == plan.study).sum() == 0 and len(kept) == len(other)
