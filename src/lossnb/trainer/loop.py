"""The training loop: K runs of one architecture and data set trained at once as one packed model (K = 1 is a
solo run), the benchmark's protocol, resumable per run, a record per run, no host sync inside an epoch, and
on CUDA the whole step (data, forward, backward, SGD) captured in a CUDA graph."""
from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from .. import losses
from ..data import EpochPlan, ImageData, crop_flip, load_dataset, normalize, pad_images
from ..models import get_model
from . import records
from .config import RunConfig
from .environment import describe_environment, resolve_device, resolve_execution
from .metrics import evaluation_metrics, reliability_bins
from .graphs import GraphedSteps, use_cuda_graphs
from .pack import Pack
from .sgd import SGD
from .workspace import RunBusy, RunFiles, holder_pid, run_locks

EVAL_IMAGES_PER_BATCH = 2048  # test images x runs per evaluation batch
LOSS_FILE_COPY = "loss_file.py"  # a run with a loss file keeps a copy of it in its record


class RunExists(RuntimeError):
    pass


class LossFailed(ValueError):
    """A run's loss broke the contract inside the trainer; its run ends unrecorded, in one line."""

    def __init__(self, cfg: RunConfig, config: dict, step: int, reason: str):
        self.cfg = cfg
        super().__init__(f"loss {cfg.loss} of {cfg.run_path()} failed at epoch {config['epoch'] + 1}, step "
                         f"{step + 1}: {reason}; the run is not recorded")


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine annealing over the whole run, stepped per epoch (Loshchilov & Hutter 2017, no restarts)."""
    return base * (1 + math.cos(math.pi * epoch / epochs)) / 2


class PackRun:
    """Everything K runs hold while they train together."""

    def __init__(self, cfgs: list[RunConfig], data: ImageData, device: torch.device):
        self.cfgs, self.data, self.device, self.k = cfgs, data, device, len(cfgs)
        cfg = cfgs[0]
        self.execution = resolve_execution(cfg.precision, cfg.channels_last, device, cfg.arch, data.num_classes,
                                           data.in_channels, cfg.head, say=lambda line: print(line, file=sys.stderr))
        self.precision, self.channels_last = self.execution["precision"], self.execution["channels_last"]
        print(f"{self.precision}, {'channels_last' if self.channels_last else 'NCHW'} "
              f"({self.execution['chosen_by']}), {torch.get_num_threads()} thread(s) on {device}", file=sys.stderr)
        models = []
        for c in cfgs:  # each run's own seed's initialisation, as its solo run
            torch.manual_seed(c.seed)
            models.append(get_model(c.arch, data.num_classes, data.in_channels, c.head))
        self.pack = Pack(models).to(device)
        if self.channels_last:
            self.pack = self.pack.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.pack) if cfg.compile else self.pack
        self.names = [n for n, _ in self.pack.net.named_parameters()]
        self.params = [p for _, p in self.pack.net.named_parameters()]
        self.sgd = SGD(self.params, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov)
        self.losses = [losses.get(c.loss, **c.loss_params) for c in cfgs]
        for c, loss in zip(cfgs, self.losses):
            if loss.spec.source_file and loss.spec.name != c.loss_tag():
                raise ValueError(f"loss file {c.loss} changed since {c.run_path()} was configured "
                                 f"(now {loss.spec.name}); configure the run again")
        self.mean = torch.tensor(data.mean, device=device, dtype=torch.get_default_dtype())
        self.std = torch.tensor(data.std, device=device, dtype=torch.get_default_dtype())
        # The training images, padded and normalised once (each pixel as normalize would make it in every step,
        # the padding as the zero pixels it is): a step only gathers its crops. Images whose channels are copies
        # of one (gray repeated to 3, as resize-rgb makes them; their statistics are equal too) are kept and
        # cropped as one channel, expanded to the model's channels after: the same numbers at a third of the work.
        padded = pad_images(single_channel(data.train_x)).to(device)
        self.in_channels = data.in_channels
        c = padded.shape[1]
        self.train_x = normalize(padded, self.mean[:c], self.std[:c])
        self.test_x = single_channel(data.test_x).to(device)
        self.train_y, self.test_y = data.train_y.to(device), data.test_y.to(device)
        n = len(self.train_y)
        self.plan = EpochPlan.stack([EpochPlan.draw(c.seed, 0, n, device, data.flip) for c in cfgs])
        self.cursor = torch.zeros((), dtype=torch.long, device=device)  # position in the epoch
        self.step_index = torch.zeros((), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(self.k, device=device)
        self.correct = torch.zeros(self.k, dtype=torch.long, device=device)
        self.first_bad = torch.full((self.k,), -1, dtype=torch.long, device=device)
        self.alive = [True] * self.k
        self.loss_weight = torch.ones(self.k, device=device)  # 0 for a frozen member: its gradient is zero
        self.rows: list[list[dict]] = [[] for _ in cfgs]
        self.reliability: list[dict | None] = [None] * self.k
        self.wall_seconds = 0.0
        self.graphs = GraphedSteps(self) if use_cuda_graphs(cfgs, device) else None
        self.host_step = 0

    # ------------------------------------------------------------ sizes
    def batches(self) -> list[int]:
        """Batch sizes of one epoch: the last partial batch is kept (BatchNorm needs 2+ images)."""
        n, bs = len(self.train_y), self.cfgs[0].batch_size
        return [min(bs, n - s) for s in range(0, n, bs) if n - s >= 2]

    def autocast(self):
        if self.precision == "bf16":  # no weight cache: a CUDA graph must not capture a cast made once
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    # ------------------------------------------------------------ one step (eager, or captured in a graph)
    def step(self, batch: int, config: dict) -> None:
        position = self.cursor + torch.arange(batch, device=self.device)
        order = self.plan.order.index_select(1, position)  # (K, B)
        x = crop_flip(self.train_x, order, self.plan.dy.index_select(1, position),
                      self.plan.dx.index_select(1, position), self.plan.flip.index_select(1, position))
        x = x.expand(*x.shape[:2], self.in_channels, *x.shape[-2:])  # (K, B, C, H, W), normalised
        x = x.transpose(0, 1).reshape(batch, -1, *x.shape[-2:])  # run k's images in channel block k
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.train_y[order]
        with self.autocast():
            logits = self.forward(x)
            # counted before any loss sees the logits: a loss that writes into them cannot change the record
            hits = (logits.detach().argmax(dim=2) == y).sum(dim=1)
            per_run = torch.stack([self.loss_value(k, logits[k], y[k], config) for k in range(self.k)]).float()
        # the sum of the runs' mean losses: each run's gradient is its own (nothing mixes the runs' blocks)
        grads = torch.autograd.grad((per_run * self.loss_weight).sum(), self.params)
        self.sgd.step(grads)
        with torch.no_grad():
            bad = ~torch.isfinite(per_run)
            self.first_bad.copy_(torch.where(bad & (self.first_bad < 0), self.step_index, self.first_bad))
            self.loss_sum.add_(per_run.detach() * batch)
            self.correct.add_(hits)
            self.cursor.add_(batch)
            self.step_index.add_(1)

    def loss_value(self, k: int, logits: torch.Tensor, targets: torch.Tensor, config: dict) -> torch.Tensor:
        """Run k's loss, held to the contract `lossnb losses check` tries: a differentiable floating-point
        scalar, and no exception (nor exit) from inside the loss; else LossFailed naming the loss and where."""
        try:
            value = self.losses[k](logits, targets, config)
        except (Exception, SystemExit) as err:  # a loss file is user code: its exit is its failure, not ours
            raise LossFailed(self.cfgs[k], config, self.host_step, f"{type(err).__name__}: {err}") from None
        if not (torch.is_tensor(value) and value.dim() == 0 and value.is_floating_point() and value.requires_grad):
            what = f"a {value.dtype} tensor of shape {tuple(value.shape)}" if torch.is_tensor(value) else \
                f"{type(value).__name__} {value!r}"[:80]
            detached = " without a gradient" if torch.is_tensor(value) and not value.requires_grad else ""
            raise LossFailed(self.cfgs[k], config, self.host_step,
                             f"returned {what}{detached}, not a differentiable floating-point scalar")
        self.host_step += 1 if k == self.k - 1 else 0
        return value

    def train_epoch(self, epoch: int, progress: bool) -> list[dict]:
        """One epoch for every run; returns each run's training metrics. Syncs with the host once, at the end."""
        n = len(self.train_y)
        lr = cosine_lr(self.cfgs[0].lr, epoch, self.cfgs[0].epochs)
        self.sgd.set_lr(lr)
        self.plan.copy_(EpochPlan.stack([EpochPlan.draw(c.seed, epoch, n, self.device, self.data.flip)
                                         for c in self.cfgs]))
        for t in (self.cursor, self.step_index, self.loss_sum, self.correct):
            t.zero_()
        self.host_step = 0  # for messages only (a graph replays steps without Python)
        self.first_bad.fill_(-1)
        torch.manual_seed(dropout_seed([c.seed for c in self.cfgs], epoch))
        config = {"num_classes": self.data.num_classes, "epoch": epoch, "total_epochs": self.cfgs[0].epochs}
        self.pack.train()
        sizes = self.batches()
        steps = self._graphed_steps(sizes, config) if self.graphs else (lambda size: self.step(size, config))
        # the per-step bar only where someone watches (a log file keeps the per-epoch bar)
        for size in tqdm(sizes, desc=f"epoch {epoch + 1}", leave=False, disable=not (progress and sys.stderr.isatty())):
            steps(size)
        seen = sum(sizes)
        loss_sum, correct = self.loss_sum.tolist(), self.correct.tolist()
        return [{"lr": lr, "train_loss": loss_sum[k] / seen, "train_acc": correct[k] / seen} for k in range(self.k)]

    def _graphed_steps(self, sizes: list[int], config: dict):
        """This epoch's graphs; if capture fails on this machine (a loss that syncs with the host, a driver
        limit), the pack says why and trains on eagerly, and its records say it ran without graphs."""
        try:
            return self.graphs.epoch(sizes, config)
        except RuntimeError as err:
            torch.cuda.synchronize(self.device)
            print(f"CUDA graph capture failed ({str(err).splitlines()[0][:200]}); training on without graphs",
                  file=sys.stderr)
            self.graphs = None
            return lambda size: self.step(size, config)

    # ------------------------------------------------------------ evaluation
    def test_logits(self) -> torch.Tensor:
        """(K, N_test, classes) float32: every run on the same test images (replayed from a graph on CUDA)."""
        if self.graphs and self.graphs.eval_ok:
            try:
                return self.graphs.test_logits()
            except RuntimeError as err:  # as for training: say why, evaluate eagerly from now on
                torch.cuda.synchronize(self.device)
                print(f"CUDA graph capture of the evaluation failed ({str(err).splitlines()[0][:200]})",
                      file=sys.stderr)
                self.graphs.eval_ok = False
        return self.eager_test_logits()

    @torch.no_grad()
    def eager_test_logits(self) -> torch.Tensor:
        self.pack.eval()
        batch = max(1, EVAL_IMAGES_PER_BATCH // self.k)
        out = []
        for start in range(0, len(self.test_y), batch):
            x = normalize(self.test_x[start:start + batch], self.mean, self.std).repeat(1, self.k, 1, 1)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                out.append(self.forward(x).float())
        self.pack.train()
        return torch.cat(out, dim=1)

    # ------------------------------------------------------------ a dead member
    @torch.no_grad()
    def freeze(self, k: int) -> None:
        """Zero run k's parameters, momentum and BN statistics and its loss's weight: its block then computes
        finite numbers, its gradient is zero (weight decay of zero is zero), and its record is already written."""
        self.alive[k] = False
        self.loss_weight[k] = 0.0
        for name, t in list(self.pack.net.named_parameters()) + list(self.pack.net.named_buffers()):
            if t.dim() and t.is_floating_point():
                self.pack.member(name, t, k).fill_(1.0 if name.endswith("running_var") else 0.0)
        for name, buf in zip(self.names, self.sgd.buffers):
            self.pack.member(name, buf, k).zero_()

    # ------------------------------------------------------------ checkpoints, one per run
    def member_state(self, k: int) -> dict:
        return {"epoch": len(self.rows[k]), "model": self.pack.member_state(k),
                "momentum": {n: self.pack.member(n, b, k).clone() for n, b in zip(self.names, self.sgd.buffers)},
                "loss_state": self.losses[k].state_dict(), "rows": self.rows[k], "wall_seconds": self.wall_seconds,
                "reliability": self.reliability[k]}

    def restore_member(self, k: int, state: dict) -> None:
        self.pack.load_member_state(k, state["model"])
        with torch.no_grad():
            for name, buf in zip(self.names, self.sgd.buffers):
                target, saved = self.pack.member(name, buf, k), state["momentum"][name]
                if tuple(saved.shape) != tuple(target.shape):
                    raise ValueError(f"momentum of {name} has shape {tuple(saved.shape)}, the model's is "
                                     f"{tuple(target.shape)}")
                target.copy_(saved)
        # checkpoints load to the CPU; a stateful loss's tensors must meet the logits on the device
        self.losses[k].load_state_dict({key: v.to(self.device) if torch.is_tensor(v) else v
                                        for key, v in state["loss_state"].items()})
        self.rows[k], self.reliability[k] = list(state["rows"]), state.get("reliability")
        self.wall_seconds = state["wall_seconds"]


def single_channel(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) where every channel of ``x`` equals the first (a view), else ``x`` itself."""
    first = x[:, :1]
    return first if x.shape[1] > 1 and torch.equal(first.expand_as(x), x) else x


def dropout_seed(seeds: list[int], epoch: int) -> int:
    """The global RNG (dropout masks) per epoch, from the runs' seeds: resume stays exact. In a pack the masks
    of a run depend on its pack-mates' seeds too; their distribution is the solo run's."""
    return (hash(tuple(seeds)) * 1_000_003 + epoch) % (2 ** 63)


# ---------------------------------------------------------------- records
def _summary(run: PackRun, k: int, status: str, diverged_at=None) -> dict:
    rows, cfg = run.rows[k], run.cfgs[k]
    summary = {"status": status, "epochs_completed": len(rows), "wall_seconds": run.wall_seconds,
               "protocol": cfg.protocol, "budget": cfg.budget_tag(), "eval_split": run.data.eval_split}
    if rows:
        best = max(rows, key=lambda r: r["test_acc"])
        final = rows[-1]
        summary.update(best_test_acc=best["test_acc"], best_epoch=best["epoch"], final_test_acc=final["test_acc"],
                       final_test_loss=final["test_loss"], final_test_ece=final["test_ece"],
                       final_test_macro_f1=final["test_macro_f1"], final_reliability=run.reliability[k])
    else:
        summary.update({key: None for key in records.SUMMARY_FIELDS if key not in summary})
    if diverged_at:
        summary["diverged_at"] = {"epoch": diverged_at[0], "step": diverged_at[1]}
    return summary


def _config_record(run: PackRun, k: int) -> dict:
    cfg, data = run.cfgs[k], run.data
    crop = "RandomCrop(32, padding=4)" + (" + RandomHorizontalFlip" if data.flip else " (no flip for this data set)")
    return {
        "run": cfg.to_dict(), "run_path": str(cfg.run_path()),
        "follows_200_epoch_protocol": cfg.follows_protocol(),
        "resolved": {**run.execution, "cuda_graphs": run.graphs is not None},
        "packing": {"pack_size": run.k, "member": k, "pack": [str(c.run_path()) for c in run.cfgs],
                    "note": "trained as one packed model with the runs listed; wall and epoch seconds are the "
                            "pack's, train_images_per_second is this run's images per second"},
        "loss": losses.describe(cfg.loss),
        "data": {"source": data.source, "checksums": data.checksums, "train_size": len(data.train_y),
                 "eval_size": len(data.test_y), "eval_split": data.eval_split, "mean": data.mean, "std": data.std,
                 "image_prep": data.prep, "augmentation": crop + ", batched on device"},
        "environment": describe_environment(run.device),
    }


# ---------------------------------------------------------------- the entry points
def train(cfg: RunConfig, **kwargs) -> dict:
    """Train one run and write its record; returns its summary. See train_pack."""
    summaries = train_pack([cfg], **kwargs)
    if summaries[0] is None:
        files = RunFiles.of(cfg, kwargs.get("runs_dir", "runs"))
        raise RunBusy(f"{cfg.run_path()} is being trained by another process (pid {holder_pid(files.lock)})")
    return summaries[0]


def train_pack(cfgs: list[RunConfig], *, runs_dir: str | Path = "runs", checkpoint_dir: str | Path | None = None,
               data_root: str | Path | None = None, download: bool = False, resume: bool = False,
               force: bool = False, progress: bool = True, data: ImageData | None = None,
               replace_broken: bool = False) -> list[dict | None]:
    """Train K runs of one architecture and data set as one pack; returns each run's summary (None for a run
    another process holds).

    A finished run is left alone (its summary returned) unless ``force``; a broken record (see
    records.record_problem) is an error unless ``force`` or ``replace_broken``, which retrain it. A run with a checkpoint continues
    from it with ``resume`` and is refused without it, so that no work is lost by accident. A member whose
    loss turns non-finite is recorded 'diverged' (with epoch and step) and frozen; the others go on.
    """
    _check_packable(cfgs)
    files = [RunFiles.of(c, runs_dir, checkpoint_dir) for c in cfgs]
    for f in files:
        f.check_same_file_system()
    with run_locks(files) as held:
        summaries: list[dict | None] = [None] * len(cfgs)
        todo = []
        for i, (cfg, f, mine) in enumerate(zip(cfgs, files, held)):
            if not mine:
                continue
            problem = records.record_problem(f.record, str(cfg.run_path())) if f.record.exists() else None
            if f.record.exists() and not problem and not force:
                records.check_identity(f.record, cfg)
                summaries[i] = records.read_summary(f.record)
                continue
            if problem and not (force or replace_broken):  # never overwritten without being asked
                raise records.RecordBroken(f"{problem}; retrain the run with --force (or a grid with "
                                           "--retrain-broken), or move the record away")
            todo.append(i)
        if todo:
            done = _train_members([cfgs[i] for i in todo], [files[i] for i in todo], data_root, download, resume,
                                  force, progress, data)
            for i, summary in zip(todo, done):
                summaries[i] = summary
        return summaries


def _check_packable(cfgs: list[RunConfig]) -> None:
    if not cfgs:
        raise ValueError("no run to train")
    for c in cfgs[1:]:
        if c.pack_key() != cfgs[0].pack_key():
            diff = [k for k, v in c.to_dict().items() if k not in ("loss", "loss_params", "seed")
                    and v != getattr(cfgs[0], k)]
            raise ValueError(f"{c.run_path()} cannot share a pack with {cfgs[0].run_path()}: {', '.join(diff)} differ")
    paths = [str(c.run_path()) for c in cfgs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a pack names the same run twice: {paths}")


def _train_members(cfgs, files, data_root, download, resume, force, progress, data) -> list[dict]:
    for f in files:
        if force:
            f.prune_checkpoints(keep_from=10**9)
        elif f.checkpoint_epochs() and not resume:
            raise RunExists(f"{f.record} has a checkpoint (in {f.checkpoints}); pass --resume to continue it or "
                            "--force to restart")
    epoch, starts, dropped = resume_point(files) if resume else (0, [None] * len(files), [])
    if dropped:  # their checkpoints are gone: they start afresh in a later pack, the others go on now
        keep = [k for k in range(len(cfgs)) if k not in dropped]
        done = _train_members([cfgs[k] for k in keep], [files[k] for k in keep], data_root, download, resume,
                              force, progress, data)
        summaries = [None] * len(cfgs)
        for k, summary in zip(keep, done):
            summaries[k] = summary
        return summaries
    device = resolve_device(cfgs[0].device)
    cfg = cfgs[0]
    data = data or load_dataset(cfg.dataset, data_root, download=download, train_subset=cfg.train_subset,
                                val_size=cfg.val_size, prep=cfg.image_prep)
    run = PackRun(cfgs, data, device)
    for k, state in enumerate(starts):
        if state:
            try:
                run.restore_member(k, state)
            except (ValueError, RuntimeError) as err:  # a checkpoint of another model or shape
                raise ValueError(f"checkpoint {files[k].checkpoint(epoch)} does not fit {cfgs[k].run_path()} "
                                 f"({str(err).splitlines()[0][:200]}); delete it or pass --force to restart the "
                                 "run") from None
    if epoch:
        print(f"resuming {len(cfgs)} run(s) from their checkpoints after epoch {epoch}", file=sys.stderr)
    for k, f in enumerate(files):
        records.start_staging(f.staging, _config_record(run, k), run.rows[k])
        if run.losses[k].spec.source_file:  # the code behind the numbers, in the record
            losses.files.copy_verified(run.losses[k].spec.source_file, f.staging / LOSS_FILE_COPY)
    try:
        return _epochs(run, files, progress)
    except LossFailed as err:  # the failing run leaves nothing behind; its pack-mates keep their checkpoints
        failed = files[cfgs.index(err.cfg)]
        shutil.rmtree(failed.staging, ignore_errors=True)
        failed.prune_checkpoints(keep_from=10**9)
        raise


def resume_point(files: list[RunFiles]) -> tuple[int, list[dict | None], list[int]]:
    """(epoch, each member's state at it, members dropped). The latest epoch at which every member's
    checkpoint loads: a damaged latest one falls back to the member's previous kept epoch (for the whole pack,
    whose members move together). A member none of whose checkpoints loads is dropped, named, and its
    checkpoints removed, so that it starts afresh later and its pack-mates go on; a run alone is refused."""
    loaded: list[dict[int, dict]] = []
    for f in files:
        states = {}
        for epoch in sorted(f.checkpoint_epochs(), reverse=True):
            try:
                states[epoch] = records.load_checkpoint(f.checkpoint(epoch))
            except ValueError as err:
                print(f"{str(err).split(';')[0]}: falling back to an earlier checkpoint", file=sys.stderr)
        loaded.append(states)
    dropped = [k for k, f in enumerate(files) if f.checkpoint_epochs() and not loaded[k]]
    if dropped and len(dropped) == len(files):
        raise ValueError(f"no checkpoint of {files[0].record} can be read (in {files[0].checkpoints}); delete them "
                         "or pass --force to restart the run")
    for k in dropped:
        print(f"no checkpoint of {files[k].record} can be read: removed; the run starts afresh next time",
              file=sys.stderr)
        files[k].prune_checkpoints(keep_from=10**9)
    if dropped:
        return 0, [], dropped
    epoch = common_checkpoint_epoch(files, [set(states) for states in loaded])
    return epoch, [loaded[k].get(epoch) if epoch else None for k in range(len(files))], []


def common_checkpoint_epoch(files: list[RunFiles], usable: list[set[int]] | None = None) -> int:
    """The latest epoch every run of the pack has a checkpoint of (0: from the start). A pack killed while
    writing its members' checkpoints resumes one epoch back; anything more would discard work, and is refused."""
    have = [epochs | {0} for epochs in (usable or [f.checkpoint_epochs() for f in files])]
    common = max(set.intersection(*have))
    latest = max(max(h) for h in have)
    if common < latest - 1:
        raise ValueError(f"these runs cannot resume as one pack: they have no checkpoint epoch in common near "
                         f"their latest ({latest}); train them in packs of runs at the same epoch")
    return common


def _epochs(run: PackRun, files: list[RunFiles], progress: bool) -> list[dict]:
    summaries: list[dict | None] = [None] * run.k
    first, total = len(run.rows[0]), run.cfgs[0].epochs
    label = str(run.cfgs[0].run_path()) if run.k == 1 else f"pack of {run.k}: {run.cfgs[0].run_path().parts[1]}"
    bar = tqdm(range(first, total), desc=label, initial=first, total=total, disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        train_metrics = run.train_epoch(epoch, progress)
        first_bad = run.first_bad.tolist()
        logits = run.test_logits()
        seconds = time.perf_counter() - started
        run.wall_seconds += seconds
        for k in range(run.k):
            if not run.alive[k]:
                continue
            if first_bad[k] >= 0:
                summaries[k] = _finish(run, k, files[k], "diverged", (epoch, first_bad[k]))
                run.freeze(k)
                continue
            run.reliability[k] = reliability_bins(logits[k], run.test_y)
            row = {"epoch": epoch, **train_metrics[k], **evaluation_metrics(logits[k], run.test_y,
                                                                             run.data.num_classes),
                   "epoch_seconds": seconds, "train_images_per_second": len(run.train_y) / seconds}
            run.rows[k].append(row)
            records.write_metrics(files[k].staging / "metrics.csv", run.rows[k])
            records.atomic_torch_save(run.member_state(k), files[k].checkpoint(epoch + 1))
        for k in range(run.k):  # only once every member has this epoch's: the two last stay
            files[k].prune_checkpoints(keep_from=epoch)
        alive = [k for k in range(run.k) if run.alive[k]]
        if not alive:
            break
        best = max(max(r["test_acc"] for r in run.rows[k]) for k in alive)
        bar.set_postfix(best_test_acc=f"{best:.4f}", running=len(alive))
    for k in range(run.k):
        if summaries[k] is None:
            summaries[k] = _finish(run, k, files[k], "complete")
    return summaries


def _finish(run: PackRun, k: int, f: RunFiles, status: str, diverged_at=None) -> dict:
    summary = _summary(run, k, status, diverged_at)
    records.write_json(f.staging / "config.json", _config_record(run, k))  # as it ended (graphs may have gone)
    records.write_json(f.staging / "summary.json", summary)
    records.publish_dir(f.staging, f.record)
    return summary
