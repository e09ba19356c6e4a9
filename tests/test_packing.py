"""Packed training against an independent reference: K runs trained as one packed model end where each run
trained alone by a plain PyTorch loop ends (torchvision's per-image crop and flip, torch.optim.SGD, torch's
CosineAnnealingLR, the unpacked model).

Compared in float64 (the default dtype, set here): not bitwise, since a grouped or channels_last convolution
sums in another order than a plain one and the SGD update is written p - (lr * d) where torch's foreach path
fuses p + (-lr) * d; and not in float32, where those rounding differences (1e-7) are amplified by dozens of
SGD steps through BatchNorm to percent-level differences in small parameters, which would hide a real error.
In float64 the same amplification leaves them near 1e-9, so a tolerance of 1e-7 separates rounding from bugs.
The learning rate is 0.01: at 0.1 these tiny batches make the first steps chaotic (differences grow tenfold a
step), which no tolerance survives.
"""
import csv
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch._dynamo.utils import counters

from lossnb import losses
from lossnb.data import EpochPlan, load_dataset
from lossnb.losses.registry import LossSpec
from lossnb.models import get_model
from lossnb.trainer import RunConfig, RunFiles, records, train_pack
from lossnb.trainer.pack import Pack
from conftest import HAVE_FMNIST

pytestmark = pytest.mark.skipif(not HAVE_FMNIST,
                                reason="Debian package dataset-fashion-mnist not installed")

SMALL = dict(arch="resnet20", dataset="fashionmnist", epochs=3, batch_size=32, train_subset=320, val_size=256,
             protocol="pack-test", precision="fp32", lr=0.01)
PACK = [RunConfig(loss="ce", seed=1, **SMALL), RunConfig(loss="focal", seed=2, **SMALL),
        RunConfig(loss="online_ls", seed=3, **SMALL)]  # online label smoothing keeps state across batches
TIMING = {"epoch_seconds", "train_images_per_second"}


def reference_run(cfg: RunConfig, data) -> tuple[torch.nn.Module, list[dict]]:
    """One run the textbook way: per-image transforms, torch.optim.SGD, CosineAnnealingLR stepped per epoch."""
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.arch, data.num_classes, data.in_channels)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = losses.get(cfg.loss, **cfg.loss_params)
    mean, std = list(data.mean), list(data.std)
    n, rows = len(data.train_y), []
    for epoch in range(cfg.epochs):
        plan = EpochPlan.draw(cfg.seed, epoch, n, torch.device("cpu"), data.flip)
        config = {"num_classes": 10, "epoch": epoch, "total_epochs": cfg.epochs}
        loss_sum = 0.0
        model.train()
        for start in range(0, n, cfg.batch_size):
            images = []
            for i in range(start, min(start + cfg.batch_size, n)):
                img = TF.crop(TF.pad(data.train_x[plan.order[i]], [4]), int(plan.dy[i]), int(plan.dx[i]), 32, 32)
                img = TF.horizontal_flip(img) if plan.flip[i] else img
                images.append(TF.normalize(TF.to_dtype(img, torch.float64, scale=True), mean, std))
            y = data.train_y[plan.order[start:start + cfg.batch_size]]
            loss = loss_fn(model(torch.stack(images)), y, config)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
        sched.step()
        model.eval()
        with torch.no_grad():
            x = TF.normalize(TF.to_dtype(data.test_x, torch.float64, scale=True), mean, std)
            out = model(x)
            acc = (out.argmax(1) == data.test_y).float().mean().item()
        rows.append({"train_loss": loss_sum / n, "test_acc": acc, "test_loss": F.cross_entropy(out, data.test_y).item()})
    return model, rows


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()).clamp_min(1e-12)).item()


def last_state(cfg, runs_dir):
    files = RunFiles.of(cfg, runs_dir)
    return records.load_checkpoint(files.checkpoint(max(files.checkpoint_epochs())))


@pytest.fixture(scope="module", autouse=True)
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.fixture(scope="module")
def data():
    return load_dataset("fashionmnist", train_subset=320, val_size=256)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, data):
    runs = tmp_path_factory.mktemp("packed")
    train_pack(PACK, runs_dir=runs, progress=False, keep_checkpoints=True, data=data)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("k", range(len(PACK)))
def test_each_member_of_a_pack_ends_as_its_run_trained_alone(packed, data, k):
    cfg = PACK[k]
    model, ref_rows = reference_run(cfg, data)
    state = last_state(cfg, packed)
    for name, want in model.state_dict().items():
        got = state["model"][name]
        if want.is_floating_point():
            assert relative_error(got, want) < 1e-7, name
        else:
            assert torch.equal(got, want), name  # num_batches_tracked
    rows = state["rows"]
    # the epoch's training loss is summed on the device in float32
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in ref_rows], rel=1e-6)
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in ref_rows]
    config = records.read_summary(packed / cfg.run_path())
    assert config["status"] == "complete" and config["epochs_completed"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("arch, compiled, channels_last, k, first_conv", [
    ("convnet", False, "on", 2, "grouped"), ("convnet_bn", False, "on", 2, "grouped"),
    ("convnet_bn", False, "off", 2, "grouped"), ("convnet_bn", False, "off", 1, "grouped"),
    ("convnet_bn", True, "on", 2, "grouped"), ("convnet_bn", False, "on", 2, "block_diagonal"),
    ("convnet_bn", False, "off", 2, "block_diagonal")])
def test_a_pack_on_gray_images_repeated_to_three_channels_ends_as_its_runs_alone(tmp_path, arch, compiled,
                                                                                  channels_last, k, first_conv):
    """resize-rgb images are three copies of one channel, which the trainer crops as one: the reference crops
    all three, per image. The summary's accuracy on the un-augmented training images is the reference model's.
    In either memory format, alone or packed, with the first convolution grouped or dense block-diagonal;
    compiled (torch.compile's fused kernels for the pack), the members still end as their eager solo runs."""
    rgb = load_dataset("fashionmnist", train_subset=320, val_size=256, prep="resize-rgb")
    assert rgb.train_x.shape[1] == 3
    cfgs = [RunConfig(loss=loss, seed=seed, compile=compiled, channels_last=channels_last, first_conv=first_conv,
                      **{**SMALL, "arch": arch, "image_prep": "resize-rgb"})
            for loss, seed in (("ce", 5), ("poly1", 6))][:k]
    counters.clear()
    train_pack(cfgs, runs_dir=tmp_path, progress=False, keep_checkpoints=True, data=rgb)
    resolved = json.loads((tmp_path / cfgs[0].run_path() / "config.json").read_text())["resolved"]
    assert resolved["first_conv"] == (first_conv if k > 1 else "grouped")  # a solo run has one group
    # compiled, the pack ran as graphs of inductor's kernels, not eagerly after a failed compile
    assert (counters["stats"]["unique_graphs"] > 0) == compiled
    for cfg in cfgs:
        model, ref_rows = reference_run(cfg, rgb)
        state = last_state(cfg, tmp_path)
        for name, want in model.state_dict().items():
            if want.is_floating_point():
                assert relative_error(state["model"][name], want) < 1e-7, name
        assert [r["test_acc"] for r in state["rows"]] == [r["test_acc"] for r in ref_rows]
        model.eval()
        with torch.no_grad():
            x = TF.normalize(TF.to_dtype(rgb.train_x, torch.float64, scale=True), list(rgb.mean), list(rgb.std))
            fit = (model(x).argmax(1) == rgb.train_y).double().mean().item()
        assert records.read_summary(tmp_path / cfg.run_path())["train_eval_acc"] == pytest.approx(fit, abs=1e-6)  # float32 mean; one image is 3e-3


@pytest.mark.slow
def test_a_pack_records_each_run_in_the_solo_format_with_its_packing(packed):
    for k, cfg in enumerate(PACK):
        run_dir = packed / cfg.run_path()
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.csv", "summary.json"]
        config = json.loads((run_dir / "config.json").read_text())
        assert RunConfig.from_dict(config["run"]) == cfg
        assert config["packing"]["pack_size"] == 3 and config["packing"]["member"] == k
        assert config["packing"]["pack"] == [str(c.run_path()) for c in PACK]


@pytest.mark.slow
def test_packing_a_model_computes_each_members_function():
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(get_model("mobilenetv2", 10, 3).eval())
    pack = Pack(models).eval()
    x = torch.randn(3, 5, 3, 32, 32)
    with torch.no_grad():
        out = pack(x.transpose(0, 1).reshape(5, 9, 32, 32))
        for k, model in enumerate(models):
            assert relative_error(out[k], model(x[k])) < 1e-5
            solo = get_model("mobilenetv2", 10, 3).eval()
            solo.load_state_dict(pack.member_state(k))
            assert relative_error(solo(x[k]), model(x[k])) < 1e-6


def _nan_from_epoch_one(logits, targets, config):
    return F.cross_entropy(logits, targets) + (float("nan") if config["epoch"] >= 1 else 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("first_conv", ["grouped", "block_diagonal"])
def test_a_diverging_member_is_frozen_and_the_others_end_as_alone(tmp_path, data, monkeypatch, first_conv):
    """A member's NaN reaches none of its pack-mates, whether the first convolution is grouped or one dense
    convolution whose weight holds every member's kernels."""
    spec = LossSpec("nan_at_1", _nan_from_epoch_one, {}, "test", "", "non-finite from epoch 1 on")
    monkeypatch.setitem(losses.registry._REGISTRY, "nan_at_1", spec)
    short = {**SMALL, "epochs": 2, "first_conv": first_conv}
    pack = [RunConfig(loss="ce", seed=1, **short), RunConfig(loss="nan_at_1", seed=4, **short),
            RunConfig(loss="focal", seed=2, **short)]
    small = load_dataset("fashionmnist", train_subset=96, val_size=256)
    summaries = train_pack(pack, runs_dir=tmp_path / "pack", progress=False, keep_checkpoints=True, data=small)
    assert summaries[1]["status"] == "diverged" and summaries[1]["diverged_at"] == {"epoch": 1, "step": 0}
    assert summaries[1]["epochs_completed"] == 1
    sick_dir = tmp_path / "pack" / pack[1].run_path()
    assert sorted(p.name for p in sick_dir.iterdir()) == ["config.json", "metrics.csv", "summary.json"]
    for cfg, summary in ((pack[0], summaries[0]), (pack[2], summaries[2])):
        alone = train_pack([cfg], runs_dir=tmp_path / "alone", progress=False, keep_checkpoints=True, data=small)[0]
        assert summary["status"] == "complete"
        for key in ("best_test_acc", "final_test_acc"):
            assert summary[key] == alone[key]
        assert summary["final_test_loss"] == pytest.approx(alone["final_test_loss"], rel=1e-6)


@pytest.mark.slow
def test_a_run_diverging_at_its_first_step_publishes_a_whole_record(tmp_path, data):
    cfg = RunConfig(loss="ce", **{**SMALL, "arch": "convnet", "lr": 1e30})
    summary = train_pack([cfg], runs_dir=tmp_path, progress=False, keep_checkpoints=True, data=data)[0]
    assert summary["status"] == "diverged" and summary["diverged_at"]["epoch"] == 0
    run_dir = tmp_path / cfg.run_path()
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.csv", "summary.json"]
    assert (run_dir / "metrics.csv").read_text().startswith("epoch,lr,")
    from lossnb.results import load_runs

    runs, _ = load_runs(tmp_path)
    assert list(runs["status"]) == ["diverged"]


@pytest.mark.slow
def test_a_pack_killed_while_writing_checkpoints_resumes_to_the_uninterrupted_records(tmp_path, data, monkeypatch):
    cfgs = [RunConfig(loss=loss, seed=seed, **{**SMALL, "arch": "convnet"})
            for loss, seed in (("ce", 0), ("online_ls", 1), ("poly1", 2))]
    train_pack(cfgs, runs_dir=tmp_path / "a", progress=False, keep_checkpoints=True, data=data)

    saved = records.atomic_torch_save

    class Killed(Exception):
        pass

    def save_then_die(obj, path):  # dies after the first member's checkpoint of epoch 2: the others lack it
        saved(obj, path)
        if obj["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(records, "atomic_torch_save", save_then_die)
    with pytest.raises(Killed):
        train_pack(cfgs, runs_dir=tmp_path / "b", progress=False, keep_checkpoints=True, data=data)
    monkeypatch.setattr(records, "atomic_torch_save", saved)
    assert not any((tmp_path / "b" / c.run_path()).exists() for c in cfgs)
    train_pack(cfgs, runs_dir=tmp_path / "b", progress=False, keep_checkpoints=True, data=data, resume=True)
    for cfg in cfgs:
        a, b = read_rows(tmp_path / "a" / cfg.run_path()), read_rows(tmp_path / "b" / cfg.run_path())
        assert a == b and len(a) == 3


def test_the_last_partial_batch_is_trained(data):
    """60000 % 128 = 96 in the benchmark's task: the last, smaller batch is a step of its own, every image of
    the epoch is seen once (a batch of 1 is the one left out: BatchNorm needs 2)."""
    from lossnb.trainer.state import PackRun

    cfg = RunConfig(loss="ce", seed=0, **{**SMALL, "arch": "convnet", "epochs": 1})
    for n, expected in ((100, [32, 32, 32, 4]), (97, [32, 32, 32])):
        subset = load_dataset("fashionmnist", train_subset=n, val_size=256)
        run = PackRun([cfg, RunConfig(loss="focal", seed=1, **{**SMALL, "arch": "convnet", "epochs": 1})], subset,
                      torch.device("cpu"))
        assert run.batches() == expected
        run.train_epoch(0, progress=False)
        assert int(run.step_index) == len(expected) and int(run.cursor) == sum(expected)
        # each image once, per run: the image a crop's first element lies in, mirrored or not
        crops = run.train_crops
        seen = (run.offsets[:sum(expected)].t() % crops.s_flip) // crops.s_image
        assert all(len(set(row.tolist())) == sum(expected) for row in seen)
