"""A benchmark-style custom_loss.py wherever a loss name is accepted: training, grids, results, the gradient
analysis and the contract check; its hash names its runs and its copy stays in their records."""
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import lossnb.losses as L
from lossnb.cli import main as cli_main
from lossnb.gradients import loss_curves
from lossnb.grid import parse_grid
from lossnb.results import load_runs
from lossnb.trainer import RunConfig

from conftest import needs_fmnist


# as the benchmark's users write one: torch only, a module-level compute_loss
CUSTOM = '''"""Cross-entropy written out by hand."""
import torch


def compute_loss(logits, targets, config):
    logp = torch.log_softmax(logits.float(), dim=1)
    return -logp.gather(1, targets[:, None]).mean()


def halved(logits, targets, config):
    return 0.5 * compute_loss(logits, targets, config)
'''


@pytest.fixture
def loss_file(tmp_path):
    path = tmp_path / "losses" / "custom_loss.py"
    path.parent.mkdir()
    path.write_text(CUSTOM)
    return path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_loss_file_is_named_by_its_stem_and_hash_and_computes_its_function(loss_file):
    loss = L.get(str(loss_file))
    assert loss.spec.name == f"custom_loss-{sha(loss_file)[:10]}"
    z, t = torch.randn(16, 7, dtype=torch.float64), torch.randint(0, 7, (16,))
    assert torch.allclose(loss(z, t, L.make_config(7)), torch.nn.functional.cross_entropy(z.float(), t))
    halved = L.get(f"{loss_file}:halved")
    assert halved.spec.name == f"custom_loss-halved-{sha(loss_file)[:10]}"
    assert torch.allclose(halved(z, t, L.make_config(7)), 0.5 * loss(z, t, L.make_config(7)))
    assert L.describe(str(loss_file))["file"] == {"path": str(loss_file), "function": "compute_loss",
                                                  "sha256": sha(loss_file)}


@pytest.mark.slow
@needs_fmnist
def test_lossnb_train_keeps_the_file_and_its_hash_in_the_record(loss_file, tmp_path):
    runs = tmp_path / "runs"
    assert cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", str(loss_file),
                     "--epochs", "1", "--train-subset", "512", "--runs-dir", str(runs), "--no-progress"]) == 0
    run_dir = runs / "bench-e1-n512" / "convnet-fashionmnist" / f"custom_loss-{sha(loss_file)[:10]}" / "seed0"
    assert (run_dir / "loss_file.py").read_bytes() == loss_file.read_bytes()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["loss"]["file"]["sha256"] == sha(loss_file)
    table, _ = load_runs(runs)
    assert list(table["loss_tag"]) == [f"custom_loss-{sha(loss_file)[:10]}"]


@pytest.mark.slow
@needs_fmnist
def test_a_grid_takes_a_loss_file_relative_to_itself(loss_file, tmp_path):
    grid = {"protocol": "files", "budget": {"epochs": 1, "train_subset": 256},
            "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}], "losses": ["ce", "losses/custom_loss.py"],
            "seeds": [0]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    runs = [c.run_path().parts[2] for c in parse_grid(grid, source=str(path)).runs]
    assert runs == ["ce", f"custom_loss-{sha(loss_file)[:10]}"]
    assert cli_main(["grid", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--pack", "1",
                     "--workers", "1"]) == 0
    table, _ = load_runs(tmp_path / "runs")
    assert sorted(table["loss_tag"]) == sorted(runs)


@needs_fmnist
def test_an_edited_file_is_another_run_and_never_trains_under_the_old_name(loss_file):
    cfg = RunConfig(arch="convnet", dataset="fashionmnist", loss=str(loss_file), epochs=1, train_subset=256)
    loss_file.write_text(CUSTOM.replace("mean()", "sum()"))
    assert RunConfig.from_dict(cfg.to_dict()).run_path() != cfg.run_path()
    from lossnb.data import load_dataset
    from lossnb.trainer.state import PackRun

    with pytest.raises(ValueError, match="changed since"):
        PackRun([cfg], load_dataset("fashionmnist", train_subset=256), torch.device("cpu"))


def test_the_gradient_analysis_draws_a_loss_file_beside_the_library(loss_file):
    p = torch.linspace(0.05, 0.95, 9, dtype=torch.float64)
    mine, ce = loss_curves(str(loss_file), 10, p), loss_curves("ce", 10, p)
    assert set(mine["loss"]) == {L.spec(str(loss_file)).name}
    for column in ("value", "grad_target", "grad_other", "weight"):
        assert mine[column].to_numpy() == pytest.approx(ce[column].to_numpy(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("content, spec, message", [
    (None, "missing.py", "loss file 'missing.py' cannot be read"),
    ("import torch\n", "f.py", "defines no function 'compute_loss'; its functions: (none)"),
    ("raise RuntimeError('boom')\n", "f.py", "failed to import: RuntimeError: boom"),
    (CUSTOM, "f.py:no-such", "'no-such' is not a function name"),
])
def test_a_bad_loss_file_is_refused_in_one_line(tmp_path, monkeypatch, capsys, content, spec, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "f.py").write_text(content)
    assert cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_loss_file_takes_no_hyperparameters(loss_file, capsys):
    assert cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", str(loss_file),
                     "--loss-param", "gamma=2"]) == 2
    assert "has no hyperparameter 'gamma'" in capsys.readouterr().err


def test_the_contract_check_passes_a_good_file_and_names_what_a_bad_one_breaks(loss_file, tmp_path, capsys):
    assert cli_main(["losses", "check", str(loss_file)]) == 0
    out = capsys.readouterr().out
    assert "verdict: meets the loss contract" in out and "against F.cross_entropy" in out
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef compute_loss(logits, targets, config):\n"
                   "    return (logits.exp() * config['lr']).sum(dim=1)\n")  # per-sample, overflows, reads 'lr'
    assert cli_main(["losses", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  config keys" in out and "reads 'lr', a key the contract does not give" in out
    assert "verdict: fails: scalar and gradient" in out
    vector = tmp_path / "vector.py"
    vector.write_text("import torch.nn.functional as F\n\ndef compute_loss(logits, targets, config):\n"
                      "    return F.cross_entropy(logits, targets, reduction='none')\n")
    assert cli_main(["losses", "check", str(vector)]) == 1
    assert "not a floating-point scalar tensor" in capsys.readouterr().out


@pytest.mark.parametrize("name", L.available())
def test_every_registry_loss_exported_and_read_back_as_a_file_is_the_same_loss(name, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text(L.export_source(name))
    ours, theirs = L.get(name), L.get(str(path))
    assert theirs.spec.source_file["sha256"] == sha(path)
    for epoch in range(2):
        z = torch.randn(12, 6, generator=torch.Generator().manual_seed(epoch)) * 3
        t = torch.randint(0, 6, (12,), generator=torch.Generator().manual_seed(epoch))
        a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
        la, lb = ours(a, t, L.make_config(6, epoch, 2)), theirs(b, t, L.make_config(6, epoch, 2))
        assert torch.equal(la, lb)
        assert torch.equal(torch.autograd.grad(la, a)[0], torch.autograd.grad(lb, b)[0])


@pytest.mark.slow
def test_the_gradient_chapter_draws_a_loss_file_passed_as_a_parameter(loss_file, tmp_path):
    import papermill

    notebook = Path(__file__).parents[1] / "notebooks" / "gradient_analysis.ipynb"
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(notebook), str(out), cwd=str(notebook.parent), kernel_name="python3",
                               progress_bar=False, parameters={"points": 21, "class_counts": "[10]",
                                                               "loss_files": [str(loss_file)]})
    text = out.read_text()
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"] for c in json.loads(text)["cells"]
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    assert f"custom_loss-{sha(loss_file)[:10]}" in text
    assert glued["class_counts"]["application/papermill.record/text/markdown"] == "10"


MISBEHAVING = {
    "an int": ("return 1", "returned int 1, not a differentiable floating-point scalar"),
    "a detached tensor": ("return F.cross_entropy(logits, targets).detach()", "without a gradient"),
    "an integer tensor": ("return targets.sum()", "torch.int64 tensor of shape ()"),
    "a per-sample vector": ("return F.cross_entropy(logits, targets, reduction='none')",
                            "torch.float32 tensor of shape (128,)"),  # a batch of 128
    "an unknown config key": ("return F.cross_entropy(logits, targets) * config['lr']", "KeyError: 'lr'"),
    "an exit": ("import sys; sys.exit(0)", "SystemExit: 0"),
    "a write into its logits": ("logits.mul_(2); return F.cross_entropy(logits, targets)",
                                "it wrote into the logits or targets it was given"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(MISBEHAVING))
def test_a_loss_file_that_breaks_the_contract_in_the_trainer_ends_in_one_line_and_leaves_nothing(
        tmp_path, capsys, case):
    body, message = MISBEHAVING[case]
    path = tmp_path / "bad_loss.py"
    path.write_text(f"import torch.nn.functional as F\n\n\ndef compute_loss(logits, targets, config):\n"
                    f"    {body}\n")
    runs = tmp_path / "runs"
    code = cli_main(["train", "--arch", "convnet", "--dataset", "fashionmnist", "--loss", str(path), "--epochs", "1",
                     "--train-subset", "512", "--val-size", "256", "--runs-dir", str(runs), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"loss {path} of " in err and "failed at epoch 1, step 1" in err and message in err
    assert not list(runs.rglob("summary.json")) and not list(runs.rglob("*.pt"))
    assert not [p for p in (runs / ".staging").rglob("*") if p.is_file()]
    assert not [p for p in runs.iterdir() if not p.name.startswith(".")]  # no empty folder of the refused run


def test_a_loss_writing_into_its_logits_fails_its_check(tmp_path, capsys):
    path = tmp_path / "inplace_loss.py"
    path.write_text("import torch\nimport torch.nn.functional as F\n\n\ndef compute_loss(logits, targets, config):\n"
                    "    with torch.no_grad():\n"
                    "        logits[torch.arange(len(targets)), targets] += 100.0\n"
                    "    return F.cross_entropy(logits, targets)\n")
    assert cli_main(["losses", "check", str(path)]) != 0
    assert "wrote into its inputs" in capsys.readouterr().out


@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_loss_that_exits_fails_its_check_in_one_line_and_the_verdict_follows(tmp_path, capsys, exit_code):
    path = tmp_path / "exits.py"
    path.write_text(f"import sys\n\n\ndef compute_loss(logits, targets, config):\n    sys.exit({exit_code})\n")
    assert cli_main(["losses", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"FAIL  scalar and gradient +SystemExit\({exit_code}\)", out) and "verdict: fails" in out
    at_import = tmp_path / "exits_at_import.py"
    at_import.write_text("import sys\nsys.exit(0)\n")
    assert cli_main(["losses", "check", str(at_import)]) == 1
    assert "SystemExit(0)" in capsys.readouterr().out


def test_a_loss_that_returns_nan_is_deterministic_and_fails_for_its_value(tmp_path, capsys):
    path = tmp_path / "nan.py"
    path.write_text("import torch\n\n\ndef compute_loss(logits, targets, config):\n"
                    "    return logits.sum() * float('nan')\n")
    assert cli_main(["losses", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "PASS  deterministic" in out and "FAIL  scalar and gradient" in out
