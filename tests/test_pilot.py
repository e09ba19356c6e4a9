"""A pilot's criteria and choice on synthetic records, checked against the rule as its file states it and against
numbers worked by hand."""
import json

import numpy as np
import pytest
import yaml

from conftest import write_synthetic_record
from lossnb.pilot import candidate_table, choice, load_pilot, page_table, paired_spread
from lossnb.results import load_runs

LOSSES = ["ce", "focal"]


@pytest.fixture
def pilot(tmp_path):
    grid = {"protocol": "p", "budget": {"epochs": 2}, "tasks": [{"arch": a, "dataset": "fashionmnist"} for a in
            ("convnet_bn", "convnet_bn_w2", "convnet")], "losses": LOSSES, "seeds": [1, 2, 3]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    spec = {"grid": "grid.yaml", "candidates": ["convnet_bn", "convnet_bn_w2"], "reference": "convnet",
            "criteria": {"regime": {"least_mean_gap": 0.01}, "cost": {"hours": 30, "runs": 70}}}
    (tmp_path / "pilot.yaml").write_text(yaml.safe_dump(spec))
    return load_pilot(tmp_path / "pilot.yaml")


def record(root, arch, loss, seed, best=0.9, final=None, fit=None, wall=3600.0, pack=4, threads=1, eval_size=10000,
           status="complete"):
    final = best if final is None else final
    run_dir = write_synthetic_record(root / "runs", loss, seed, best, final=final, protocol="p", arch=arch,
                                     wall_seconds=wall, pack_size=pack, train_eval_acc=final + 0.02 if fit is None
                                     else fit, status=status)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"] = {"eval_size": eval_size}
    config["environment"]["cpu_threads"] = threads
    (run_dir / "config.json").write_text(json.dumps(config))


def table_and_choice(pilot, root):
    runs, _ = load_runs(root / "runs")
    table = candidate_table(pilot, runs)
    return table, choice(pilot, table)


def everything(root, arch, **kw):
    for loss in LOSSES:
        for seed in (1, 2, 3):
            record(root, arch, loss, seed, **kw)


def test_the_cheapest_candidate_that_meets_every_criterion_is_chosen(pilot, tmp_path):
    everything(tmp_path, "convnet_bn")
    everything(tmp_path, "convnet_bn_w2", fit=0.95)  # fits better, but costs more: the rule takes the cheaper
    everything(tmp_path, "convnet", fit=0.85)  # the reference underfits: not judged, but its gap is stated
    table, (arch, _) = table_and_choice(pilot, tmp_path)
    assert arch == "convnet_bn"
    assert table.loc["convnet_bn", "mean gap"] == pytest.approx(0.02)
    assert table.loc["convnet", "mean gap"] == pytest.approx(-0.05)
    # by hand: an hour of a pack of 4 on 1 of 2 cores is 1/8 machine-hour a run, on 50,000 of 60,000 images
    assert table.loc["convnet_bn", "grid hours"] == pytest.approx(70 * 3600 * 1 / (2 * 4) * 60000 / 50000 / 3600)


def test_a_run_that_did_not_train_or_collapsed_makes_a_candidate_unstable(pilot, tmp_path):
    everything(tmp_path, "convnet_bn")
    everything(tmp_path, "convnet_bn_w2")
    record(tmp_path, "convnet_bn", "focal", 4, best=0.1)  # chance on 10 classes
    table, (arch, _) = table_and_choice(pilot, tmp_path)
    assert not table.loc["convnet_bn", "stable"] and table.loc["convnet_bn", "did not train"] == 1
    assert arch == "convnet_bn_w2"
    record(tmp_path, "convnet_bn_w2", "focal", 4, best=0.9, final=0.1)
    table, _ = table_and_choice(pilot, tmp_path)
    assert table.loc["convnet_bn_w2", "collapsed"] == 1 and not table.loc["convnet_bn_w2", "stable"]


def test_a_run_that_diverged_makes_a_candidate_unstable_and_is_no_measure_of_its_cost(pilot, tmp_path):
    everything(tmp_path, "convnet_bn")
    everything(tmp_path, "convnet_bn_w2")
    record(tmp_path, "convnet_bn", "focal", 4, best=0.85, wall=60.0, status="diverged")  # stopped in its first minute
    table, (arch, _) = table_and_choice(pilot, tmp_path)
    assert table.loc["convnet_bn", "runs"] == 3 * len(LOSSES) + 1 and not table.loc["convnet_bn", "stable"]
    assert arch == "convnet_bn_w2"
    # the cost by hand from the whole runs alone: an hour of a pack of 4 on 1 of 2 cores, 50,000 images
    assert table.loc["convnet_bn", "wall-time hours"] == pytest.approx(70 / (2 * 4) * 60000 / 50000)


def test_a_candidate_under_the_gap_or_over_the_cost_is_passed_over_and_the_fallback_is_the_largest_gap(pilot,
                                                                                                      tmp_path):
    everything(tmp_path, "convnet_bn", fit=0.905)  # gap 0.5 points: below the 1-point threshold
    everything(tmp_path, "convnet_bn_w2", fit=0.93, wall=3600.0 * 8)  # gap 3, but 8 hours a pack: 84 h of grid
    table, (arch, why) = table_and_choice(pilot, tmp_path)
    assert not table.loc["convnet_bn", "regime"] and table.loc["convnet_bn_w2", "regime"]
    assert not table.loc["convnet_bn_w2", "affordable"]
    assert arch == "convnet_bn" and "closest" in why


def test_no_choice_while_a_cheaper_candidate_has_no_runs(pilot, tmp_path):
    everything(tmp_path, "convnet_bn_w2")
    assert table_and_choice(pilot, tmp_path)[1][0] is None


def test_the_paired_spread_is_the_pooled_standard_deviation_of_the_seed_differences(pilot, tmp_path):
    accuracies = {"ce": [0.90, 0.91, 0.93], "focal": [0.89, 0.915, 0.92]}
    for loss, values in accuracies.items():
        for seed, acc in zip((1, 2, 3), values):
            record(tmp_path, "convnet_bn", loss, seed, best=acc)
    runs, _ = load_runs(tmp_path / "runs")
    spread = paired_spread(pilot, runs, "convnet_bn")
    diff = np.array(accuracies["ce"]) - np.array(accuracies["focal"])
    assert spread["pooled_sd"] == pytest.approx(np.std(diff, ddof=1)) and spread["dof"] == 2


def test_the_committed_pilot_reads_as_its_grid_names_it():
    from pathlib import Path

    pilot = load_pilot(Path(__file__).parents[1] / "grids" / "pilots" / "convnet-bn.yaml")
    assert pilot.study == "pilot-bn-e200-val10000" and pilot.candidates[0] == "convnet_bn"
    assert (pilot.least_mean_gap, pilot.hours, pilot.planned_runs) == (0.01, 30.0, 70)


def test_the_page_table_gives_points_hours_and_each_criterion_in_words(pilot, tmp_path):
    for loss in LOSSES:
        for seed in (1, 2, 3):
            record(tmp_path, "convnet_bn", loss, seed, best=0.9, final=0.9, fit=0.915)  # gap 1.5 points
            record(tmp_path, "convnet", loss, seed, best=0.86, final=0.86, fit=0.85)
    table, _ = table_and_choice(pilot, tmp_path)
    shown = page_table(table)
    bn = shown.loc["BatchNorm ConvNet"]
    assert (bn["runs"], bn["failed"], bn["best val acc %"], bn["mean gap"]) == (6, 0, "90.00", "1.50")
    assert (bn["stable"], bn["regime"], bn["afford-able"]) == ("yes", "yes", "yes")
    reference = shown.loc["report's ConvNet"]
    assert reference["mean gap"] == "-1.00" and reference["regime"] == "–"  # not judged
    wide = shown.loc["BatchNorm ConvNet ×2 wide"]
    assert wide["runs"] == 0 and wide["stable"] == wide["mean gap"] == "–"  # nothing judged before its runs


def amend(tmp_path, rates):
    """The pilot amended to read its cost from an idle-machine measurement of each candidate's rate."""
    spec = yaml.safe_load((tmp_path / "pilot.yaml").read_text())
    spec["amendments"] = [{"cost_measure": "cost.json"}]
    (tmp_path / "pilot.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "cost.json").write_text(json.dumps({"candidates": [{"arch": a, "images_per_second": r}
                                                                   for a, r in rates.items()]}))
    return load_pilot(tmp_path / "pilot.yaml")


def test_an_amended_cost_measure_decides_and_the_wall_time_measure_stays_beside_it(pilot, tmp_path):
    everything(tmp_path, "convnet_bn", fit=0.905)  # below the gap threshold
    everything(tmp_path, "convnet_bn_w2", fit=0.93, wall=3600.0 * 8)  # in the regime, 84 h by its wall time
    amended = amend(tmp_path, {"convnet_bn": 40_000.0, "convnet_bn_w2": 16_000.0})
    runs, _ = load_runs(tmp_path / "runs")
    table = candidate_table(amended, runs)
    # by hand: 70 runs x 2 epochs (the grid's) x 60,000 images at 16,000 images/s
    assert table.loc["convnet_bn_w2", "grid hours"] == pytest.approx(70 * 2 * 60000 / 16000 / 3600)
    assert table.loc["convnet_bn_w2", "wall-time hours"] == pytest.approx(84.0)
    assert choice(amended, table)[0] == "convnet_bn_w2"
    as_written = candidate_table(amended, runs, as_written=True)
    assert as_written.loc["convnet_bn_w2", "grid hours"] == pytest.approx(84.0)
    assert choice(amended, as_written)[0] == "convnet_bn"
    shown = page_table(table).loc["BatchNorm ConvNet ×2 wide"]
    assert (shown["idle hours"], shown["wall-time hours"]) == ("0", "84")


def test_until_the_amended_measure_has_run_the_wall_time_measure_stands(pilot, tmp_path):
    everything(tmp_path, "convnet_bn")
    amended = amend(tmp_path, {})
    (tmp_path / "cost.json").unlink()
    runs, _ = load_runs(tmp_path / "runs")
    assert candidate_table(amended, runs).loc["convnet_bn", "grid hours"] == pytest.approx(70 * 3600 / 8 * 1.2 / 3600)
    assert "wall-time hours" not in page_table(candidate_table(amended, runs)).columns


def test_the_epoch_time_spread_is_the_slowest_epoch_over_the_median_one(pilot, tmp_path):
    from lossnb.pilot import epoch_time_spread

    everything(tmp_path, "convnet_bn")
    metrics = sorted((tmp_path / "runs").rglob("convnet_bn-*/ce/seed1/metrics.csv"))[0]
    rows = metrics.read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("epoch_seconds")
    cells = [r.split(",") for r in rows[1:]]
    for i, cell in enumerate(cells):
        cell[col] = str(10.0 * (1 + i))  # 10, 20 (two epochs): median 15, slowest 20
    metrics.write_text("\n".join([rows[0]] + [",".join(c) for c in cells]) + "\n")
    runs, curves = load_runs(tmp_path / "runs")
    spread = epoch_time_spread(pilot, runs, curves)
    assert spread.loc["convnet_bn"] == pytest.approx(20 / 15)
