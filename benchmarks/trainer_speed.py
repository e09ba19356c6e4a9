"""Training images/s: lossnb packing K runs into one model, beside solo lossnb and a reference loop written the
usual way, on the benchmark's FashionMNIST task (28x28 resized to 32x32, 3 channels), batch 128 per run, in one run.

    python benchmarks/trainer_speed.py [--device cuda] [--packs 1 4 12 24] [--archs resnet20 mobilenetv2]

Reference: torchvision's FashionMNIST dataset + DataLoader + per-image transforms (Resize(32), Grayscale(3),
RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize) + fp32 eager, one run; the fastest of several
num_workers counts. lossnb: K runs (cross-entropy, seeds 0..K-1) in one pack, its default precision, memory
format and (on CUDA) CUDA graphs, timed over an epoch of a fixed number of steps after a warm-up epoch
(including that epoch's graph capture), and one evaluation on the 10,000 test images timed apart. The figure
is a real epoch's: aggregate images/s = K x 60,000 / (60,000 images at the timed training rate + one
evaluation), as a run pays both every epoch. On CUDA, each K also runs without CUDA graphs
(eager) for K in {1, 12}: the ratio says how much of the time launches took.

On a CPU the same run first compares lossnb with the model's own step, per task (the ConvNet on 1- and 3-channel
images, ResNet-20): the bare step (forward, cross-entropy, backward, torch.optim.SGD on one fixed batch) in each
precision and memory format, the one `auto` takes (the fastest where bf16 agrees with fp32), and lossnb's training
epoch in that setting as a share of it (`vs_model_step`; `epoch_vs_model_step` counts the evaluation too). The ratio
divides by a window of the bare step (120 steps after 10 warm-up steps) timed in the same process after each of
lossnb's epochs, in ROUNDS_BESIDE rounds: the best of each, and each round's own ratio with their median (this
shared machine's speed drifts by a third over minutes, so figures taken apart do not divide). Each bare-step reading
of the probe (10 warm-up steps, best of 3 windows of 100 steps) is recorded beside this benchmark's own reading of
the auto setting, with what bounds the bare step (its arithmetic against this CPU's matmul rate in the step's
precision) and the share of lossnb's epoch its evaluation takes. Then, for the networks the grid packs on a CPU
(convnet_bn), the arrangement the grid measures (from lossnb's own packed training step) and takes (runs per
pack x packs at a time), in fp32 channels-last as the full-length studies pin them and in the setting `auto` takes
for each pack size (each with the form of the first convolution the probe measured fastest for it), lossnb's real epochs in it against the best steady-state solo bare step on all cores (the two
in alternating rounds, the best of each; the packs' training alone beside their epochs, which count the evaluation
too), the bare packed step's own ratio in the same arrangement (the ceiling lossnb's loop works under), the probe's
reading the choice was made on, and what bounds the figure; then the same for runs under
torch.compile (`compile: true`, an execution setting: inductor's fused kernels sum in another order, as a memory
format does), whose arrangement the grid measures compiled. The CPU's instruction-set flags are recorded beside the
figures.

Limits measured in the same run (CUDA): device-to-device copy bandwidth and a bf16 8192^3 matmul rate; with
the FLOPs of one training image (forward + backward, counted by torch.utils.flop_counter), each figure's
achieved TFLOP/s and its share of the matmul rate say what bounds it: compute where the share is large
(>= 25%), else memory traffic or launches (told apart by the eager/graphed ratio). Each measurement runs in
its own process, so its peak memory is its own.
"""
import argparse
import json
import multiprocessing as mp
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from machine import describe_machine  # noqa: E402

STEPS = 60  # training steps per run in the timed epoch
REPEATS = 3  # each figure is the fastest of this many timings (lossnb's epochs, the bare step's seconds)
# (arch, image_prep, input channels) of the CPU's model-step comparison: the report's ConvNet on 1-channel padded
# images (its shortened protocols) and on the benchmark's 3-channel task, and ResNet-20 on the benchmark's task
CPU_TASKS = (("convnet", "pad", 1), ("convnet", "resize-rgb", 3), ("convnet_bn", "resize-rgb", 3),
             ("resnet20", "resize-rgb", 3))
# networks whose CPU arrangement (runs per pack x packs at a time) the grid measures and this benchmark checks
ARRANGED = (("convnet_bn", "resize-rgb", 3),)
# how the grid's packs are timed: (compiled, precision, channels_last). eager and compiled: fp32 channels-last, as
# the full-length studies pin them; auto: eager in the precision and memory format the trainer takes for each pack
# size by default (bf16 where it agrees with fp32 and steps faster), as the solo bare step it is compared with is
# the fastest setting of all
PACK_MODES = {"eager": (False, "fp32", "on"), "compiled": (True, "fp32", "on"), "auto": (False, "auto", "auto")}
STEADY_STEPS = 120  # the reference reading of a bare step: 10 warm-up steps, then the best of 3 windows of this many
# rounds of (lossnb's epoch, a bare window) in the model-step comparison: on this shared machine one round's ratio
# moves by a fifth, so the median of several is the figure to read beside the best of each
ROUNDS_BESIDE = 7


def _cpu_flags():
    """The instruction-set flags that decide which precision and layout are fast."""
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
COMPUTE_SHARE = 0.25


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fmnist_root():
    from lossnb.data.readers import idx_folders

    for folder in idx_folders(pathlib.Path("data"), "fashionmnist"):
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    raise SystemExit("FashionMNIST idx files not found (data/fashion-mnist/ or the Debian package)")


def _reference(arch, device, images, workers):
    import gzip

    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from lossnb.models import get_model

    root = pathlib.Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in _fmnist_root().glob("*.gz"):  # torchvision's reader wants the files uncompressed in its own layout
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    tf = transforms.Compose([transforms.Resize(32), transforms.Grayscale(3), transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize((0.286,) * 3, (0.353,) * 3)])
    loader = DataLoader(datasets.FashionMNIST(str(root), train=True, transform=tf), batch_size=128, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    model = get_model(arch, 10, in_channels=3).to(device).train()
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
    return {"images_per_second": rate, "num_workers": workers, "precision": "fp32"}


def _pack(arch, device, k, graphs, prep="resize-rgb", precision="auto", channels_last="auto", beside=False,
          compiled=False):
    """lossnb's real epochs for K runs in one pack; with ``beside``, a window of the solo bare step of the same
    setting after each timed epoch, in this process: the two figures a ratio divides, taken under the same load."""
    import dataclasses

    from lossnb.data import load_dataset
    from lossnb.trainer import RunConfig
    from lossnb.trainer.state import PackRun

    rounds = ROUNDS_BESIDE if beside else REPEATS
    cfgs = [RunConfig(arch=arch, dataset="fashionmnist", loss="ce", seed=s, image_prep=prep, epochs=1 + rounds,
                      device=device, cuda_graphs="auto" if graphs else "off", precision=precision,
                      channels_last=channels_last, compile=compiled) for s in range(k)]
    full = load_dataset("fashionmnist", "data", prep=prep)  # data/fashion-mnist/, else Debian's
    n = STEPS * 128
    data = dataclasses.replace(full, train_x=full.train_x[:n], train_y=full.train_y[:n])
    run = PackRun(cfgs, data, torch.device(device))
    bare = _bare_window(arch, data.in_channels, run.precision, run.channels_last) if beside else None
    run.train_epoch(0, progress=False)  # warm-up
    run.test_logits()
    _sync(device)
    trains, evals, bares = [], [], []
    for epoch in range(1, 1 + rounds):  # the fastest of a few: a shared machine's neighbours only slow a run down
        started = time.perf_counter()
        run.train_epoch(epoch, progress=False)
        _sync(device)
        trains.append(time.perf_counter() - started)
        started = time.perf_counter()
        run.test_logits()
        _sync(device)
        evals.append(time.perf_counter() - started)
        if bare:
            bares.append(bare())
    train_seconds, eval_seconds = min(trains), min(evals)
    # a real epoch: all 60,000 training images at the timed rate, then one evaluation
    epoch_seconds = train_seconds * len(full.train_y) / n + eval_seconds
    rounds_of = {"training_rounds_images_per_second": [k * n / t for t in trains],
                 "epoch_rounds_images_per_second": [k * len(full.train_y) / (t * len(full.train_y) / n + e)
                                                    for t, e in zip(trains, evals)],
                 "bare_step_beside_rounds_images_per_second": [STEADY_STEPS * 128 / b for b in bares]}
    return {"images_per_second": k * len(full.train_y) / epoch_seconds, "runs": k,
            "training_only_images_per_second": k * n / train_seconds, "evaluation_seconds": eval_seconds,
            "epoch_seconds": epoch_seconds, "precision": run.precision, "channels_last": run.channels_last,
            "first_conv": run.first_conv,
            "cuda_graphs": run.graphs is not None, "compiled": compiled, "training_images_timed": k * n,
            **({"bare_step_beside_images_per_second": STEADY_STEPS * 128 / min(bares), **rounds_of} if bare else {})}


def _bare_window(arch, channels, precision, channels_last):
    """The bare step timed here, independently of the probe: a plain model, torch.optim.SGD and cross-entropy on
    one fixed batch of 128, 10 warm-up steps; returns a function timing one window of STEADY_STEPS steps."""
    from lossnb.models import get_model

    torch.manual_seed(0)
    model = get_model(arch, 10, channels).train()
    x, y = torch.randn(128, channels, 32, 32), torch.randint(0, 10, (128,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def window():
        started = time.perf_counter()
        for _ in range(STEADY_STEPS):
            step()
        return time.perf_counter() - started

    for _ in range(10):
        step()
    return window


def _steady_reference(arch, channels, precision, channels_last):
    """The best of 3 windows of _bare_window: images per second."""
    window = _bare_window(arch, channels, precision, channels_last)
    return STEADY_STEPS * 128 / min(window() for _ in range(3))


def _model_step(arch, channels):
    """The bare step (lossnb.trainer.probe: forward, cross-entropy, backward, torch.optim.SGD on one fixed batch
    of 128) in every candidate setting, measured afresh (no cache), and whether bf16 agrees with fp32; beside the
    setting auto takes, this benchmark's own steady-state reading of the same step."""
    from lossnb.trainer import probe

    agrees = probe.bf16_agrees(arch, 10, channels, "linear")
    rates = {probe.candidate_name(p, cl): probe.bare_step_rate(arch, 10, channels, "linear", p, cl)
             for p, cl in probe.CANDIDATES}
    candidates = {k: v for k, v in rates.items() if agrees or k.startswith("fp32")}
    auto = max(candidates, key=candidates.get)
    precision, layout = auto.split("/")
    steady = _steady_reference(arch, channels, precision, layout == "channels_last")
    return {"rates": rates, "bf16_agrees": agrees, "auto": auto, "probe_reading": rates[auto],
            f"steady_{STEADY_STEPS}_step_reading": steady, "probe_vs_steady": rates[auto] / steady}


def model_step_rows(archs, threads):
    """Per task: the bare step in each setting, the one auto takes, and lossnb's training (and whole epoch,
    evaluation included) in that setting, as a share of its bare step; what bounds the bare step (its arithmetic
    against this CPU's matmul rate in the step's precision) and the share of lossnb's epoch its evaluation takes."""
    rows = []
    peaks = measure("cpu_matmul")["gflop_per_s"]
    for arch, prep, channels in archs:
        step = measure("model_step", arch, channels)
        precision, layout = step["auto"].split("/")
        lossnb = measure("pack", arch, "cpu", 1, False, prep, precision, "on" if layout == "channels_last" else "off",
                         True)
        bare = lossnb["bare_step_beside_images_per_second"]  # the step's reading taken between lossnb's epochs
        beside = lossnb["bare_step_beside_rounds_images_per_second"]
        training, epoch = (round_ratios(lossnb[f"{part}_rounds_images_per_second"], beside)
                           for part in ("training", "epoch"))
        row = {"arch": arch, "image_prep": prep, "channels": channels, "threads": threads, **step, "lossnb": lossnb,
               "vs_model_step": lossnb["training_only_images_per_second"] / bare,
               "epoch_vs_model_step": lossnb["images_per_second"] / bare,
               "training_round_ratios": training["round_ratios"], "median_round_vs_model_step":
                   training["median_round_ratio"], "epoch_round_ratios": epoch["round_ratios"],
               "median_round_epoch_vs_model_step": epoch["median_round_ratio"],
               "epoch_vs_probe_reading": lossnb["images_per_second"] / step["probe_reading"],
               "evaluation_share_of_epoch": lossnb["evaluation_seconds"] / lossnb["epoch_seconds"],
               **_bound(bare * _flops_per_image(arch, channels) / 1e9, peaks, precision)}
        rows.append(row)
        print(f"{arch:<10} {prep:<10} bare " + ", ".join(f"{k} {v:,.0f}" for k, v in step["rates"].items())
              + f" | auto {step['auto']} (probe/{STEADY_STEPS}-step reading {step['probe_vs_steady']:.2f}) | lossnb "
              f"training {lossnb['training_only_images_per_second']:,.0f} img/s = {row['vs_model_step']:.2f}x the "
              f"bare step timed between its epochs ({bare:,.0f}), epoch {row['epoch_vs_model_step']:.2f}x; round by "
              f"round, median {row['median_round_vs_model_step']:.2f}x and {row['median_round_epoch_vs_model_step']:.2f}x",
              flush=True)
    return rows


def _arrangement(arch, channels, cores, setting, stored_channels=1):
    """The grid's measured choice for this network in ``setting`` (compiled, precision, channels_last), as one of
    PACK_MODES (lossnb.trainer.probe.best_arrangement), measured afresh in this run's private cache, which the
    packs timed after it read their setting from; FashionMNIST's gray images (1 stored channel) by default."""
    from lossnb.trainer import probe

    compiled, precision, layout = setting
    return probe.best_arrangement(arch, 10, channels, "linear", precision, _layout_arg(layout), cores=cores,
                                  say=lambda _: None, compiled=compiled, stored_channels=stored_channels)


def _bare_packed(arch, channels, pack, compiled, precision, layout):
    """The bare step of a pack (lossnb.trainer.probe.bare_step_rate) in the setting the trainer takes for it on
    this process's threads: the ceiling lossnb's own loop works under."""
    from lossnb.trainer import probe

    precision, channels_last, first_conv = probe.trained_setting(arch, 10, channels, "linear", precision,
                                                                 _layout_arg(layout), pack)
    return {"images_per_second": probe.bare_step_rate(arch, 10, channels, "linear", precision, channels_last, pack,
                                                      compiled=compiled, first_conv=first_conv)}


def _layout_arg(layout):
    """The trainer's channels_last setting ("on"/"off"/"auto") as best_arrangement takes it (a bool, or auto)."""
    return layout if layout == "auto" else layout == "on"


def _setting(pack):
    """A timed pack's precision, memory format and first convolution, as the probe names its candidates."""
    from lossnb.trainer.probe import candidate_name

    return candidate_name(pack["precision"], pack["channels_last"], pack["first_conv"])


def _packs_total(packs, figure="images_per_second"):
    return sum(p[figure] for p in packs)


def _training_only(rounds, solos):
    """The packs' aggregate training rate alone (evaluation left out), round by round, against the solo bare step,
    which trains and does not evaluate: like against like, beside the epochs' figure that counts evaluation too."""
    totals = [_packs_total(r, "training_only_images_per_second") for r in rounds]
    ratios = round_ratios(totals, solos)
    return {"training_rounds": totals, "training_vs_solo_bare_step": max(totals) / max(solos),
            "training_round_ratios": ratios["round_ratios"],
            "median_round_training_ratio": ratios["median_round_ratio"]}


def round_ratios(lossnb_rounds, solo_rounds):
    """Each round's lossnb figure over the same round's solo bare step, and their median: the ratio of figures taken
    minutes apart, as the best of each is, can ride on the machine's drift; a round's two were taken back to back."""
    ratios = [rate / solo for rate, solo in zip(lossnb_rounds, solo_rounds)]
    return {"round_ratios": ratios, "median_round_ratio": statistics.median(ratios)}


def arrangement_rows(archs, cores, model_steps):
    """Per network: the arrangement the grid takes, eager and for runs under torch.compile (an execution setting
    of its own, `compile: true`), lossnb's real epochs in each (its packs in as many processes at once as it chose,
    each on its share of the cores) against the best steady-state solo bare step on all cores, and what bounds
    the figure (its arithmetic rate against this CPU's fp32 matmul rate)."""
    rows = []
    peaks = measure("cpu_matmul")["gflop_per_s"]
    for arch, prep, channels in archs:
        choices = {mode: measure("arrangement", arch, channels, cores, PACK_MODES[mode]) for mode in PACK_MODES}
        bare = next(m for m in model_steps if m["arch"] == arch and m["image_prep"] == prep)
        best = max((n for n in bare["rates"] if bare["bf16_agrees"] or n.startswith("fp32")), key=bare["rates"].get)
        precision, layout = best.split("/")
        # the figures in alternating rounds, the best of each: drift in the machine's speed hits all alike
        solos, rounds = [], {mode: [] for mode in PACK_MODES}
        for _ in range(REPEATS):
            solos.append(measure("steady", arch, channels, precision, layout == "channels_last")["images_per_second"])
            for mode, choice in choices.items():
                rounds[mode].append(measure_many(choice["workers"], cores // choice["workers"], "pack", arch, "cpu",
                                                 choice["pack"], False, prep, *PACK_MODES[mode][1:], False,
                                                 PACK_MODES[mode][0]))
        solo, flops = max(solos), _flops_per_image(arch)
        row = {"arch": arch, "image_prep": prep, "solo_bare_step_images_per_second": solo,
               "solo_bare_step_setting": best, "solo_bare_step_rounds": solos}
        for mode, choice in choices.items():
            packs = max(rounds[mode], key=_packs_total)
            epochs = [_packs_total(r) for r in rounds[mode]]
            rate, k, workers = _packs_total(packs), choice["pack"], choice["workers"]
            probed = choice["rates"][f"{k} x {workers}"]  # the probe's reading of lossnb's step, which it chose by
            probed_solo = max(choice["rates"]["1 x 1"], choice["rates"].get(f"1 x {cores}", 0))  # one run
            # the bare packed step in the same arrangement, side by side as the packs train
            bare_packed = _packs_total(measure_many(workers, cores // workers, "bare_packed", arch, channels, k,
                                                    *PACK_MODES[mode]))
            gflops = rate * flops / 1e9
            bound = _bound(gflops, peaks, packs[0]["precision"])  # the precision the packs trained in
            row[mode] = {
                "arrangement": choice, "setting": _setting(packs[0]), "lossnb_epoch_images_per_second": rate,
                "lossnb_packs": packs,
                "lossnb_rounds": epochs, "vs_solo_bare_step": rate / solo, **round_ratios(epochs, solos),
                **_training_only(rounds[mode], solos),
                "bare_packed_step_images_per_second": bare_packed, "bare_packed_vs_solo_bare_step": bare_packed / solo,
                "lossnb_vs_bare_packed_step": rate / bare_packed,
                "probe_trainer_step_images_per_second": probed, "probe_trainer_step_vs_solo_bare_step": probed / solo,
                "lossnb_vs_probe_trainer_step": rate / probed,
                "probe_packed_vs_probe_solo_trainer_step": probed / probed_solo,
                **bound}
            print(f"{arch:<10} {mode:<8} packs of {k} ({_setting(packs[0])}), {workers} at a time: lossnb {rate:,.0f} img/s (epochs, "
                  f"evaluation included) = {rate / solo:.2f}x the best solo bare step ({solo:,.0f}; round by round, "
                  f"median {row[mode]['median_round_ratio']:.2f}x); training alone "
                  f"{row[mode]['training_vs_solo_bare_step']:.2f}x (median "
                  f"{row[mode]['median_round_training_ratio']:.2f}x); "
                  f"its bare packed step {bare_packed / solo:.2f}x; the probe's reading of lossnb's packed step "
                  f"{probed / solo:.2f}x, {probed / probed_solo:.2f}x its solo one; {gflops:.0f} "
                  f"GFLOP/s, {bound['share_of_matmul_rate']:.0%} of {bound['matmul_precision']} matmul: bound by "
                  f"{bound['bound']}",
                  flush=True)
        rows.append(row)
    return rows


def _bound(gflops, peaks, precision):
    """What bounds a CPU figure: its arithmetic where that is a large share of the cores' matmul rate in the
    figure's own precision (a bf16 step divided by the fp32 rate would read above the arithmetic ceiling)."""
    peak = peaks[precision]
    return {"achieved_gflop_per_s": gflops, "matmul_precision": precision, "cpu_matmul_gflop_per_s": peak,
            "share_of_matmul_rate": gflops / peak,
            "bound": "arithmetic" if gflops / peak >= COMPUTE_SHARE else "per-operation overhead and memory traffic "
                     "(the arithmetic is a small share of the cores' rate)"}


def _cpu_matmul():
    """The matmul rate on this process's threads, fp32 and bf16: the arithmetic ceilings a CPU figure in each
    precision is compared with."""
    rates = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        rates[precision] = 2 * 2048**3 / best / 1e9
    return {"gflop_per_s": rates}


def _flops_per_image(arch, channels=3):
    from torch.utils.flop_counter import FlopCounterMode

    from lossnb.models import get_model

    model = get_model(arch, 10, channels)
    x, y = torch.randn(128, channels, 32, 32), torch.randint(0, 10, (128,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 128


def _limits(device):
    """Copy bandwidth (bytes read + written) and bf16 matmul rate, measured here with CUDA events."""
    x = torch.empty(2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)

    def timed(fn, reps=20):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return sorted(times)[len(times) // 2]

    copy = timed(lambda: y.copy_(x))
    matmul = timed(lambda: a @ b)
    return {"copy_tb_per_s": 2 * x.numel() / copy / 1e12, "bf16_matmul_tflop_per_s": 2 * 8192**3 / matmul / 1e12}


def _measure(kind, args, queue):
    torch.manual_seed(0)
    try:
        if kind == "reference":
            result = _reference(*args)
        elif kind == "limits":
            result = _limits(*args)
        elif kind == "model_step":
            result = _model_step(*args)
        elif kind == "arrangement":
            result = _arrangement(*args)
        elif kind == "bare_packed":
            result = _bare_packed(*args)
        elif kind == "steady":
            result = {"images_per_second": _steady_reference(*args)}
        elif kind == "cpu_matmul":
            result = _cpu_matmul()
        else:
            result = _pack(*args)
        if args and str(args[1]).startswith("cuda"):
            result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        queue.put(result)
    except Exception as err:  # an out-of-memory pack is a result too
        queue.put({"error": f"{type(err).__name__}: {str(err)[:300]}"})


def measure(kind, *args):
    return measure_many(1, None, kind, *args)[0]


def _measure_on(threads, kind, args, queue):
    if threads:
        torch.set_num_threads(threads)
    _measure(kind, args, queue)


def measure_many(n, threads, kind, *args):
    """The same measurement in ``n`` processes at once (``threads`` each), as a grid runs ``n`` packs at a time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_measure_on, args=(threads, kind, args, queue)) for _ in range(n)]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archs", nargs="+", default=None, help="default: resnet20 mobilenetv2 (CUDA), resnet20 (CPU)")
    parser.add_argument("--packs", type=int, nargs="+", default=None, help="default: 1 4 12 24 (CUDA), 1 4 (CPU)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="reference DataLoader workers tried")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    archs = args.archs or (["resnet20", "mobilenetv2"] if cuda else ["resnet20"])
    packs = args.packs or ([1, 4, 12, 24] if cuda else [1, 4])
    workers = args.workers or ([4, 8] if cuda else [0, 2])
    out = pathlib.Path(args.out or f"benchmarks/results/trainer_speed_{args.device.split(':')[0]}.json")
    # probe readings and arrangements measured afresh, shared by this run's processes: a pack timed in `auto`
    # takes the setting its arrangement was measured in, not one cached on another day
    os.environ["LOSSNB_CACHE"] = tempfile.mkdtemp()
    limits = measure("limits", args.device) if cuda else None
    model_steps = None if cuda else model_step_rows(CPU_TASKS, torch.get_num_threads())
    arrangements = None if cuda else arrangement_rows(ARRANGED, torch.get_num_threads(), model_steps)
    rows = []
    for arch in archs:
        refs = [measure("reference", arch, args.device, STEPS * 128, w) for w in workers]
        ref = max(refs, key=lambda r: r.get("images_per_second", 0))
        gflop = _flops_per_image(arch) / 1e9
        row = {"arch": arch, "batch_size_per_run": 128, "gflop_per_training_image": gflop, "reference": ref,
               "reference_all_workers": refs, "packs": []}
        for k in packs:
            entry = {"runs": k, "graphed" if cuda else "eager": measure("pack", arch, args.device, k, True)}
            if cuda and k in (1, 12):
                entry["eager"] = measure("pack", arch, args.device, k, False)
            main_result = entry["graphed" if cuda else "eager"]
            if "images_per_second" in main_result:
                entry["vs_reference"] = main_result["images_per_second"] / ref["images_per_second"]
                tflops = main_result["images_per_second"] * gflop / 1e3
                entry["achieved_tflop_per_s"] = tflops
                if limits:
                    share = tflops / limits["bf16_matmul_tflop_per_s"]
                    entry["share_of_matmul_rate"] = share
                    entry["bound"] = "compute" if share >= COMPUTE_SHARE else "memory or launches"
                if "eager" in entry and "images_per_second" in entry["eager"]:
                    entry["graphed_over_eager"] = main_result["images_per_second"] / entry["eager"]["images_per_second"]
            row["packs"].append(entry)
            rate = main_result.get("images_per_second")
            print(f"{arch:<12} K={k:<3} {rate or 0:10.0f} img/s aggregate  {entry.get('vs_reference', 0):6.2f}x "
                  f"the reference ({ref['images_per_second']:.0f} img/s)  {main_result.get('error', '')}", flush=True)
        solo = row["packs"][0].get("graphed" if cuda else "eager", {}).get("images_per_second")
        for entry in row["packs"]:
            rate = entry.get("graphed" if cuda else "eager", {}).get("images_per_second")
            if solo and rate:
                entry["vs_solo_lossnb"] = rate / solo
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "machine": describe_machine(args.device),
                               "limits": limits, "steps_timed_per_run": STEPS, "model_step": model_steps,
                               "arrangement": arrangements,
                               "cpu_flags": _cpu_flags(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
