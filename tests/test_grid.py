"""Grid files, and grids run for real (tiny FashionMNIST runs) on the local and Ray backends."""
import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lossnb.cli import main as cli_main
from lossnb.grid import GridError, log_path, make_packs, parse_grid, plan_runs, run_local
from lossnb.trainer import RunConfig, RunFiles, records
from conftest import HAVE_FMNIST, needs_fmnist


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
    ({"budget": {"lr": "fast"}}, "lr must be a number, got 'fast'"),
    ({"budget": {"train_subset": 1.5}}, "train_subset must be an integer or null, got 1.5"),
    ({"budget": {"val_size": "10"}}, "val_size must be an integer or null, got '10'"),
    ({"budget": {"device": 3}}, "device must be a string, got 3"),
    ({"budget": {"image_prep": "crop"}}, "image_prep='crop'; choose one of: pad, resize-rgb"),
    ({"losses": ["ce", "ce"]}, "the same run twice"),
    ({"seeds": [2**64]}, "seed=18446744073709551616; it must be <= 4294967295"),
    ({"budget": {"lr": float("nan")}}, "lr=nan; it must be a finite number"),
])
def test_bad_grids_are_refused_naming_the_key_and_the_choices(change, message):
    with pytest.raises(GridError, match=None) as err:
        parse_grid(tiny(**change), source="g.yaml")
    assert message in str(err.value) and str(err.value).startswith("g.yaml:")


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    text = yaml.safe_dump(tiny()) + "seeds: [5]\n"
    path.write_text(text)
    assert cli_main(["grid", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    line = len(text.splitlines())  # the second 'seeds', the file's last line
    assert "key 'seeds' is given twice" in err and f"line {line}, column 1" in err and "Traceback" not in err


def test_broken_yaml_is_one_line_with_its_place(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text("protocol: tiny\nseeds: [0, 1\n")  # the list is never closed: PyYAML finds out on line 3
    assert cli_main(["grid", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML (line 3, column 1: expected ',' or ']'" in err


def test_a_missing_key_and_the_cli_error_line(tmp_path, capsys):
    grid = tiny()
    del grid["seeds"]
    assert cli_main(["grid", str(write_grid(tmp_path, grid)), "--dry-run"]) == 2
    assert "missing key 'seeds'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--pack", "0"], "pack size must be a positive integer, got 0"),
                                            (["--workers", "0"], "workers must be a positive integer, got 0"),
                                            (["--time-budget", "-5"], "--time-budget=-5.0; it must be a positive"),
                                            (["--time-budget", "nan"], "--time-budget=nan; it must be a positive")])
def test_bad_grid_flags_end_in_one_line(tmp_path, capsys, flags, message):
    assert cli_main(["grid", str(write_grid(tmp_path, tiny())), "--runs-dir", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("only, message", [
    (["seed=7"], "--only seed=7 matches no run of the grid; its seed is one of: 0, 1, 2"),
    (["loss=focall"], "--only loss=focall matches no run of the grid; its loss is one of: ce, gce"),
    (["loss=ce", "seed=2"], "--only loss=ce seed=2: the grid has each of these, but no run that has them all")])
def test_a_selection_that_matches_no_run_is_refused_naming_what_the_grid_holds(tmp_path, capsys, only, message):
    grid = tiny(losses=["ce", {"name": "gce", "params": {"q": 0.7}, "seeds": [2]}])  # gce alone has seed 2
    flags = [f for pair in only for f in ("--only", pair)]
    assert cli_main(["grid", str(write_grid(tmp_path, grid)), "--runs-dir", str(tmp_path / "runs"), "--dry-run",
                     *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"lossnb grid: {message}\n"


def test_a_selection_keeps_exactly_the_runs_that_match_it(tmp_path):
    grid = parse_grid(tiny(losses=["ce", {"name": "gce", "params": {"q": 0.7}, "seeds": [2]}]))
    plan = plan_runs(grid.runs, tmp_path / "runs", only={"loss": "ce"})
    assert [(c.loss, c.seed) for c in plan.todo] == [("ce", 0), ("ce", 1)]
    plan = plan_runs(grid.runs, tmp_path / "runs", only={"seed": "2"})
    assert [(c.loss, c.seed) for c in plan.todo] == [("gce", 2)]


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
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.csv", "summary.json"]


@pytest.mark.slow
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


@pytest.mark.slow
@needs_fmnist
def test_a_failing_run_is_reported_and_the_others_complete(tmp_path):
    good = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=256, protocol="tiny")
    bad = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=10**7, protocol="tiny")
    outcomes = run_local([[bad], [good]], tmp_path / "runs", workers=1)
    by_path = {o.run_path: o for o in outcomes}
    assert by_path[str(bad.run_path())].status == "failed"
    assert "train_subset=10000000 is more than the 60000 training images" in by_path[str(bad.run_path())].reason
    assert not (tmp_path / "runs" / bad.run_path()).exists()  # no half-written record
    assert by_path[str(good.run_path())].status == "done"
    assert_complete(tmp_path / "runs" / good.run_path())


@pytest.mark.slow
@needs_fmnist
def test_a_killed_grid_leaves_no_trainer_and_resumes_its_pack_from_the_checkpoints(tmp_path):
    # epochs long enough that none finishes between the first checkpoint and the kill, on a fast CPU too
    grid = tiny(budget={"epochs": 3, "train_subset": 8192}, seeds=[0])
    path, runs = write_grid(tmp_path, grid), tmp_path / "runs"
    cfgs = parse_grid(grid).runs
    files = [RunFiles.of(c, runs) for c in cfgs]
    cmd = [sys.executable, "-m", "lossnb.cli", "grid", str(path), "--runs-dir", str(runs), "--no-progress",
           "--pack", "2", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not all(f.checkpoint_epochs() for f in files) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the grid alone: its trainer must not live on
    proc.wait()
    assert all(f.checkpoint_epochs() for f in files) and not any((runs / c.run_path()).exists() for c in cfgs)
    deadline = time.time() + 10
    while _lock_held(files[0]) and time.time() < deadline:  # the orphan gets SIGTERM from the kernel
        time.sleep(0.05)
    assert not _lock_held(files[0]), "a trainer outlived its grid"

    assert cli_main(["grid", str(path), "--runs-dir", str(runs), "--no-progress", "--pack", "2"]) == 0
    for cfg in cfgs:
        assert_complete(runs / cfg.run_path())
        assert records.read_summary(runs / cfg.run_path())["epochs_completed"] == 3
    assert "resuming 2 run(s)" in log_path(runs, cfgs).read_text()


@pytest.mark.slow
@needs_fmnist
def test_a_terminated_grid_stops_its_packs_reports_and_leaves_no_temporary_file(tmp_path):
    grid = tiny(budget={"epochs": 3, "train_subset": 8192}, seeds=[0])
    path, runs, temp = write_grid(tmp_path, grid), tmp_path / "runs", tmp_path / "tmp"
    temp.mkdir()
    files = [RunFiles.of(c, runs) for c in parse_grid(grid).runs]
    cmd = [sys.executable, "-m", "lossnb.cli", "grid", str(path), "--runs-dir", str(runs), "--no-progress",
           "--pack", "2", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.time() + 120
    while not all(f.checkpoint_epochs() for f in files) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as a session's end or a scheduler stops it: the grid alone
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "done: 0  failed: 0" in out and "interrupted; checkpoints are kept" in err
    assert "Traceback" not in err
    assert not any(temp.iterdir()), "the pack's config file was left behind"
    assert not _lock_held(files[0]), "a trainer outlived its grid"


def _lock_held(files) -> bool:
    from lossnb.trainer.workspace import run_locks

    with run_locks([files]) as held:
        return not held[0]


@pytest.mark.slow
def test_grid_settings_reach_the_trainer_and_the_record(tmp_path):
    """Every setting a grid gives is a RunConfig field, and the record's config is the RunConfig trained."""
    grid = tiny(budget={"epochs": 1, "train_subset": 256, "weight_decay": 0.01, "momentum": 0.5, "nesterov": True,
                        "lr": 0.05, "precision": "fp32"}, losses=["ce"], seeds=[0])
    cfg = parse_grid(grid).runs[0]
    assert (cfg.weight_decay, cfg.momentum, cfg.nesterov, cfg.lr) == (0.01, 0.5, True, 0.05)
    assert str(cfg.run_path()).startswith("tiny-e1-n256-lr0.05-mom0.5-wd0.01-nesterov/")
    if not HAVE_FMNIST:
        return
    outcomes = run_local([[cfg]], tmp_path / "runs", workers=1)
    assert [o.status for o in outcomes] == ["done"]
    written = json.loads((tmp_path / "runs" / cfg.run_path() / "config.json").read_text())["run"]
    assert RunConfig.from_dict(written) == cfg


def test_packs_group_compatible_runs_seed_by_seed(tmp_path):
    grid = parse_grid(tiny(tasks=[{"arch": "convnet", "dataset": "fashionmnist"},
                                  {"arch": "resnet20", "dataset": "fashionmnist"}], seeds=[0, 1, 2]))
    plan = plan_runs(grid.runs, tmp_path / "runs")
    packs = make_packs(plan.todo, 4, tmp_path / "runs")
    assert sorted(len(p) for p in packs) == [2, 2, 4, 4]
    for pack in packs:
        assert len({c.arch for c in pack}) == 1
    assert [c.seed for c in packs[0]] == [0, 0, 1, 1]  # first seeds first
    with pytest.raises(ValueError, match="pack size must be a positive integer, got 0"):
        make_packs(plan.todo, 0, tmp_path / "runs")


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


def test_a_run_held_by_another_process_is_left_to_it(tmp_path):
    from lossnb.grid import execute_pack
    from lossnb.trainer.workspace import run_locks

    cfg = RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", epochs=1, train_subset=256, protocol="tiny")
    with run_locks([RunFiles.of(cfg, tmp_path / "runs")]) as held:
        assert held == [True]
        outcome, = execute_pack([cfg], tmp_path / "runs")  # returns at once: nothing is trained
    assert outcome.status == "busy" and not (tmp_path / "runs" / cfg.run_path()).exists()


@pytest.mark.slow
def test_a_gpu_window_returns_finished_records_and_carries_an_unfinished_pack_over(tmp_path):
    """scripts/gpu_job.sh window on this CPU with two minutes: the short grid's runs finish and come back as
    records; the --carry grid's pack, far longer than that, starts anyway, is stopped at the deadline,
    and comes back as checkpoints (no record) from which the next call resumes it."""
    import os
    import subprocess
    import sys
    import tarfile

    root = Path(__file__).parents[1]
    (tmp_path / "scripts").mkdir()
    shutil.copy(root / "scripts" / "gpu_job.sh", tmp_path / "scripts")
    (tmp_path / "src").symlink_to(root / "src")
    (tmp_path / "grids").mkdir()
    # The long grid must outlast the window on any machine: a fast CPU trains 1,000 such epochs in under two minutes.
    for name, epochs, loss in (("short", 2, "ce"), ("long", 100_000, "poly1")):
        write_grid(tmp_path / "grids", {"protocol": name, "budget": {"epochs": epochs, "train_subset": 512,
                                                                    "val_size": 256},
                                        "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
                                        "losses": [loss], "seeds": [0]}).rename(tmp_path / "grids" / f"{name}.yaml")
    env = {**os.environ, "PYTHON": sys.executable, "PACK": "1", "RESERVE_SECONDS": "10", "MIN_GRID_SECONDS": "5",
           "DATA_ROOT": "/usr/share/datasets"}
    out = tmp_path / "out"
    subprocess.run(["bash", "scripts/gpu_job.sh", "window", "2", str(out), "grids/short.yaml", "--carry",
                    "grids/long.yaml"], cwd=tmp_path, env=env, check=True, timeout=240)
    log = (out / "window.log").read_text()
    assert "no CUDA GPU" in log and "window done" in log
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("short-e2-n512-val256/convnet-fashionmnist/ce/seed0/summary.json") for n in names)
    assert not any("long-" in n for n in names)
    parts = sorted(out.glob("checkpoints.tar.gz.part-*"))
    assert parts
    restored = tmp_path / "restored"
    restored.mkdir()
    subprocess.run(f"cat {' '.join(map(str, parts))} | tar xz -C {restored}", shell=True, check=True)
    kept = list(restored.rglob("epoch*.pt"))
    assert kept and all("long-e100000-n512-val256/convnet-fashionmnist/poly1-epsilon1/seed0" in str(p) for p in kept)


def test_a_grid_naming_a_device_lossnb_does_not_train_on_is_refused_before_any_run():
    with pytest.raises(GridError, match="device='xpu'; choose one of: auto, cpu, cuda, cuda:N"):
        parse_grid(tiny(budget={"epochs": 1, "device": "xpu"}))
