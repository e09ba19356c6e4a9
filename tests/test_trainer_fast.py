"""The trainer against a plain PyTorch loop in seconds, on a few dozen real images: what the fast subset (run beside
a long grid) must catch. A schedule one epoch late, weight decay applied twice, an augmentation reaching the test
images, a pack member trained with its neighbour's loss, momentum or the data order not restored on resume: each
moves a weight or an evaluation away from the reference."""
import pytest
import torch

from conftest import HAVE_FMNIST
from lossnb.data import load_dataset
from lossnb.trainer import RunConfig, records, train, train_pack
# float64 as the packing tests (autouse there and here): rounding stays near 1e-9, so 1e-7 separates it from a bug
from test_packing import float64, last_state, reference_run, relative_error  # noqa: F401

pytestmark = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")

TINY = dict(arch="convnet", dataset="fashionmnist", epochs=2, batch_size=16, train_subset=64, val_size=64,
            protocol="fast", precision="fp32", channels_last="off", first_conv="grouped",
            lr=0.01)  # pinned: nothing to probe


@pytest.fixture(scope="module")
def data():
    return load_dataset("fashionmnist", train_subset=64, val_size=64)


def assert_as_reference(cfg, data, state):
    model, rows = reference_run(cfg, data)
    for name, want in model.state_dict().items():
        if want.is_floating_point():
            assert relative_error(state["model"][name], want) < 1e-7, name
    assert [r["test_acc"] for r in state["rows"]] == [r["test_acc"] for r in rows]
    assert [r["test_loss"] for r in state["rows"]] == pytest.approx([r["test_loss"] for r in rows], rel=1e-7)
    assert [r["train_loss"] for r in state["rows"]] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)


def test_each_member_of_a_tiny_pack_ends_as_a_plain_loop_with_its_own_loss(tmp_path, data):
    cfgs = [RunConfig(loss="ce", seed=1, **TINY), RunConfig(loss="focal", seed=2, **TINY)]
    train_pack(cfgs, runs_dir=tmp_path, progress=False, keep_checkpoints=True, data=data)
    for cfg in cfgs:
        assert_as_reference(cfg, data, last_state(cfg, tmp_path))


def test_a_resumed_run_ends_as_the_plain_loop(tmp_path, data, interrupt_training):
    cfg = RunConfig(loss="ce", seed=3, **TINY)
    interrupt_training(cfg, tmp_path, after_epoch=1)
    train(cfg, runs_dir=tmp_path, progress=False, keep_checkpoints=True, resume=True, data=data)
    assert records.read_summary(tmp_path / cfg.run_path())["epochs_completed"] == 2
    assert_as_reference(cfg, data, last_state(cfg, tmp_path))


@pytest.mark.slow
def test_a_network_with_dropout_resumes_exactly_on_the_cpu(tmp_path, interrupt_training):
    """VGG-11-BN's dropout masks come from the global RNG, reseeded each epoch: a resume must reseed it as an
    uninterrupted run does (compared with that run, not with a plain loop, whose masks are drawn otherwise)."""
    small = load_dataset("fashionmnist", train_subset=192, val_size=64)
    cfg = RunConfig(loss="ce", seed=4, **{**TINY, "arch": "vgg11_bn", "epochs": 3, "train_subset": 192})
    train(cfg, runs_dir=tmp_path / "a", progress=False, keep_checkpoints=True, data=small)
    interrupt_training(cfg, tmp_path / "b", after_epoch=2, data=small)
    train(cfg, runs_dir=tmp_path / "b", progress=False, keep_checkpoints=True, resume=True, data=small)
    want, got = last_state(cfg, tmp_path / "a"), last_state(cfg, tmp_path / "b")
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    assert got["rows"] == [dict(r, epoch_seconds=g["epoch_seconds"], train_images_per_second=g[
        "train_images_per_second"]) for r, g in zip(want["rows"], got["rows"])]
