"""A pack's state and its step: K runs of one architecture and data set held as one packed model (K = 1 is
a solo run), the benchmark's step (crop and flip on the device, forward, loss, backward, SGD) with no host sync
inside an epoch, evaluation, and freezing a member that diverged. On CUDA the step is replayed from graphs."""
from __future__ import annotations

import contextlib
import itertools
import math
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from .. import losses
from ..data import CropWindows, EpochPlan, ImageData, normalize, pad_images
from ..data.augment import PADDING, pack_layout
from ..models import get_model
from .config import RunConfig
from .environment import run_execution
from .graphs import GraphedSteps, use_cuda_graphs
from .pack import Pack
from .sgd import SGD

# test images x runs per evaluation batch: large on a GPU; on a CPU small enough that a batch's activations stay in
# cache (a pack of BatchNorm ConvNets evaluates markedly faster at 512 than at 2048 on a 2-core CPU, same logits)
EVAL_IMAGES_PER_BATCH = {"cuda": 2048, "cpu": 512}


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

    def __init__(self, cfgs: list[RunConfig], data: ImageData, device: torch.device, execution: dict | None = None):
        """``execution``: the precision and memory format the runs resume in (as they began); else resolved."""
        self.cfgs, self.data, self.device, self.k = cfgs, data, device, len(cfgs)
        cfg = cfgs[0]
        self.execution = execution or run_execution(cfg, data, device, pack=self.k)
        self.precision, self.channels_last = self.execution["precision"], self.execution["channels_last"]
        self.first_conv = self.execution.get("first_conv", "grouped")  # begun before it had two forms: grouped
        form = ", block-diagonal first convolution" if self.k > 1 and self.first_conv == "block_diagonal" else ""
        print(f"{self.precision}, {'channels_last' if self.channels_last else 'NCHW'}{form} "
              f"({self.execution['chosen_by']}), {torch.get_num_threads()} thread(s) on {device}", file=sys.stderr)
        models = []
        for c in cfgs:  # each run's own seed's initialisation, as its solo run
            torch.manual_seed(c.seed)
            models.append(get_model(c.arch, data.num_classes, data.in_channels, c.head))
        self.pack = Pack(models, self.first_conv).to(device)
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
        # cropped as one channel, repeated to the model's channels by pack_layout: the same numbers at a third of
        # the work.
        padded = pad_images(single_channel(data.train_x)).to(device)
        self.in_channels = data.in_channels
        c = padded.shape[1]
        self.train_crops = CropWindows(normalize(padded, self.mean[:c], self.std[:c]), channels=self.in_channels,
                                       channels_last=self.channels_last)
        test = single_channel(data.test_x).to(device)  # normalised once, as the training images: each epoch reads them
        self.test_images = normalize(test, self.mean[:test.shape[1]], self.std[:test.shape[1]])
        self.train_y, self.test_y = data.train_y.to(device), data.test_y.to(device)
        n = len(self.train_y)
        # the plan as the step reads it, set each epoch: each position's crop per run, and its target
        self.offsets = torch.zeros((n, self.k), dtype=torch.long, device=device)
        self.epoch_y = torch.zeros((self.k, n), dtype=self.train_y.dtype, device=device)
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
        self.graphs = (GraphedSteps(self.step, self.eager_test_logits, self.state_tensors, device)
                       if use_cuda_graphs(cfgs, device) else None)
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
    def step(self, batch: int, config: dict, start: int | None = None) -> None:
        """One batch for every run. ``start``: its first position in the epoch, where the host knows it (then the
        plan is sliced); None inside a CUDA graph, whose replays read it from the device's cursor."""
        if start is None:
            position = self.cursor + torch.arange(batch, device=self.device)
            offsets, y = self.offsets.index_select(0, position), self.epoch_y.index_select(1, position)
        else:
            offsets, y = self.offsets[start:start + batch], self.epoch_y[:, start:start + batch]
        x = self.train_crops.batch(offsets)  # (B, K*C, H, W) normalised, run k's images in channel block k
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
        versions = (logits._version, targets._version)  # bumped by any in-place write, with no host sync
        try:
            value = self.losses[k](logits, targets, config)
        except (Exception, SystemExit) as err:  # a loss file is user code: its exit is its failure, not ours
            raise LossFailed(self.cfgs[k], config, self.host_step, f"{type(err).__name__}: {err}") from None
        if (logits._version, targets._version) != versions:
            raise LossFailed(self.cfgs[k], config, self.host_step, "it wrote into the logits or targets it was "
                             "given, which the trainer measures with (compute on a copy: logits * 2, not mul_)")
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
        plan = EpochPlan.stack([EpochPlan.draw(c.seed, epoch, n, self.device, self.data.flip) for c in self.cfgs])
        # in place, as every tensor below: a captured CUDA graph reads them
        self.offsets.copy_(self.train_crops.offsets(plan.order, plan.dy, plan.dx, plan.flip).t())
        self.epoch_y.copy_(self.train_y[plan.order])
        for t in (self.cursor, self.step_index, self.loss_sum, self.correct):
            t.zero_()
        self.host_step = 0  # for messages only (a graph replays steps without Python)
        self.first_bad.fill_(-1)
        torch.manual_seed(dropout_seed([c.seed for c in self.cfgs], epoch))
        config = {"num_classes": self.data.num_classes, "epoch": epoch, "total_epochs": self.cfgs[0].epochs}
        self.pack.train()
        sizes = self.batches()
        steps = self._graphed_steps(sizes, config) if self.graphs else self._eager_steps(config)
        # the per-step bar only where someone watches (a log file keeps the per-epoch bar)
        starts = itertools.accumulate(sizes, initial=0)
        for size, start in tqdm(zip(sizes, starts), desc=f"epoch {epoch + 1}", total=len(sizes), leave=False,
                                disable=not (progress and sys.stderr.isatty())):
            steps(size, start)
        seen = sum(sizes)
        loss_sum, correct = self.loss_sum.tolist(), self.correct.tolist()
        return [{"lr": lr, "train_loss": loss_sum[k] / seen, "train_acc": correct[k] / seen} for k in range(self.k)]

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a training step changes: weights, BatchNorm buffers, momentum and the step's counters."""
        return [*self.params, *self.pack.buffers(), *self.sgd.buffers, self.cursor, self.step_index, self.loss_sum,
                self.correct, self.first_bad]

    def _graphed_steps(self, sizes: list[int], config: dict):
        """This epoch's graphs; if capture fails on this machine (a loss that syncs with the host, a driver
        limit), the pack says why and trains on eagerly, and its records say it ran without graphs."""
        try:
            replay = self.graphs.epoch(sizes, config)
            return lambda size, start: replay(size)
        except RuntimeError as err:
            torch.cuda.synchronize(self.device)
            print(f"CUDA graph capture failed ({str(err).splitlines()[0][:200]}); training on without graphs",
                  file=sys.stderr)
            self.graphs = None
            return self._eager_steps(config)

    def _eager_steps(self, config: dict):
        return lambda size, start: self.step(size, config, start)

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
        return self._eval_logits(lambda s, e: self.test_images[s:e], len(self.test_y))

    def fit_metrics(self) -> list[dict]:
        """Each run's accuracy and cross-entropy on its own training images as they are (no crop, no flip), in
        evaluation mode: with the evaluation split's accuracy beside it, whether a network fits its training
        data beyond what it generalises (the benchmark's regime) or underfits. Once, as a run ends."""
        p = PADDING  # the padded, normalised training images' centres are the images themselves
        logits = self._eval_logits(lambda s, e: self.train_crops.images[s:e, :, p:-p, p:-p], len(self.train_y))
        return [{"train_eval_acc": (logits[k].argmax(dim=1) == self.train_y).float().mean().item(),
                 "train_eval_loss": F.cross_entropy(logits[k], self.train_y).item()} for k in range(self.k)]

    @torch.no_grad()
    def _eval_logits(self, images, n: int) -> torch.Tensor:
        """(K, n, classes) float32: every run on images(start, end), normalised, one or the model's channels."""
        self.pack.eval()
        batch = max(1, EVAL_IMAGES_PER_BATCH.get(self.device.type, 2048) // self.k)
        out = []
        for start in range(0, n, batch):
            x = images(start, start + batch)
            x = pack_layout(x[:, None].expand(x.shape[0], self.k, *x.shape[1:]), self.in_channels, self.channels_last)
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
                "reliability": self.reliability[k], "execution": self.execution}

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
