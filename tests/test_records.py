"""A record means what it says: only a whole record counts as finished; a broken one is named in one line,
skipped by the tables with a warning, never silently retrained or overwritten, and never stops the others."""
import json
from pathlib import Path

import pytest

from conftest import write_synthetic_record
from lossnb.cli import main as cli_main
from lossnb.grid import plan_runs
from lossnb.results import load_runs
from lossnb.trainer import RunConfig, records

CFG = dict(arch="convnet", dataset="fashionmnist", epochs=2, protocol="t")


def damage(run_dir: Path, how: str) -> None:
    if how == "summary cut short":
        text = (run_dir / "summary.json").read_text()
        (run_dir / "summary.json").write_text(text[:len(text) // 2])
    elif how == "summary a list":
        (run_dir / "summary.json").write_text("[]")
    elif how == "no config":
        (run_dir / "config.json").unlink()
    elif how == "metrics cut mid-row":
        text = (run_dir / "metrics.csv").read_text()
        (run_dir / "metrics.csv").write_text(text[:text.rindex(",") - 2])
    elif how == "a NaN in metrics":
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        cells = lines[1].split(",")
        cells[3] = "nan"
        (run_dir / "metrics.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    elif how == "complete but short":  # consistent with itself, one epoch of its run's two
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        (run_dir / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
        summary = json.loads((run_dir / "summary.json").read_text())
        (run_dir / "summary.json").write_text(json.dumps(summary | {"epochs_completed": 1}))


HOW = ["summary cut short", "summary a list", "no config", "metrics cut mid-row", "a NaN in metrics",
       "complete but short"]


@pytest.fixture
def two_records(tmp_path):
    good = write_synthetic_record(tmp_path, "ce", 0, 0.8)
    bad = write_synthetic_record(tmp_path, "ce", 1, 0.7)
    return tmp_path, good, bad


@pytest.mark.parametrize("how", HOW)
def test_a_broken_record_is_named_and_skipped_by_the_tables(two_records, how):
    root, good, bad = two_records
    damage(bad, how)
    assert records.is_finished(good) and not records.is_finished(bad)
    with pytest.warns(UserWarning, match=str(bad)):
        runs, _ = load_runs(root)
    assert list(runs["seed"]) == [0]
    assert runs.attrs["skipped"][0][0] == str(bad)


@pytest.mark.parametrize("how", HOW)
def test_a_grid_skips_a_broken_record_with_its_reason_and_plans_the_rest(two_records, how):
    root, good, bad = two_records
    damage(bad, how)
    cfgs = [RunConfig(loss="ce", seed=s, **CFG) for s in (0, 1, 2)]
    plan = plan_runs(cfgs, root)
    reasons = dict(plan.skipped)
    assert reasons[str(cfgs[0].run_path())] == "finished record exists"
    assert reasons[str(cfgs[1].run_path())].startswith(f"broken record: {bad}")
    assert [c.seed for c in plan.todo] == [2]
    again = plan_runs(cfgs, root, retrain_broken=True)
    assert [c.seed for c in again.todo] == [1, 2]


@pytest.mark.parametrize("how, said", [("summary cut short", "summary.json is not a JSON object"),
                                       ("complete but short", "complete after 1 epochs, but its run has 2")])
def test_train_refuses_a_broken_record_in_one_line_and_force_retrains_it(two_records, capsys, how, said):
    root, _, bad = two_records
    damage(bad, how)
    args = ["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "ce", "--seed", "1", "--epochs",
            "2", "--protocol", "t", "--runs-dir", str(root), "--no-progress", "--train-subset", "256",
            "--val-size", "256"]
    cfg = RunConfig(loss="ce", seed=1, **{**CFG, "train_subset": 256, "val_size": 256})
    # the damaged record sits where this run would be written only if their settings are the same
    target = root / cfg.run_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    bad.rename(target)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert said in err and "--force" in err and "Traceback" not in err
    assert cli_main([*args, "--replace-broken"]) == 0
    assert records.is_finished(target)


def test_a_record_moved_into_another_folder_is_not_read_as_that_folders_run(tmp_path):
    write_synthetic_record(tmp_path, "focal", 0, 0.8, loss_params={"gamma": 2})
    src = tmp_path / "t-e2" / "convnet-fashionmnist" / "focal-gamma2" / "seed0"
    dst = tmp_path / "t-e2" / "convnet-fashionmnist" / "ce" / "seed0"
    dst.parent.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    config["run_path"] = "t-e2/convnet-fashionmnist/focal-gamma2/seed0"
    (src / "config.json").write_text(json.dumps(config))
    src.rename(dst)
    with pytest.warns(UserWarning, match="was made for t-e2/convnet-fashionmnist/focal-gamma2/seed0"):
        runs, _ = load_runs(tmp_path)
    assert runs.empty


def test_hidden_protocol_and_missing_runs_folder(tmp_path):
    with pytest.raises(ValueError, match="starting with a letter or digit .* a hidden one no table reads"):
        RunConfig(loss="ce", **{**CFG, "protocol": ".hidden"})
    with pytest.warns(UserWarning, match="no runs directory"):
        runs, _ = load_runs(tmp_path / "nowhere")
    assert runs.empty and {"arch", "dataset", "head"} <= set(runs.columns)
