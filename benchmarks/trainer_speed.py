"""Training images/s of lossnb's trainer vs a reference loop written the usual way, same model and batch, one run.

    python benchmarks/trainer_speed.py [--device cuda] [--images N] [--workers 0 2]

Reference: torchvision's FashionMNIST dataset + DataLoader + per-image transforms
(Pad, RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize) + fp32 eager;
the fastest of several num_workers is taken, to be fair to it (0 and 2 on CPU, 0, 4
and 8 on CUDA). Ours: the trainer's epoch loop (uint8 tensors on the device, batched
augmentation, its default precision and memory format for this device), eager and,
on CUDA, also with torch.compile; the faster counts and both are recorded. Each measurement runs in its own process so its
peak memory is its own. Targets: >= 2x on ResNet-20, >= 3x on the ConvNet.

Ceiling: the model step alone (forward, backward, SGD step on one batch already on the
device, no data pipeline at all), in fp32 and in bf16 autocast, channels_last. No
trainer can beat it, so ceiling / reference bounds the speedup this machine allows.
"""
import argparse
import gzip
import json
import multiprocessing as mp
import pathlib
import resource
import shutil
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from machine import describe_machine  # noqa: E402

FMNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
TARGETS = {"resnet20": 2.0, "convnet": 3.0}


def _peak_memory_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reference(arch, device, images, workers):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from lossnb.models import get_model

    root = pathlib.Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FMNIST.glob("*.gz"):  # torchvision's reader wants the files uncompressed in its own layout
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    tf = transforms.Compose([transforms.Pad(2), transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize((0.219,), (0.332,))])
    loader = DataLoader(datasets.FashionMNIST(str(root), train=True, transform=tf), batch_size=128, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    model = get_model(arch, 10, in_channels=1).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    seen, started, it = 0, None, iter(loader)
    for step in range(images // 128 + 2):
        if step == 2:  # two warm-up steps
            _sync(device)
            started, seen = time.perf_counter(), 0
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    _sync(device)
    rate = seen / (time.perf_counter() - started)
    shutil.rmtree(root)
    return rate


def _ours(arch, device, images, compile=False):
    from lossnb.data import load_dataset
    from lossnb.trainer import RunConfig
    from lossnb.trainer.loop import _Run

    cfg = RunConfig(arch=arch, dataset="fashionmnist", loss="ce", epochs=2, device=device, compile=compile)
    data = load_dataset("fashionmnist")
    warm = 2 * 128
    data.train_x, data.train_y = data.train_x[:images + warm], data.train_y[:images + warm]
    run = _Run(cfg, data, torch.device(device))
    run.train_x, run.train_y = run.train_x[:warm], run.train_y[:warm]
    run.train_epoch(0, progress=False)  # warm-up
    run.train_x, run.train_y = data.train_x[warm:].to(device), data.train_y[warm:].to(device)
    _sync(device)
    started = time.perf_counter()
    run.train_epoch(1, progress=False)
    _sync(device)
    return images / (time.perf_counter() - started), {"precision": run.precision, "channels_last": run.channels_last,
                                                     "compile": compile}


def _ceiling(arch, device, images, precision):
    from lossnb.models import get_model

    model = get_model(arch, 10, in_channels=1).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(128, 1, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), device=device)
    steps = images // 128
    for step in range(steps + 2):
        if step == 2:
            _sync(device)
            started = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return steps * 128 / (time.perf_counter() - started)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measure(kind, arch, device, images, workers, queue):
    torch.manual_seed(0)
    if kind == "reference":
        rate, extra = _reference(arch, device, images, workers), {"num_workers": workers, "precision": "fp32"}
    elif kind.startswith("ceiling-"):
        precision = kind.split("-")[1]
        rate, extra = _ceiling(arch, device, images, precision), {"precision": precision, "channels_last": True}
    else:
        rate, extra = _ours(arch, device, images, compile=kind == "ours-compiled")
    queue.put({"images_per_second": rate, "peak_memory_mb": _peak_memory_mb(device), **extra})


def measure(kind, arch, device, images, workers=0):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, arch, device, images, workers, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=None,
                        help="training images timed per measurement (ResNet-20; 8x that for the ConvNet); "
                             "default 2560 on CPU, 12800 on CUDA")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader workers tried for the reference (the fastest counts); "
                             "default 0 2 on CPU, 0 4 8 on CUDA")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    images = args.images or (12800 if cuda else 2560)
    workers = args.workers or ([0, 4, 8] if cuda else [0, 2])
    out = pathlib.Path(args.out or f"benchmarks/results/trainer_speed_{args.device.split(':')[0]}.json")
    rows = []
    # the ConvNet steps are so short that it needs more images; 51,200 keeps within one pass of the 60,000
    for arch, n in (("resnet20", images), ("convnet", min(images * 8, 51200))):
        refs = [measure("reference", arch, args.device, n, w) for w in workers]
        ref = max(refs, key=lambda r: r["images_per_second"])
        variants = [measure(kind, arch, args.device, n) for kind in ("ours", "ours-compiled")[:1 + cuda]]
        ours = max(variants, key=lambda r: r["images_per_second"])
        ceilings = {p: measure(f"ceiling-{p}", arch, args.device, n) for p in ("fp32", "bf16")}
        ratio = ours["images_per_second"] / ref["images_per_second"]
        best_ceiling = max(c["images_per_second"] for c in ceilings.values())
        rows.append({"arch": arch, "images_timed": n, "batch_size": 128, "reference": ref,
                     "reference_all_workers": refs, "lossnb": ours, "lossnb_all_variants": variants,
                     "speedup": ratio, "target": TARGETS[arch],
                     "meets_target": ratio >= TARGETS[arch], "model_step_ceiling": ceilings,
                     "max_possible_speedup": best_ceiling / ref["images_per_second"]})
        print(f"{arch:<9} reference {ref['images_per_second']:8.0f} img/s ({ref['peak_memory_mb']:.0f} MB)   "
              f"lossnb {ours['images_per_second']:8.0f} img/s ({ours['peak_memory_mb']:.0f} MB)   "
              f"{ratio:.2f}x (target {TARGETS[arch]}x; model-step ceiling "
              f"{best_ceiling / ref['images_per_second']:.2f}x)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "machine": describe_machine(args.device),
                               "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
