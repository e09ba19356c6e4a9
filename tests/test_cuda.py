"""The CUDA paths of the engine: CUDA graphs, packs, bf16 autocast + channels_last, resume, torch.compile.

Skipped where there is no GPU (CI); run on a GPU machine with `pytest tests/test_cuda.py`.
"""
import csv
import json
from pathlib import Path

import pytest
import torch

from lossnb.data import load_dataset
from lossnb.models import get_model
from lossnb.trainer import RunConfig, train, train_pack
from lossnb.trainer.state import PackRun
from conftest import HAVE_FMNIST

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not (HAVE_FMNIST
                            or Path(__file__).parents[1].joinpath("data", "fashion-mnist").is_dir()),
                       reason="FashionMNIST not found (Debian package or data/fashion-mnist/)"),
]

ROOT = Path(__file__).parents[1] / "data"
SMALL = dict(dataset="fashionmnist", train_subset=2048, val_size=1024, protocol="test", device="cuda")
TIMING = {"epoch_seconds", "train_images_per_second"}


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


@pytest.fixture
def exact(monkeypatch):
    """Deterministic cuDNN without TF32: two runs of the same kernels give the same numbers."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.parametrize("head,losses", [("linear", ("ce", "focal", "poly1")),
                                         ("cosine", ("arcface", "cosface", "sphereface"))])
def test_graphed_steps_equal_eager_steps(exact, head, losses):
    """Two epochs (with a partial last batch) replayed from CUDA graphs give what the same steps give eagerly:
    parameters, momentum, BN statistics and the epoch's metrics, for a pack of three different losses (on a
    cosine head, the angular-margin family)."""
    data = load_dataset("fashionmnist", ROOT, train_subset=1000, val_size=500, prep="resize-rgb")
    results = []
    for graphs in ("on", "off"):
        cfgs = [RunConfig(arch="resnet20", loss=loss, seed=seed, epochs=2, precision="fp32", cuda_graphs=graphs,
                          head=head, image_prep="resize-rgb", **{**SMALL, "train_subset": 1000, "val_size": 500})
                for seed, loss in enumerate(losses)]
        run = PackRun(cfgs, data, torch.device("cuda"))
        assert (run.graphs is not None) == (graphs == "on")
        metrics = [run.train_epoch(e, progress=False) for e in range(2)]
        results.append((metrics, [t.detach().clone() for t in run.pack.state_dict().values()],
                        [b.clone() for b in run.sgd.buffers], run.test_logits().clone()))
        if graphs == "on":  # the evaluation graph replays the eager evaluation of the same weights
            assert torch.allclose(run.test_logits(), run.eager_test_logits(), rtol=1e-5, atol=1e-5)
    (m_graph, s_graph, b_graph, l_graph), (m_eager, s_eager, b_eager, l_eager) = results
    assert torch.allclose(l_graph, l_eager, rtol=1e-4, atol=1e-4)
    for a, b in zip(s_graph + b_graph, s_eager + b_eager):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6)
    for ra, rb in zip(sum(m_graph, []), sum(m_eager, [])):
        assert ra == pytest.approx(rb, rel=1e-5)


def test_warm_up_leaves_no_trace(exact):
    """The warm-up before the first capture runs real steps; afterwards parameters, BN statistics and momentum
    are as before it."""
    data = load_dataset("fashionmnist", ROOT, train_subset=512, val_size=256)
    cfg = RunConfig(arch="resnet20", loss="ce", epochs=1, precision="fp32", **SMALL)
    run = PackRun([cfg], data, torch.device("cuda"))
    before = [t.detach().clone() for t in run.pack.state_dict().values()]
    rng = torch.cuda.get_rng_state()
    config = {"num_classes": 10, "epoch": 0, "total_epochs": 1}
    run.graphs._warm_up(run.batches(), config)
    after = list(run.pack.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(int(b.count_nonzero()) == 0 for b in run.sgd.buffers)
    assert torch.equal(torch.cuda.get_rng_state(), rng)  # dropout's generator too


def test_a_graphed_run_with_dropout_resumes_to_the_uninterrupted_records(tmp_path, exact, interrupt_training):
    """VGG-11-BN draws dropout masks on the GPU; the resumed process warms its graphs up at epoch 2, the
    uninterrupted one at epoch 1, and both draw the same masks, so the records agree."""
    cfg = RunConfig(arch="vgg11_bn", loss="ce", epochs=3, seed=5, precision="fp32", image_prep="resize-rgb",
                    **{**SMALL, "train_subset": 1000})
    train(cfg, runs_dir=tmp_path / "a", data_root=ROOT, progress=False)
    interrupt_training(cfg, tmp_path / "b", after_epoch=1)
    resumed = train(cfg, runs_dir=tmp_path / "b", data_root=ROOT, progress=False, resume=True)
    assert resumed["status"] == "complete"
    a, b = read_rows(tmp_path / "a" / cfg.run_path()), read_rows(tmp_path / "b" / cfg.run_path())
    for row_a, row_b in zip(a, b):
        assert row_b == pytest.approx(row_a, rel=1e-5, abs=1e-6)


def test_a_packed_graphed_bf16_run_leaves_complete_records(tmp_path):
    cfgs = [RunConfig(arch="mobilenetv2", loss=loss, seed=seed, epochs=2, image_prep="resize-rgb",
                      **{**SMALL, "train_subset": 4096})
            for loss, seed in (("ce", 42), ("label_smoothing", 123), ("complement_ls", 456))]
    summaries = train_pack(cfgs, runs_dir=tmp_path, data_root=ROOT, progress=False)
    for k, (cfg, summary) in enumerate(zip(cfgs, summaries)):
        run_dir = tmp_path / cfg.run_path()
        config = json.loads((run_dir / "config.json").read_text())
        assert config["resolved"] == {"precision": "bf16", "channels_last": True, "first_conv": "grouped",
                                      "cuda_graphs": True}
        assert config["packing"]["pack_size"] == 3 and config["packing"]["member"] == k
        assert config["environment"]["device_name"] == torch.cuda.get_device_name()
        assert summary["status"] == "complete" and summary["best_test_acc"] > 0.3  # chance is 0.1
        assert len(read_rows(run_dir)) == 2


def test_resume_on_cuda_continues_the_interrupted_run(tmp_path, exact, interrupt_training):
    """A checkpoint written on the GPU loads (to the CPU) and continues the run; a stateful loss runs eagerly."""
    cfg = RunConfig(arch="convnet", loss="online_ls", epochs=3, seed=3, precision="fp32", **SMALL)
    train(cfg, runs_dir=tmp_path / "a", data_root=ROOT, progress=False)

    interrupt_training(cfg, tmp_path / "b", after_epoch=2)
    resumed = train(cfg, runs_dir=tmp_path / "b", data_root=ROOT, progress=False, resume=True)

    assert resumed["status"] == "complete" and resumed["epochs_completed"] == 3
    a, b = read_rows(tmp_path / "a" / cfg.run_path()), read_rows(tmp_path / "b" / cfg.run_path())
    for row_a, row_b in zip(a, b):
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
    summary = train(cfg, runs_dir=tmp_path, data_root=ROOT, progress=False)
    assert summary["status"] == "complete" and summary["best_test_acc"] > 0.3
