"""Which packs fit in a time budget: each pack shape is timed briefly on this machine, and only packs whose
whole run (every epoch, evaluation included) fits in the time left are started, one after another.

An epoch of a pack costs a + b * steps: a fixed part per epoch (re-capturing the CUDA graphs, evaluation,
checkpoints) and b per training step. Both are measured here by timing epochs of two lengths on the pack's
own configuration, on its real data; the estimate carries a margin for what the brief timing misses.
"""
from __future__ import annotations

import dataclasses
import io
import math
import time

import torch

from ..data import load_dataset
from ..trainer import RunConfig
from ..trainer.environment import resolve_device
from ..trainer.state import PackRun

MARGIN = 1.15  # estimated seconds are multiplied by this before they are compared with the time left
SHORT, LONG = 10, 40  # training steps of the two timed epochs


@dataclasses.dataclass
class PackEstimate:
    runs: int
    epochs: int
    seconds_per_step: float
    seconds_per_epoch_fixed: float
    steps_per_epoch: int
    epochs_left: int

    @property
    def seconds(self) -> float:
        per_epoch = self.seconds_per_epoch_fixed + self.seconds_per_step * self.steps_per_epoch
        return MARGIN * per_epoch * self.epochs_left


def estimate_pack(cfgs: list[RunConfig], data_root=None, epochs_done: int = 0) -> PackEstimate:
    """Time this pack's epoch at two lengths (a few seconds) and extrapolate to its whole run."""
    cfg = cfgs[0]
    full = load_dataset(cfg.dataset, data_root, train_subset=cfg.train_subset, val_size=cfg.val_size,
                        prep=cfg.image_prep)
    steps = math.ceil(len(full.train_y) / cfg.batch_size)
    device = resolve_device(cfg.device)
    timings = []
    for n_steps in (SHORT, LONG):
        data = dataclasses.replace(full, train_x=full.train_x[:n_steps * cfg.batch_size],
                                   train_y=full.train_y[:n_steps * cfg.batch_size])
        run = PackRun(cfgs, data, device)
        run.train_epoch(0, progress=False)  # warm-up: compilation, cuDNN plans, the first capture
        _sync(device)
        started = time.perf_counter()
        run.train_epoch(1, progress=False)
        run.test_logits()
        for k in range(run.k):  # what a checkpoint costs, short of the disk
            torch.save(run.member_state(k), io.BytesIO())
        _sync(device)
        timings.append(time.perf_counter() - started)
        del run
    per_step = max(0.0, (timings[1] - timings[0]) / (LONG - SHORT))
    fixed = max(0.0, timings[0] - SHORT * per_step)
    return PackEstimate(len(cfgs), cfg.epochs, per_step, fixed, steps, cfg.epochs - epochs_done)


def fit_packs(packs: list[list[RunConfig]], seconds: float, data_root=None, say=print,
              starting_epochs: list[int] | None = None, partial: bool = False) -> list[list[RunConfig]]:
    """The packs, in order, that fit one after another in ``seconds``. A pack that does not fit is halved until
    a part of it fits (the rest is not started: a run that cannot finish is never begun); later, shorter packs
    may still fit. With ``partial``, the first pack that does not fit whole but has time for an epoch is
    started last, to be stopped at the deadline and resumed from its checkpoints another time."""
    chosen, left, cache = [], seconds, {}

    def estimate(pack, done):
        key = (pack[0].pack_key(), len(pack))
        if key not in cache:
            cache[key] = estimate_pack(pack, data_root)
        return dataclasses.replace(cache[key], epochs_left=pack[0].epochs - done)

    for i, pack in enumerate(packs):
        done = starting_epochs[i] if starting_epochs else 0
        part = pack
        while True:
            est = estimate(part, done)
            fits = est.seconds <= left
            say(f"pack {i + 1}: {len(part)} of its {len(pack)} runs of {pack[0].arch}, {est.epochs_left} epochs: "
                f"about {est.seconds / 60:.1f} min ({est.seconds_per_step * 1e3:.1f} ms/step, "
                f"{est.seconds_per_epoch_fixed:.2f} s/epoch fixed, x{MARGIN:.2f} margin); {left / 60:.1f} min "
                f"left: {'fits' if fits else 'does not fit'}")
            if fits or len(part) == 1 or done:  # a resumed pack is kept whole: its members share checkpoints
                break
            part = part[:len(part) // 2]
        if fits:
            chosen.append(part)
            left -= est.seconds
        elif partial and est.seconds / max(1, est.epochs_left) <= left:
            say(f"pack {i + 1}: starts anyway, to run until the time is up and resume later from its checkpoints")
            return chosen + [pack]
    return chosen


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
