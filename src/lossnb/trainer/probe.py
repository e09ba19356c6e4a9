"""What `auto` means on a CPU, measured: a few bare training steps (forward, cross-entropy, backward,
torch.optim.SGD) of the run's model and input shape in each precision and memory format (and, for a pack, each
form of its first convolution), the fastest taken; bf16 only where a step's loss and gradients agree with fp32's
within a stated tolerance. The choice is cached per machine, torch version and model shape
(~/.cache/lossnb/probe.json, outside runs/ and git), so a machine probes each shape once; delete the file to probe
again (a probe taken while the machine was busy may be off).

Which is fastest depends on the network, the input's channel count and the CPU: bf16 channels_last is the
fastest ConvNet setting on an AVX-512-bf16 CPU and bf16 NCHW its slowest; on an AVX2-only CPU bf16 loses.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CANDIDATES = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
# a pack's candidates are these in each form of its first convolution (trainer.pack.FIRST_CONV_FORMS): the dense
# block-diagonal one wins on a CPU where each run's input has a few channels and loses where it has many
BATCH = 128
# Steady state: the first steps pay allocations and oneDNN's kernel choice (several times a later step's time), so
# each reading follows WARMUP_STEPS and is the best of REPEATS timings of STEPS steps (fewer where that many would
# take over MAX_REPEAT_SECONDS, as for MobileNetV2 at ~1 s a step: a window that long averages its steps anyway).
# LOSSNB_PROBE_STEPS shortens the windows where only some choice is needed quickly (the test suite).
WARMUP_STEPS, REPEATS, STEPS, MAX_REPEAT_SECONDS = 10, 3, int(os.environ.get("LOSSNB_PROBE_STEPS", 100)), 10.0
PACK_SIZES = (1, 2, 4, 8, 16)  # the arrangements the grid chooses among on a CPU
# bf16 is a candidate only if one step's loss is within 1% of fp32's, the whole gradient's cosine similarity to
# fp32's is at least 0.95 and each tensor's at least 0.75. That passes bf16's ordinary rounding (at
# initialisation on random data, where gradients are small and noisy: whole 0.999 for the ConvNet and 0.98 for
# ResNet-20, their worst tensors 0.99 and 0.83, measured here) and stops a kernel whose gradients point
# elsewhere (MobileNetV2 on this machine's torch: whole 0.46, a tensor at -0.3), as reported in
# pytorch/pytorch#163347 and #169688 for bf16 CPU convolutions.
BF16_LOSS_RTOL, BF16_GRAD_COSINE, BF16_TENSOR_COSINE = 0.01, 0.95, 0.75


def cache_path() -> Path:
    return Path(os.environ.get("LOSSNB_CACHE", Path.home() / ".cache" / "lossnb")) / "probe.json"


def machine_key() -> str:
    """The CPU (model name and flags), core count and torch version: what a measured choice depends on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((line for line in info.splitlines() if line.startswith("model name")), "")
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    except OSError:
        model, flags = platform.processor(), ""
    text = f"{model}|{flags}|{os.cpu_count()}|{torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _model(arch: str, num_classes: int, in_channels: int, head: str, channels_last: bool, pack: int = 1,
           first_conv: str = "grouped"):
    """The run's model (seed 0), or ``pack`` of them packed as the trainer packs them."""
    from ..models import get_model
    from .pack import Pack

    models = []
    for seed in range(pack):
        torch.manual_seed(seed)
        models.append(get_model(arch, num_classes, in_channels, head))
    model = Pack(models, first_conv) if pack > 1 else models[0]
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _step(model, opt, x, y, precision: str):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(x).float()
    # a pack's output is (K, N, classes): the sum of its runs' mean losses, as the trainer's step
    loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="sum") / BATCH
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def steady_rate(step, images_per_step: int) -> float:
    """Images per second of ``step()`` at steady state: WARMUP_STEPS, then the best of REPEATS timed windows."""
    warm = min(WARMUP_STEPS, STEPS)
    step()  # the first call pays what is paid once (a compile, a kernel choice): no estimate of a step's time
    started = time.perf_counter()
    for _ in range(warm - 1):
        step()
    per_step = (time.perf_counter() - started) / max(1, warm - 1)  # an overestimate: warm-up steps are the slow ones
    steps = max(1, min(STEPS, int(MAX_REPEAT_SECONDS / per_step))) if per_step > 0 else STEPS  # none timed: STEPS
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - started)
    return steps * images_per_step / best


def bare_step_rate(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                   channels_last: bool, pack: int = 1, compiled: bool = False, first_conv: str = "grouped") -> float:
    """Training images per second (all runs of a pack together) of the bare step at batch 128 per run, on this
    process's threads, at steady state: forward, cross-entropy, backward, torch.optim.SGD on one fixed batch;
    with ``compiled``, the model under torch.compile as the trainer compiles it (compiled in the warm-up); a
    pack's first convolution in the form ``first_conv``."""
    model = _model(arch, num_classes, in_channels, head, channels_last, pack, first_conv).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(BATCH, pack * in_channels, 32, 32)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, num_classes, (pack, BATCH) if pack > 1 else (BATCH,))
    return steady_rate(lambda: _step(forward, opt, x, y, precision), pack * BATCH)


def trainer_step_rate(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                      channels_last: bool, pack: int = 1, compiled: bool = False,
                      stored_channels: int | None = None, first_conv: str = "grouped") -> float:
    """Training images per second (all runs of a pack together) of lossnb's own training step at batch 128 per
    run, on this process's threads, at steady state: each run's crops and flips gathered, forward, the runs'
    losses, backward, the trainer's SGD and its running sums, on random images of ``stored_channels`` (1 where
    the data set's gray images are repeated to ``in_channels``, as the trainer crops them once). What a grid's
    runs pay beyond the model's bare step is in it: in one process of N threads that host work runs between the
    steps, in N processes beside them, so the two arrangements are told apart as the runs will train."""
    from ..data import ImageData
    from .config import RunConfig
    from .state import PackRun

    stored, batches = stored_channels or in_channels, 8  # a few batches, cycled: the step's own cost, not an epoch's
    images = torch.randint(0, 256, (batches * BATCH, stored, 32, 32), dtype=torch.uint8)
    images = images.expand(-1, in_channels, -1, -1) if stored < in_channels else images
    labels = torch.randint(0, num_classes, (batches * BATCH,))
    data = ImageData("synthetic", images, labels, images[:2], labels[:2], num_classes, (0.5,) * in_channels,
                     (0.25,) * in_channels, "random images")
    cfgs = [RunConfig(arch=arch, dataset="cifar10", loss="ce", head=head, seed=seed, device="cpu", compile=compiled)
            for seed in range(pack)]  # the data set is named only: the images are the ones above
    setting = {"precision": precision, "channels_last": channels_last, "first_conv": first_conv, "chosen_by": "given"}
    with contextlib.redirect_stderr(io.StringIO()):  # the pack's line naming its setting: the caller says it
        run = PackRun(cfgs, data, torch.device("cpu"), execution=setting)
    run.train_epoch(0, progress=False)  # the epoch's plan (every crop, every target), as a grid's epoch sets it
    config = {"num_classes": num_classes, "epoch": 0, "total_epochs": cfgs[0].epochs}
    steps = itertools.count()
    return steady_rate(lambda: run.step(BATCH, config, next(steps) % batches * BATCH), pack * BATCH)


def bf16_agrees(arch: str, num_classes: int, in_channels: int, head: str) -> bool:
    """One step's loss and gradients in bf16 autocast against fp32, from the same weights and batch."""
    torch.manual_seed(1)
    x, y = torch.randn(BATCH, in_channels, 32, 32), torch.randint(0, num_classes, (BATCH,))
    results = []
    for precision in ("fp32", "bf16"):
        model = _model(arch, num_classes, in_channels, head, False).train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        grads = torch.autograd.grad(loss, [p for p in model.parameters()])
        results.append((loss.detach(), grads))
    (loss32, g32), (loss16, g16) = results
    if not torch.isfinite(loss16) or abs(loss16 - loss32) > BF16_LOSS_RTOL * abs(loss32):
        return False
    def cosine(a, b):
        return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))

    whole = cosine(torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16]))
    return whole >= BF16_GRAD_COSINE and all(cosine(a, b) >= BF16_TENSOR_COSINE for a, b in zip(g32, g16)
                                             if a.norm() > 0)


def probe(arch: str, num_classes: int, in_channels: int, head: str = "linear", say=print, pack: int = 1) -> dict:
    """The fastest (precision, channels_last) of the bare step on this machine for this model shape, as a pack of
    ``pack`` runs (the layout that wins alone can lose packed: grouped convolutions and one BatchNorm over K
    runs' channels) and, for a pack, the form of its first convolution; cached. Returns {"precision",
    "channels_last", "first_conv", "rates": {"fp32/nchw": img/s, "fp32/nchw/block_diagonal": ..., ...},
    "bf16_agrees", "threads"}: candidate_setting reads a rate's name."""
    from .pack import FIRST_CONV_FORMS

    threads = torch.get_num_threads()
    key = f"{machine_key()}|{arch}|{num_classes}|{in_channels}|{head}|{threads}"
    # a solo run's key as before: its cached choice stands; a pack's names the forms measured
    key += f"|pack{pack}|{','.join(FIRST_CONV_FORMS)}" if pack > 1 else ""
    cache = _read_cache()
    if key in cache:
        return cache[key]
    agrees = bf16_agrees(arch, num_classes, in_channels, head)
    rates = {}
    for first_conv in FIRST_CONV_FORMS if pack > 1 else ("grouped",):
        for precision, channels_last in CANDIDATES:
            if precision == "bf16" and not agrees:
                continue
            rates[candidate_name(precision, channels_last, first_conv)] = bare_step_rate(
                arch, num_classes, in_channels, head, precision, channels_last, pack, first_conv=first_conv)
    best = max(rates, key=rates.get)
    choice = {**candidate_setting(best), "rates": rates, "bf16_agrees": agrees, "threads": threads}
    cache[key] = choice
    _write_cache(cache)
    runs = f", packs of {pack}" if pack > 1 else ""
    say(f"measured the bare training step of {arch} ({in_channels}x32x32, {threads} thread(s){runs}): "
        + ", ".join(f"{k} {v:,.0f} img/s" for k, v in rates.items()) + f"; auto takes {best}")
    return choice


def candidate_name(precision: str, channels_last: bool, first_conv: str = "grouped") -> str:
    """A measured setting's name: 'bf16/channels_last', with '/block_diagonal' where a pack's first convolution
    is dense."""
    name = f"{precision}/{'channels_last' if channels_last else 'nchw'}"
    return name if first_conv == "grouped" else f"{name}/{first_conv}"


def candidate_setting(name: str) -> dict:
    """{"precision", "channels_last", "first_conv"} of a candidate_name."""
    precision, layout, *form = name.split("/")
    return {"precision": precision, "channels_last": layout == "channels_last",
            "first_conv": form[0] if form else "grouped"}


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache, or a damaged one: probe again and write a whole new one


def _write_cache(cache: dict) -> None:
    from .records import atomic_write_text

    try:
        atomic_write_text(cache_path(), json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only home: the choice is measured again next time, nothing else changes


def trained_setting(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                    channels_last: str | bool, pack: int, first_conv: str = "auto") -> tuple[str, bool, str]:
    """(precision, channels_last, first_conv) a pack of ``pack`` runs trains in on this process's threads: the
    settings given (precision auto/fp32/bf16, channels_last auto/on/off or a bool, first_conv auto or a form),
    `auto` resolved as the trainer resolves it."""
    from .environment import resolve_execution

    layout = channels_last if isinstance(channels_last, str) else ("on" if channels_last else "off")
    chosen = resolve_execution(precision, layout, torch.device("cpu"), arch, num_classes, in_channels, head,
                               say=lambda _: None, pack=pack, first_conv=first_conv)
    return chosen["precision"], chosen["channels_last"], chosen["first_conv"]


def _packed_rate(arch, num_classes, in_channels, head, precision, channels_last, pack, compiled, stored_channels,
                 first_conv, barrier=None) -> float:
    """lossnb's training step of a pack in the setting it would train in here; with ``barrier``, timed once every
    process side by side has resolved its own (each on its own threads: the fastest setting depends on them)."""
    precision, channels_last, first_conv = trained_setting(arch, num_classes, in_channels, head, precision,
                                                           channels_last, pack, first_conv)
    if barrier is not None:
        barrier.wait()
    return trainer_step_rate(arch, num_classes, in_channels, head, precision, channels_last, pack, compiled=compiled,
                             stored_channels=stored_channels, first_conv=first_conv)


def _worker_rate(args) -> float:
    """In a child process: one thread, then the pack's step beside the other processes."""
    torch.set_num_threads(1)
    return _packed_rate(*args[1:], barrier=args[0])


def arrangement_rates(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                      channels_last: str | bool, pack: int, cores: int, compiled: bool = False,
                      stored_channels: int | None = None, first_conv: str = "auto") -> tuple[float, float]:
    """(one process of ``cores`` threads, ``cores`` single-thread processes side by side): training images per
    second of lossnb's step (trainer_step_rate) for packs of ``pack`` runs, all runs together, at steady state,
    each in the precision, memory format and first convolution the trainer would take for it there, compiled
    where the runs are."""
    import multiprocessing as mp

    args = (arch, num_classes, in_channels, head, precision, channels_last, pack, compiled, stored_channels, first_conv)
    before = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        one = _packed_rate(*args)
    finally:
        torch.set_num_threads(before)
    if cores < 2:
        return one, one
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(cores)
        with ctx.Pool(cores) as pool:
            many = sum(pool.map(_worker_rate, [(barrier, *args)] * cores))
    return one, many


def best_arrangement(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                     channels_last: str | bool, cores: int | None = None, packs: tuple[int, ...] = PACK_SIZES,
                     say=print, compiled: bool = False, stored_channels: int | None = None,
                     first_conv: str = "auto") -> dict:
    """On a CPU of N cores, how a grid trains this network fastest: runs per pack (each of ``packs``) and packs at
    a time (1 process of N threads, or N single-thread processes), by the aggregate rate of lossnb's own training
    step (trainer_step_rate: the bare step misses the host work between steps, which one process of N threads
    runs serially and N processes run side by side), measured at steady state and cached per machine. Images of
    ``stored_channels`` are cropped (1 for gray images repeated to ``in_channels``). Returns {"pack", "workers",
    "rates": {"K x P": img/s}}.
    Which wins depends on the network and the CPU: packing turns a small network's many tiny operations into
    fewer larger ones, while a wide one already fills the cores and only loses to grouped convolutions. Runs
    under torch.compile (``compiled``) are timed compiled, and their choice is cached apart: fusing a pack's many
    small operations moves where packing stops paying."""
    cores = cores or os.cpu_count() or 1
    key = _arrangement_key(arch, num_classes, in_channels, head, precision, channels_last, cores, packs, compiled,
                           stored_channels, first_conv)
    cache = _read_cache()
    if key in cache:
        return cache[key]
    rates = {}
    for pack in packs:
        one, many = arrangement_rates(arch, num_classes, in_channels, head, precision, channels_last, pack, cores,
                                      compiled, stored_channels, first_conv)
        rates[f"{pack} x 1"] = one
        if cores > 1:
            rates[f"{pack} x {cores}"] = many
    best = max(rates, key=rates.get)
    pack, workers = (int(v) for v in best.split(" x "))
    choice = {"pack": pack, "workers": workers, "rates": rates}
    cache[key] = choice
    _write_cache(cache)
    say(f"measured lossnb's training step of {arch}{' compiled' if compiled else ''} on {cores} cores (runs per "
        "pack x packs at a time: img/s, all runs together): "
        + ", ".join(f"{k}: {v:,.0f}" for k, v in rates.items()))
    return choice


def cached_arrangement(arch: str, num_classes: int, in_channels: int, head: str, precision: str,
                       channels_last: str | bool, cores: int | None = None, packs: tuple[int, ...] = PACK_SIZES,
                       compiled: bool = False, stored_channels: int | None = None,
                       first_conv: str = "auto") -> dict | None:
    """best_arrangement's cached answer, or None where this machine has not measured it."""
    key = _arrangement_key(arch, num_classes, in_channels, head, precision, channels_last,
                           cores or os.cpu_count() or 1, packs, compiled, stored_channels, first_conv)
    return _read_cache().get(key)


def _arrangement_key(arch, num_classes, in_channels, head, precision, channels_last, cores, packs, compiled,
                     stored_channels, first_conv) -> str:
    # "trainer-step": choices cached from the bare step's rates (before it) are not this measurement's answer;
    # "first-conv": nor those measured before a pack's first convolution had two forms
    return (f"arrangement|trainer-step|{machine_key()}|{arch}|{num_classes}|{in_channels}|"
            f"{stored_channels or in_channels}|{head}|{precision}|{channels_last}|first-conv-{first_conv}|{cores}|"
            f"{','.join(map(str, packs))}" + ("|compiled" if compiled else ""))
