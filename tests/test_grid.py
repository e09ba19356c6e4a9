"""Grid files, and grids run for real (tiny FashionMNIST runs) on the local and Ray backends."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lossnb.cli import main as cli_main
from lossnb.grid import GridError, parse_grid, plan_runs, run_local
from lossnb.trainer import RunConfig, records

HAVE_FMNIST = Path("/usr/share/datasets/fashion-mnist").is_dir()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")

TINY = {"protocol": "tiny", "budget": {"epochs": 1, "train_subset": 256, "val_size": 256},
        "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
        "losses": ["ce", {"name": "focal", "params": {"gamma": 2}}], "seeds": [0, 1]}


def tiny(**changes):
    return {**json.loads(json.dumps(TINY)), **changes}


def write_grid(tmp_path, grid):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


# ------------------------------------------------------------------ validation and expansion
def test_a_grid_expands_to_every_task_loss_seed_with_per_loss_seeds():
    grid = parse_grid(tiny(losses=["ce", {"name": "gce", "params": {"q": 0.7}, "seeds": [7]}], seeds=[0, 1, 2]))
    paths = [str(r.run_path()) for r in grid.runs]
    assert len(paths) == 4
    assert "tiny-e1-n256-val256/convnet-fashionmnist/gce-q0.7/seed7" in paths
    assert all(r.epochs == 1 and r.train_subset == 256 for r in grid.runs)


@pytest.mark.parametrize("change, message", [
    ({"sedes": [0]}, "unknown key 'sedes' in the grid; allowed: protocol, description, budget"),
    ({"budget": {"epoch": 3}}, "unknown key 'epoch' in budget; allowed: epochs"),
    ({"losses": ["xent"]}, "unknown loss 'xent'"),
    ({"losses": [{"name": "focal", "params": {"gamma": -1}}]}, "gamma"),
    ({"losses": [{"name": "focal", "parms": {}}]}, "unknown key 'parms' in a loss entry; allowed: name, params, seeds"),
    ({"tasks": [{"arch": "resnet", "dataset": "fashionmnist"}]}, "unknown arch 'resnet'; choose one of: convnet"),
    ({"tasks": [{"arch": "convnet"}]}, "tasks[0] is missing 'dataset'"),
    ({"seeds": [0, 0]}, "seeds must be distinct non-negative integers"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"losses": ["ce", "ce"]}, "the same run twice"),
])
def test_bad_grids_are_refused_naming_the_key_and_the_choices(change, message):
    with pytest.raises(GridError, match=None) as err:
        parse_grid(tiny(**change), source="g.yaml")
    assert message in str(err.value) and str(err.value).startswith("g.yaml:")


def test_a_missing_key_and_the_cli_error_line(tmp_path, capsys):
    grid = tiny()
    del grid["seeds"]
    assert cli_main(["grid", str(write_grid(tmp_path, grid)), "--dry-run"]) == 2
    assert "missing key 'seeds'" in capsys.readouterr().err


def test_shipped_grid_files_are_valid():
    for path in sorted(Path(__file__).parents[1].glob("grids/*.yaml")):
        grid = parse_grid(yaml.safe_load(path.read_text()), source=str(path))
        assert grid.runs, path


def test_missing_data_sets_are_skipped_with_where_to_get_them(tmp_path):
    grid = parse_grid(tiny(tasks=[{"arch": "convnet", "dataset": "cifar10"}]))
    plan = plan_runs(grid.runs, tmp_path / "runs", data_root=tmp_path / "nodata")
    assert not plan.todo and len(plan.skipped) == 4
    assert "cifar10 not found" in plan.skipped[0][1] and "--data-root" in plan.skipped[0][1]


# ------------------------------------------------------------------ real runs
def assert_complete(run_dir: Path):
    summary = records.read_summary(run_dir)
    assert summary and summary["status"] == "complete", run_dir
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "config.json").is_file()
    executed = json.loads((run_dir / "notebook.ipynb").read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


@needs_fmnist
def test_local_backend_runs_the_tiny_grid_and_a_second_call_skips_it(tmp_path, capsys):
    path = write_grid(tmp_path, tiny())
    runs = tmp_path / "runs"
    assert cli_main(["grid", str(path), "--workers", "2", "--runs-dir", str(runs), "--no-progress"]) == 0
    grid = parse_grid(tiny())
    for cfg in grid.runs:
        assert_complete(runs / cfg.run_path())
    assert "done: 4  failed: 0  skipped: 0" in capsys.readouterr().out
    assert cli_main(["grid", str(path), "--runs-dir", str(runs), "--no-progress"]) == 0
    assert "done: 0  failed: 0  skipped: 4" in capsys.readouterr().out


@needs_fmnist
def test_a_failing_run_is_reported_and_the_others_complete(tmp_path):
    good = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=256, protocol="tiny")
    bad = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=10**7, protocol="tiny")
    outcomes = run_local([bad, good], tmp_path / "runs", workers=1)
    by_path = {o.run_path: o for o in outcomes}
    assert by_path[str(bad.run_path())].status == "failed"
    assert "subset size 10000000" in by_path[str(bad.run_path())].reason
    assert not (tmp_path / "runs" / bad.run_path()).exists()  # no half-written record
    assert by_path[str(good.run_path())].status == "done"
    assert_complete(tmp_path / "runs" / good.run_path())


@needs_fmnist
def test_a_killed_grid_resumes_its_interrupted_run_from_the_checkpoint(tmp_path):
    grid = tiny(budget={"epochs": 3, "train_subset": 2048}, losses=["ce"], seeds=[0])
    path, runs = write_grid(tmp_path, grid), tmp_path / "runs"
    cfg = parse_grid(grid).runs[0]
    checkpoint = runs / ".checkpoints" / cfg.run_path() / "last.pt"
    cmd = [sys.executable, "-m", "lossnb.cli", "grid", str(path), "--runs-dir", str(runs), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the grid, papermill and the kernel, mid-run
    proc.wait()
    assert checkpoint.exists() and not (runs / cfg.run_path()).exists()

    assert cli_main(["grid", str(path), "--runs-dir", str(runs), "--no-progress"]) == 0
    assert_complete(runs / cfg.run_path())
    assert records.read_summary(runs / cfg.run_path())["epochs_completed"] == 3
    assert "resuming" in (runs / cfg.run_path() / "notebook.ipynb").read_text()


@needs_fmnist
@pytest.mark.slow
def test_ray_backend_runs_the_tiny_grid_on_a_local_ray(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    import ray

    monkeypatch.setenv("LOSSNB_RAY_DIR", str(tmp_path / "node"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        path, runs = write_grid(tmp_path, tiny()), tmp_path / "runs"
        assert cli_main(["grid", str(path), "--backend", "ray", "--runs-dir", str(runs), "--no-progress"]) == 0
    finally:
        ray.shutdown()
    for cfg in parse_grid(tiny()).runs:
        assert_complete(runs / cfg.run_path())
    assert "done: 4  failed: 0" in capsys.readouterr().out


def test_a_run_held_by_another_grid_is_left_to_it(tmp_path):
    from lossnb.grid.execute import execute_run, run_lock

    cfg = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=256, protocol="tiny")
    work = tmp_path / "runs" / ".checkpoints" / cfg.run_path()
    with run_lock(work) as mine:
        assert mine
        outcome = execute_run(cfg, tmp_path / "runs")  # returns at once: nothing is trained
    assert outcome.status == "busy" and not (tmp_path / "runs" / cfg.run_path()).exists()
    with run_lock(work) as mine:  # released by its holder
        assert mine
