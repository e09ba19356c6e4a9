"""The CUDA paths of the engine: bf16 autocast + channels_last, resume, torch.compile.

Skipped where there is no GPU (CI); run on a GPU machine with `pytest tests/test_cuda.py`.
"""
import csv
import json
from pathlib import Path

import pytest
import torch

from lossnb.models import get_model
from lossnb.trainer import RunConfig, train

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                       reason="Debian package dataset-fashion-mnist not installed"),
]

SMALL = dict(dataset="fashionmnist", train_subset=2048, val_size=1024, protocol="test", device="cuda")
TIMING = {"epoch_seconds", "train_images_per_second"}


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def test_bf16_channels_last_resnet_run_writes_a_complete_record(tmp_path):
    cfg = RunConfig(arch="resnet20", loss="focal", epochs=3, **{**SMALL, "train_subset": 8192})
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    config = json.loads((tmp_path / cfg.run_path() / "config.json").read_text())
    assert config["resolved"] == {"precision": "bf16", "channels_last": True}
    assert config["environment"]["device"].startswith("cuda")
    assert config["environment"]["device_name"] == torch.cuda.get_device_name()
    assert summary["status"] == "complete" and summary["best_test_acc"] > 0.3  # chance is 0.1


def test_resume_on_cuda_continues_the_interrupted_run(tmp_path, monkeypatch, interrupt_training):
    """A checkpoint written on the GPU must load (its RNG states as CPU tensors) and continue the run.
    cuDNN is made deterministic so that the two runs can be compared; TF32 is off for the same reason."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cfg = RunConfig(arch="convnet", loss="online_ls", epochs=3, seed=3, precision="fp32", **SMALL)
    train(cfg, runs_dir=tmp_path / "a", progress=False)

    interrupt_training(cfg, tmp_path / "b", after_epoch=2)
    resumed = train(cfg, runs_dir=tmp_path / "b", progress=False, resume=True)

    assert resumed["status"] == "complete" and resumed["epochs_completed"] == 3
    a, b = read_rows(tmp_path / "a" / cfg.run_path()), read_rows(tmp_path / "b" / cfg.run_path())
    assert [row.keys() for row in a] == [row.keys() for row in b]
    for row_a, row_b in zip(a, b):  # GPU reductions may reorder: equal to float tolerance
        assert row_b == pytest.approx(row_a, rel=1e-4, abs=1e-6)


def test_compiled_model_computes_the_eager_models_function(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = get_model("resnet20", 10, in_channels=1).cuda().eval()
    x = torch.randn(64, 1, 32, 32, device="cuda")
    with torch.no_grad():
        eager, compiled = model(x), torch.compile(model)(x)
    assert torch.linalg.norm(compiled - eager) / torch.linalg.norm(eager) < 1e-4


def test_a_compiled_run_completes(tmp_path):
    cfg = RunConfig(arch="convnet", loss="poly1", epochs=2, compile=True, **SMALL)
    summary = train(cfg, runs_dir=tmp_path, progress=False)
    assert summary["status"] == "complete" and summary["best_test_acc"] > 0.3
