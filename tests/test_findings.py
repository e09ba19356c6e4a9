"""The facts behind the book's findings, on synthetic records whose outcomes are written by hand, and the check
that fails a chapter in one line when a finding's records no longer support it (also end to end: the front
page on the committed records, one of them changed)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import HAVE_FMNIST, write_synthetic_record
from lossnb import findings
from lossnb.plan import compare, load_plan
from lossnb.results import load_runs
from test_plan import ACC, CE, GRID, PLAN, SEEDS

ROOT = Path(__file__).parents[1]


@pytest.fixture
def outcomes(tmp_path):
    """The plan's records, MAE's seed 0 never trained (best 5%), its seed 1 collapsed (best 60%, final 5%); every
    run's training accuracy 1 point under its test accuracy, except cross-entropy's seed 5, 2 points over."""
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    for tag, (name, params, accs) in ACC.items():
        for seed in SEEDS:
            best, final = float(accs[seed]), None
            if tag == "mae" and seed == 1:
                best, final = 0.6, 0.05
            gap = 0.02 if (tag, seed) == ("ce", 5) else -0.01
            write_synthetic_record(tmp_path / "runs", name, seed, best, final=final, loss_params=params,
                                   train_gap=gap)
    runs, curves = load_runs(tmp_path / "runs")
    return load_plan(tmp_path / "plan.yaml"), runs, curves


def test_run_outcomes_count_what_was_written(outcomes):
    plan, runs, _ = outcomes
    got = findings.run_outcomes(plan, runs)
    assert (got["complete"], got["trained"], got["did_not_train"], got["collapsed"]) == (42, 41, 1, 1)
    assert (got["finished"], got["diverged"], got["failed"]) == (42, 0, 2)
    assert got["failed_losses"] == ["mae"]
    assert got["did_not_train_by_loss"]["mae"] == 1 and got["did_not_train_by_loss"]["ce"] == 0
    assert got["seeds_by_loss"]["mae"] == 6


def test_fit_at_end_compares_the_last_epochs_of_the_runs_that_trained_and_held(outcomes):
    plan, runs, curves = outcomes
    got = findings.fit_at_end(plan, runs, curves)
    assert got["runs"] == 40  # MAE's two failed runs left out
    assert got["train_below_test"] == 39
    assert got["mean_gap"] == pytest.approx((39 * -0.01 + 0.02) / 40)
    assert got["largest_loss_gap"] == pytest.approx((5 * -0.01 + 0.02) / 6)  # cross-entropy's


def test_plain_fit_at_end_reads_the_un_augmented_training_accuracy_of_the_runs_that_trained_and_held(tmp_path):
    """Every run's un-augmented training accuracy 3 points over its final test accuracy, except cross-entropy's
    seed 5, 1 point under; MAE's seed 0 never trained and its seed 1 collapsed, both 10 points over."""
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    for tag, (name, params, accs) in ACC.items():
        for seed in SEEDS:
            best, final = float(accs[seed]), None
            if tag == "mae" and seed in (0, 1):
                best, final = (0.05, 0.05) if seed == 0 else (0.6, 0.05)
            over = -0.01 if (tag, seed) == ("ce", 5) else 0.10 if (tag, seed) in (("mae", 0), ("mae", 1)) else 0.03
            write_synthetic_record(tmp_path / "runs", name, seed, best, final=final, loss_params=params,
                                   train_eval_acc=(best if final is None else final) + over)
    runs, _ = load_runs(tmp_path / "runs")
    got = findings.plain_fit_at_end(load_plan(tmp_path / "plan.yaml"), runs)
    assert got["runs"] == 40 and got["above"] == 39
    assert got["mean_gap"] == pytest.approx((39 * 0.03 - 0.01) / 40)
    assert got["least_gap"] == pytest.approx(-0.01)
    assert got["smallest_loss_gap"] == pytest.approx((5 * 0.03 - 0.01) / 6)  # cross-entropy's
    assert got["largest_loss_gap"] == pytest.approx(0.03)


def test_accuracy_beside_another_study_compares_the_means_of_the_runs_that_trained_loss_by_loss(tmp_path):
    """The same plan on a second network (another protocol): cross-entropy 3 points up on every seed; MAE's seed 0
    did not train on the first network and did on the second; label smoothing ran on the first only."""
    bn_grid = GRID | {"protocol": "u", "tasks": [{"arch": "convnet_bn", "dataset": "fashionmnist"}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "bn-grid.yaml").write_text(yaml.safe_dump(bn_grid))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    (tmp_path / "bn-plan.yaml").write_text(yaml.safe_dump(PLAN | {"grid": "bn-grid.yaml",
                                                                  "task": "convnet_bn-fashionmnist"}))
    bn_mae = [0.6, 0.63, 0.65, 0.61, 0.64, 0.62]
    for seed in SEEDS:
        for tag in ("ce", "ls", "mae"):
            name, params, accs = ACC[tag]
            write_synthetic_record(tmp_path / "runs", name, seed, float(accs[seed]), loss_params=params)
        write_synthetic_record(tmp_path / "runs", "ce", seed, float(CE[seed]) + 0.03, protocol="u", arch="convnet_bn")
        write_synthetic_record(tmp_path / "runs", "mae", seed, bn_mae[seed], protocol="u", arch="convnet_bn")
    runs, _ = load_runs(tmp_path / "runs")
    plan, bn = load_plan(tmp_path / "plan.yaml"), load_plan(tmp_path / "bn-plan.yaml")
    got = findings.accuracy_beside(bn, plan, runs)
    assert sorted(got.index) == ["ce", "mae"]  # label smoothing ran on one network only
    assert got.loc["ce", "gain"] == pytest.approx(0.03)
    assert got.loc["mae", plan.study] == pytest.approx(np.mean([0.6, 0.62, 0.58, 0.61, 0.59]))  # seed 0 kept out
    assert got.loc["mae", "gain"] == pytest.approx(np.mean(bn_mae) - 0.6)


def test_a_comparison_is_found_by_its_pair_and_a_missing_one_is_named(outcomes):
    plan, runs, _ = outcomes
    table = compare(plan, runs)
    row = findings.comparison(table, "ce", "mae")
    assert row["verdict"] == "better" and row["seeds"] == 5  # MAE seed 0 kept out; the collapsed seed 1 counts by its best
    assert findings.verdicts(table, "ranking") == {"better", "worse"}
    assert findings.verdict_of(table, "ce", "mae") == "better"
    with pytest.raises(findings.FindingUnsupported, match="no comparison of mae with ce"):
        findings.comparison(table, "mae", "ce")
    with pytest.raises(findings.FindingUnsupported, match="no comparison of mae with ce"):
        findings.verdict_of(table, "mae", "ce")


def test_a_check_passes_silently_and_fails_in_one_line_naming_the_finding():
    findings.check("cross-entropy beats MAE", True, "better")
    with pytest.raises(findings.FindingUnsupported) as caught:
        findings.check("cross-entropy beats MAE", False, "report-convnet: undecided")
    message = str(caught.value)
    assert "\n" not in message
    assert "'cross-entropy beats MAE'" in message and "report-convnet: undecided" in message


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FMNIST, reason="the front page's imports need the book's environment")
def test_the_front_page_fails_to_execute_when_a_finding_loses_its_evidence(tmp_path):
    """ArcFace's failed seeds, edited into runs that trained: the front page's ArcFace sentence fails, in one
    line, and names itself."""
    from lossnb.book import ChapterFailed, execute_studies

    for part in ("notebooks", "grids", "runs", "benchmarks"):  # benchmarks: the pilot's amended cost measure
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns(".checkpoints", ".staging"))
    for summary in (tmp_path / "runs" / "angular-convnet-e20").rglob("arcface*/seed*/summary.json"):
        values = json.loads(summary.read_text())
        summary.write_text(json.dumps({**values, "best_test_acc": 0.85, "final_test_acc": 0.85}))
    with pytest.raises(ChapterFailed) as caught:
        execute_studies(tmp_path, studies=("intro",))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("chapter 'intro': ")
    assert "'ArcFace fails to train in most seeds'" in message and "0 of 5 seeds did not train" in message


def test_the_chance_that_runs_all_train_is_the_binomial_probability_of_no_failure():
    from scipy.stats import binom

    from lossnb.findings import all_train_chance

    outcomes = {"finished": 100, "failed": 4}  # 4 of 100 failed (diverged, did not train or collapsed)
    assert all_train_chance(outcomes, 9) == pytest.approx(binom.pmf(0, 9, 0.04))
    assert all_train_chance(outcomes, 20) == pytest.approx(binom.pmf(0, 20, 0.04))
