"""The engine on real FashionMNIST: complete run records, exact resume, divergence, re-runs."""
import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from lossnb.cli import main as cli_main
from lossnb.trainer import RunBusy, RunConfig, RunExists, RunFiles, records, train
from conftest import HAVE_FMNIST

pytestmark = pytest.mark.skipif(not HAVE_FMNIST,
                                reason="Debian package dataset-fashion-mnist not installed")

SMALL = dict(arch="convnet", dataset="fashionmnist", train_subset=1024, val_size=512, protocol="test")
TIMING = {"epoch_seconds", "train_images_per_second"}


def _no_exit():
    return contextlib.nullcontext()


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_cli_run_writes_a_complete_record(tmp_path, capsys):
    code = cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "focal",
                     "--loss-param", "gamma=0.5", "--epochs", "2", "--train-subset", "2000", "--seed", "1",
                     "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == 0
    run_dir = tmp_path / "runs" / "bench-e2-n2000" / "convnet-fashionmnist" / "focal-gamma0.5" / "seed1"
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert config["run"]["loss_params"] == {"gamma": 0.5} and config["follows_200_epoch_protocol"] is False
    assert config["data"]["train_size"] == 2000 and config["data"]["eval_size"] == 10000
    assert config["environment"]["torch"] and "commit" in config["environment"]["git"]
    assert set(records.SUMMARY_FIELDS) <= set(summary) and summary["status"] == "complete"
    assert [r["epoch"] for r in rows] == ["0", "1"] and set(records.METRIC_COLUMNS) == set(rows[0])
    assert summary["best_test_acc"] == pytest.approx(max(float(r["test_acc"]) for r in rows), rel=1e-5)
    assert summary["best_test_acc"] > 0.3  # it learned something (10 classes: chance is 0.1)
    assert summary["final_test_acc"] == pytest.approx(float(rows[-1]["test_acc"]), rel=1e-5)
    # the cosine schedule over the whole run, stepped per epoch
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.05])
    assert not list((tmp_path / "runs" / ".checkpoints").rglob("*"))  # removed with their folders: the record is whole


@pytest.mark.slow
def test_checkpoints_are_kept_on_request_and_said_where(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "ce", "--epochs", "2",
            "--train-subset", "500", "--runs-dir", str(runs), "--no-progress", "--keep-checkpoints"]
    assert cli_main(args) == 0
    folder = runs / ".checkpoints" / "bench-e2-n500" / "convnet-fashionmnist" / "ce" / "seed0"
    assert {p.name for p in folder.iterdir()} == {"epoch1.pt", "epoch2.pt"}
    assert f"checkpoints kept in {folder}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_finished_run_is_not_rerun_unless_forced(tmp_path):
    cfg = RunConfig(loss="ce", epochs=1, **SMALL)
    first = train(cfg, runs_dir=tmp_path / "runs", progress=False)
    mtime = (tmp_path / "runs" / cfg.run_path() / "summary.json").stat().st_mtime_ns
    assert train(cfg, runs_dir=tmp_path / "runs", progress=False) == first
    assert (tmp_path / "runs" / cfg.run_path() / "summary.json").stat().st_mtime_ns == mtime
    forced = train(cfg, runs_dir=tmp_path / "runs", progress=False, force=True)
    assert forced["status"] == "complete"


def test_os_errors_and_bad_config_files_end_in_one_line(tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1, 2]")
    assert cli_main(["train", "--config", str(tmp_path / "list.json"), "--runs-dir", str(tmp_path)]) == 2
    assert "a run's settings (a JSON object) or a list of them, not 1" in capsys.readouterr().err
    assert cli_main(["export-loss", "focal", "-o", str(tmp_path / "missing" / "custom_loss.py")]) == 1
    err = capsys.readouterr().err
    assert "No such file or directory" in err and "missing/custom_loss.py" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("")
    code = cli_main(RUN + ["--epochs", "1", "--train-subset", "256", "--runs-dir", str(tmp_path / "afile")])
    err = capsys.readouterr().err
    assert code == 2 and "afile is a file, not a folder" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["export-loss", "focal"],
                                     ["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "focal"]])
def test_a_hyperparameter_too_large_for_a_float_ends_in_one_short_line(command, capsys):
    huge = "1" + "0" * 400
    code = cli_main([*command, "--loss-param", f"gamma={huge}"])
    err = capsys.readouterr().err
    assert code == 2 and "gamma=" in err and "is not a finite number" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 300


@pytest.mark.parametrize("argv", [["--help"], ["grid", "--help"], ["losses", "--help"]])
def test_help_answers_without_importing_torch(argv):
    import subprocess
    import sys

    code = ("import sys\nfrom lossnb import cli\ntry:\n    cli.main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)" % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_losses_lists_each_loss_on_one_line_that_fits_a_terminal(capsys, monkeypatch):
    import lossnb.losses as L

    monkeypatch.setenv("COLUMNS", "100")
    assert cli_main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == L.available()
    assert all(len(line) <= 100 for line in lines)


def test_train_help_names_every_network(capsys):
    from lossnb.models import available_models

    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in available_models()) and "convnet_bn_w4" in out


def test_train_ends_with_a_line_per_run_and_verbose_prints_the_whole_summary(tmp_path, capsys):
    args = RUN + ["--epochs", "1", "--train-subset", "256", "--val-size", "256", "--runs-dir", str(tmp_path)]
    assert cli_main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert len(out) == 1 and f"best val accuracy {summary['best_test_acc']:.4f} (epoch 1)" in out[0]
    assert cli_main(args + ["--verbose"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["final_reliability"] == summary["final_reliability"]


def test_ctrl_c_ends_in_one_line_saying_how_to_resume(tmp_path, capsys, monkeypatch):
    from lossnb.trainer import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_epochs", interrupted)
    code = cli_main(RUN + ["--epochs", "1", "--train-subset", "256", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted; checkpoints are kept, run the same command with --resume" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_settings_that_print_alike_are_not_one_run(tmp_path, capsys):
    """gamma 2 and 2.0000001 share a folder name ('focal-gamma2'); the second is refused, naming both values,
    and never answered with the first's record."""
    from conftest import write_synthetic_record
    from lossnb.grid import plan_runs

    write_synthetic_record(tmp_path, "focal", 0, 0.8, epochs=1, protocol="test", loss_params={"gamma": 2})
    same = RunConfig(loss="focal", loss_params={"gamma": 2}, epochs=1, arch="convnet", dataset="fashionmnist",
                     protocol="test")
    assert train(same, runs_dir=tmp_path, progress=False)["best_test_acc"] == 0.8  # the record answers for it
    other = RunConfig(loss="focal", loss_params={"gamma": 2.0000001}, epochs=1, arch="convnet",
                      dataset="fashionmnist", protocol="test")
    assert other.run_path() == same.run_path()
    with pytest.raises(records.RecordMismatch, match=r"'gamma': 2}, not loss_params=\{'gamma': 2\.0000001"):
        train(other, runs_dir=tmp_path, progress=False)
    skipped = dict(plan_runs([other], tmp_path).skipped)
    assert "made with loss_params" in skipped[str(other.run_path())]
    code = cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "focal", "--loss-param",
                     "gamma=2.0000001", "--epochs", "1", "--protocol", "test", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "made with loss_params" in err and "Traceback" not in err


@pytest.mark.slow
def test_resume_after_an_interruption_ends_exactly_like_an_uninterrupted_run(tmp_path, interrupt_training):
    # online label smoothing keeps state across epochs: resume must restore it too
    cfg = RunConfig(loss="online_ls", epochs=3, seed=5, **SMALL)
    train(cfg, runs_dir=tmp_path / "a", progress=False)

    interrupt_training(cfg, tmp_path / "b", after_epoch=2)
    assert not (tmp_path / "b" / cfg.run_path()).exists()  # no half-written record under runs/
    with pytest.raises(RunExists, match="--resume"):
        train(cfg, runs_dir=tmp_path / "b", progress=False)
    resumed = train(cfg, runs_dir=tmp_path / "b", progress=False, resume=True)

    assert resumed["status"] == "complete" and resumed["epochs_completed"] == 3
    assert read_rows(tmp_path / "b" / cfg.run_path()) == read_rows(tmp_path / "a" / cfg.run_path())


@pytest.mark.slow
def test_a_non_finite_loss_ends_the_run_as_diverged(tmp_path):
    cfg = RunConfig(loss="ce", epochs=3, lr=1e8, **SMALL)
    summary = train(cfg, runs_dir=tmp_path / "runs", progress=False)
    assert summary["status"] == "diverged"
    assert summary["diverged_at"]["epoch"] == 0 and 0 <= summary["diverged_at"]["step"] < 8
    assert records.is_finished(tmp_path / "runs" / cfg.run_path())


RUN = ["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", "ce", "--no-progress"]


@pytest.mark.parametrize("args, message", [
    (["--arch", "resnet"], "unknown arch 'resnet'; choose one of: convnet"),
    (["--loss", "xent"], "unknown loss 'xent'"),
    (["--device", "gpu"], "device='gpu'; choose one of: auto, cpu, cuda, cuda:N"),
    (["--device", "mps"], "device='mps'; choose one of: auto, cpu, cuda, cuda:N"),  # torch knows it; lossnb not
    (["--device", "cuda:7"], "device='cuda:7' but this machine has"),
    (["--loss", "focal", "--loss-param", "gamma=[1, 2"], "--loss-param 'gamma=[1, 2': the value is not valid YAML"),
    (["--loss-param", "gamma"], "--loss-param expects KEY=VALUE, got 'gamma'"),
    (["--val-size", "-5"], "val_size=-5; it must be >= 1"),
    (["--train-subset", "0"], "train_subset=0; it must be >= 1"),
    (["--train-subset", "1"], "a training set of 1 image(s); BatchNorm needs at least 2"),
    (["--lr", "0"], "lr=0.0; it must be > 0"),
    (["--lr", "nan"], "lr=nan; it must be a finite number"),
    (["--momentum", "inf"], "momentum=inf; it must be a finite number"),
    (["--weight-decay", "nan"], "weight_decay=nan; it must be a finite number"),
    (["--seed", str(2**64)], "seed=18446744073709551616; it must be <= 4294967295"),
    (["--image-prep", "crop"], "invalid choice: 'crop'"),
    (["--data-root", "/nonexistent", "--dataset", "mnist"], "--data-root /nonexistent: no such folder"),
    (["--momentum", "1e6"], "momentum=1000000.0; it must be <= 1"),
    (["--protocol", "two\nlines"], "protocol name 'two\\nlines' must be one word of letters, digits"),
    (["--protocol", ".hidden"], "protocol name '.hidden' must be one word"),
])
def test_bad_inputs_end_in_one_line_naming_the_value_and_the_choices(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) if "invalid choice" in message else _no_exit():
        code = cli_main(RUN + ["--runs-dir", str(tmp_path)] + args)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("lossnb")]) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_checkpoint_is_named_and_not_loaded(tmp_path, capsys, interrupt_training, damage):
    cfg = RunConfig(loss="ce", epochs=3, **SMALL)
    interrupt_training(cfg, tmp_path, after_epoch=1)
    ckpt = RunFiles.of(cfg, tmp_path).checkpoint(1)
    ckpt.write_bytes(ckpt.read_bytes()[:100] if damage == "truncate" else b"not a checkpoint")
    args = ["--train-subset", "1024", "--val-size", "512", "--protocol", "test", "--epochs", "3", "--resume"]
    assert cli_main(RUN + ["--runs-dir", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} cannot be read" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_and_ends_as_uninterrupted(
        tmp_path, capsys, interrupt_training):
    cfg = RunConfig(loss="ce", epochs=3, seed=2, **SMALL)
    train(cfg, runs_dir=tmp_path / "a", progress=False)
    interrupt_training(cfg, tmp_path / "b", after_epoch=2)
    files = RunFiles.of(cfg, tmp_path / "b")
    assert files.checkpoint_epochs() == {1, 2}
    files.checkpoint(2).write_bytes(b"not a checkpoint")
    resumed = train(cfg, runs_dir=tmp_path / "b", progress=False, resume=True)
    assert f"checkpoint {files.checkpoint(2)} cannot be read" in capsys.readouterr().err
    assert resumed["status"] == "complete"
    assert read_rows(tmp_path / "b" / cfg.run_path()) == read_rows(tmp_path / "a" / cfg.run_path())


@pytest.mark.slow
def test_a_member_without_a_readable_checkpoint_never_fails_its_pack_mate(tmp_path, capsys, monkeypatch):
    from lossnb.trainer import loop, train_pack

    cfgs = [RunConfig(loss="ce", epochs=3, seed=s, **SMALL) for s in (3, 4)]
    saved = records.atomic_torch_save

    class Killed(Exception):
        pass

    def die_after_epoch_two(obj, path):
        saved(obj, path)
        if obj["epoch"] == 2 and str(cfgs[1].run_path()) in str(path):
            raise Killed

    monkeypatch.setattr(loop.records, "atomic_torch_save", die_after_epoch_two)
    with pytest.raises(Killed):
        train_pack(cfgs, runs_dir=tmp_path, progress=False)
    monkeypatch.setattr(loop.records, "atomic_torch_save", saved)
    sick = RunFiles.of(cfgs[1], tmp_path)
    for epoch in sick.checkpoint_epochs():
        sick.checkpoint(epoch).write_bytes(b"garbage")
    summaries = train_pack(cfgs, runs_dir=tmp_path, progress=False, resume=True)
    assert summaries[0]["status"] == "complete" and summaries[1] is None
    assert not sick.checkpoint_epochs()  # removed: the run starts afresh next time
    assert "no checkpoint of" in capsys.readouterr().err
    assert train_pack([cfgs[1]], runs_dir=tmp_path, progress=False)[0]["status"] == "complete"


@pytest.mark.slow
def test_a_checkpoint_of_another_shape_is_named_in_one_line(tmp_path, capsys, interrupt_training):
    import torch

    cfg = RunConfig(loss="ce", epochs=3, **SMALL)
    interrupt_training(cfg, tmp_path, after_epoch=1)
    path = RunFiles.of(cfg, tmp_path).checkpoint(1)
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name][..., :1]  # broadcastable: copy_ alone would accept it
    torch.save(state, path)
    args = ["--train-subset", "1024", "--val-size", "512", "--protocol", "test", "--epochs", "3", "--resume"]
    assert cli_main(RUN + ["--runs-dir", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {path} does not fit" in err and name in err and "Traceback" not in err


def test_deleting_the_lock_folder_under_a_holder_frees_no_run(tmp_path):
    import shutil

    from lossnb.trainer.workspace import run_locks

    cfg = RunConfig(loss="ce", epochs=1, **SMALL)
    with run_locks([RunFiles.of(cfg, tmp_path)]) as held:
        assert held == [True]
        shutil.rmtree(tmp_path / ".locks")  # the holder's flock is now on a file no one else can open
        with run_locks([RunFiles.of(cfg, tmp_path)]) as again:
            assert again == [False]
    with run_locks([RunFiles.of(cfg, tmp_path)]) as after:
        assert after == [True]  # released with its holder


@pytest.mark.slow
def test_a_run_held_by_another_process_is_not_trained_twice(tmp_path, capsys):
    from lossnb.trainer.workspace import BUSY_EXIT, run_locks

    cfg = RunConfig(loss="ce", epochs=1, **SMALL)
    with run_locks([RunFiles.of(cfg, tmp_path)]) as held:
        assert held == [True]
        with pytest.raises(RunBusy, match=r"being trained by another process \(pid \d+\)"):
            train(cfg, runs_dir=tmp_path, progress=False)
        args = ["--train-subset", "1024", "--val-size", "512", "--protocol", "test", "--epochs", "1"]
        assert cli_main(RUN + ["--runs-dir", str(tmp_path)] + args) == BUSY_EXIT
    assert not (tmp_path / cfg.run_path()).exists()
    assert train(cfg, runs_dir=tmp_path, progress=False)["status"] == "complete"  # released by its holder


@pytest.mark.slow
def test_checkpoints_on_another_file_system_than_the_records(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    checkpoints = Path(tempfile.mkdtemp(dir=shm))
    try:
        cfg = RunConfig(loss="ce", epochs=2, **SMALL)
        summary = train(cfg, runs_dir=tmp_path, checkpoint_dir=checkpoints, progress=False, keep_checkpoints=True)
        assert summary["status"] == "complete" and (tmp_path / cfg.run_path() / "summary.json").is_file()
        assert RunFiles.of(cfg, tmp_path, checkpoints).checkpoint_epochs() == {1, 2}
    finally:
        shutil.rmtree(checkpoints)


@pytest.mark.slow
def test_a_config_file_and_flags_give_one_run(tmp_path):
    cfg = RunConfig(loss="focal", epochs=1, loss_params={"gamma": 0.5}, **SMALL)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert cli_main(["train", "--config", str(path), "--seed", "3", "--runs-dir", str(tmp_path / "r"),
                     "--no-progress"]) == 0
    want = RunConfig.from_dict({**cfg.to_dict(), "seed": 3})
    written = json.loads((tmp_path / "r" / want.run_path() / "config.json").read_text())
    assert RunConfig.from_dict(written["run"]) == want


def test_export_command_writes_a_loadable_custom_loss(tmp_path):
    out = tmp_path / "custom_loss.py"
    assert cli_main(["export-loss", "poly1", "--loss-param", "epsilon=2", "-o", str(out)]) == 0
    namespace = {}
    exec(out.read_text(), namespace)
    assert "epsilon=2" in out.read_text() and callable(namespace["compute_loss"])
