"""The training loop: the benchmark's protocol, resumable, with a run record and no per-step host syncs."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from .. import losses
from ..data import ImageData, epoch_generator, load_dataset, normalize, random_crop_flip
from ..models import get_model
from . import records
from .config import PROTOCOL_DEFAULTS, RunConfig
from .environment import describe_environment, resolve_channels_last, resolve_device, resolve_precision
from .metrics import evaluation_metrics, reliability_bins

DIVERGENCE_CHECK_EVERY = 50  # steps between host syncs that look for a non-finite loss
EVAL_BATCH = 1000


class RunExists(RuntimeError):
    pass


class _Run:
    """Everything one run holds while it trains."""

    def __init__(self, cfg: RunConfig, data: ImageData, device: torch.device):
        self.cfg, self.data, self.device = cfg, data, device
        self.precision = resolve_precision(cfg.precision, device)
        self.channels_last = resolve_channels_last(cfg.channels_last, device)
        torch.manual_seed(cfg.seed)
        self.model = get_model(cfg.arch, data.num_classes, data.in_channels).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        self.loss = losses.get(cfg.loss, **cfg.loss_params)
        self.mean = torch.tensor(data.mean, device=device)
        self.std = torch.tensor(data.std, device=device)
        self.train_x, self.train_y = data.train_x.to(device), data.train_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)
        self.rows: list[dict] = []
        self.wall_seconds = 0.0
        self.reliability: dict | None = None  # of the latest evaluation

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        state = {"epoch": len(self.rows), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "loss_state": self.loss.state_dict(),
                 "rng_cpu": torch.get_rng_state(), "rows": self.rows, "wall_seconds": self.wall_seconds,
                 "reliability": self.reliability}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # checkpoints load to the CPU; a stateful loss's tensors must meet the logits on the device
        self.loss.load_state_dict({k: v.to(self.device) if torch.is_tensor(v) else v
                                   for k, v in state["loss_state"].items()})
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.rows, self.wall_seconds = list(state["rows"]), state["wall_seconds"]
        self.reliability = state.get("reliability")

    # ------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int, progress: bool) -> tuple[dict, tuple[int, int] | None]:
        """Returns the epoch's training metrics, and (epoch, step) of the first non-finite loss if any."""
        cfg, n = self.cfg, len(self.train_y)
        gen = epoch_generator(cfg.seed, epoch, self.device)
        order = torch.randperm(n, generator=gen, device=self.device)
        config = {"num_classes": self.data.num_classes, "epoch": epoch, "total_epochs": cfg.epochs}
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        starts = [s for s in range(0, n, cfg.batch_size) if n - s >= 2]  # BatchNorm needs 2+ samples
        self.model.train()
        for step, start in enumerate(tqdm(starts, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)):
            idx = order[start:start + cfg.batch_size]
            x = normalize(random_crop_flip(self.train_x[idx], gen), self.mean, self.std)
            y = self.train_y[idx]
            with self.autocast():
                logits = self.forward(x)
                loss = self.loss(logits, y, config)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            detached = loss.detach()
            first_bad = torch.where(~torch.isfinite(detached) & (first_bad < 0), step, first_bad)
            loss_sum += detached.float() * len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()
            if (step + 1) % DIVERGENCE_CHECK_EVERY == 0 and first_bad.item() >= 0:
                break
        bad_step = first_bad.item()
        seen = sum(min(cfg.batch_size, n - s) for s in starts)
        metrics = {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}
        return metrics, ((epoch, bad_step) if bad_step >= 0 else None)

    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        outputs = []
        for start in range(0, len(self.test_y), EVAL_BATCH):
            x = normalize(self.test_x[start:start + EVAL_BATCH], self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                outputs.append(self.forward(x).float())
        logits = torch.cat(outputs)
        self.reliability = reliability_bins(logits, self.test_y)
        return evaluation_metrics(logits, self.test_y, self.data.num_classes)


def _summary(run: _Run, status: str, diverged_at=None) -> dict:
    rows = run.rows
    summary = {"status": status, "epochs_completed": len(rows), "wall_seconds": run.wall_seconds,
               "protocol": run.cfg.protocol, "budget": run.cfg.budget_tag(), "eval_split": run.data.eval_split}
    if rows:
        best = max(rows, key=lambda r: r["test_acc"])
        final = rows[-1]
        summary.update(best_test_acc=best["test_acc"], best_epoch=best["epoch"], final_test_acc=final["test_acc"],
                       final_test_loss=final["test_loss"], final_test_ece=final["test_ece"],
                       final_test_macro_f1=final["test_macro_f1"], final_reliability=run.reliability)
    else:
        summary.update({k: None for k in records.SUMMARY_FIELDS if k not in summary})
    if diverged_at:
        summary["diverged_at"] = {"epoch": diverged_at[0], "step": diverged_at[1]}
    return summary


def _record_config(run: _Run, run_dir: Path) -> None:
    cfg, data = run.cfg, run.data
    is_protocol = all(getattr(cfg, k) == v for k, v in PROTOCOL_DEFAULTS.items()) and not cfg.train_subset \
        and not cfg.val_size
    records.write_json(run_dir / "config.json", {
        "run": cfg.to_dict(), "run_path": str(cfg.run_path()),
        "follows_200_epoch_protocol": is_protocol,
        "resolved": {"precision": run.precision, "channels_last": run.channels_last},
        "loss": losses.describe(cfg.loss),
        "data": {"source": data.source, "train_size": len(data.train_y), "eval_size": len(data.test_y),
                 "eval_split": data.eval_split, "mean": data.mean, "std": data.std,
                 "augmentation": "RandomCrop(32, padding=4) + RandomHorizontalFlip, batched on device"},
        "environment": describe_environment(run.device),
    })


def train(cfg: RunConfig, *, runs_dir: str | Path = "runs", checkpoint_dir: str | Path | None = None,
          data_root: str | Path | None = None, download: bool = False, resume: bool = False, force: bool = False,
          progress: bool = True, data: ImageData | None = None) -> dict:
    """Train one run and write its record; returns the summary.

    A finished run is left alone (its summary returned) unless ``force``. A run with a
    checkpoint continues from it with ``resume`` and is refused without it, so that no
    work is lost by accident.
    """
    run_dir = Path(runs_dir) / cfg.run_path()
    # checkpoints sit under the runs directory they belong to, in a git-ignored folder; so does the
    # record while it is being written, which appears under runs/ only once the run has finished
    work_dir = Path(checkpoint_dir or Path(runs_dir) / ".checkpoints") / cfg.run_path()
    ckpt_path, staging = work_dir / "last.pt", work_dir / "record"
    if records.is_finished(run_dir) and not force:
        return records.read_summary(run_dir)
    if ckpt_path.is_file() and not (resume or force):
        raise RunExists(f"{run_dir} has a checkpoint ({ckpt_path}); pass --resume to continue it or --force to restart")
    if force:
        ckpt_path.unlink(missing_ok=True)

    device = resolve_device(cfg.device)
    data = data or load_dataset(cfg.dataset, data_root, download=download, train_subset=cfg.train_subset,
                                val_size=cfg.val_size)
    run = _Run(cfg, data, device)
    if resume and ckpt_path.is_file():
        # loaded to the CPU: RNG states must stay CPU tensors; model and optimizer copy theirs to the device
        run.restore(torch.load(ckpt_path, map_location="cpu", weights_only=True))
        print(f"resuming {cfg.run_path()} from its checkpoint after epoch {len(run.rows)}")
    _record_config(run, staging)

    epochs = tqdm(range(len(run.rows), cfg.epochs), desc=str(cfg.run_path()), initial=len(run.rows),
                  total=cfg.epochs, disable=not progress)
    for epoch in epochs:
        started = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        train_metrics, diverged_at = run.train_epoch(epoch, progress)
        if diverged_at:
            return _finish(run, staging, run_dir, "diverged", diverged_at)
        run.scheduler.step()
        row = {"epoch": epoch, "lr": lr, **train_metrics, **run.evaluate()}
        seconds = time.perf_counter() - started
        row.update(epoch_seconds=seconds, train_images_per_second=len(run.train_y) / seconds)
        run.rows.append(row)
        run.wall_seconds += seconds
        records.write_metrics(staging / "metrics.csv", run.rows)
        records.atomic_torch_save(run.state(), ckpt_path)
        epochs.set_postfix(test_acc=f"{row['test_acc']:.4f}", best=f"{max(r['test_acc'] for r in run.rows):.4f}")
    return _finish(run, staging, run_dir, "complete")


def _finish(run: _Run, staging: Path, run_dir: Path, status: str, diverged_at=None) -> dict:
    summary = _summary(run, status, diverged_at)
    records.write_json(staging / "summary.json", summary)
    records.publish_dir(staging, run_dir)
    return summary
