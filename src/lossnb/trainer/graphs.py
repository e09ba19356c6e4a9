"""The training step replayed from CUDA graphs: no launch-bound step, no host sync inside an epoch."""
from __future__ import annotations

from typing import Callable

import torch

from .. import losses
from .config import RunConfig


def use_cuda_graphs(cfgs: list[RunConfig], device: torch.device) -> bool:
    setting = cfgs[0].cuda_graphs
    stateless = not any(losses.get(c.loss, **c.loss_params).spec.stateful for c in cfgs)
    if setting == "on" and (device.type != "cuda" or not stateless or cfgs[0].compile):
        raise ValueError("cuda_graphs=on needs a CUDA device, no torch.compile and stateless losses "
                         "(a stateful loss changes its state in Python between epochs)")
    return setting == "on" or (setting == "auto" and device.type == "cuda" and stateless and not cfgs[0].compile)


class GraphedSteps:
    """The training step captured as CUDA graphs, one per batch size (full, last partial), per epoch.

    Captured anew each epoch because a loss may read config["epoch"] as a Python number; capturing records
    kernels without running them, so it changes no state. Warm-up steps (needed once, before the first
    capture) run on a copy-and-restore of every parameter, buffer, momentum and counter: they leave no trace
    in BatchNorm statistics or optimizer state.
    """

    def __init__(self, step: Callable[[int, dict], None], evaluate: Callable[[], torch.Tensor],
                 state: Callable[[], list[torch.Tensor]], device: torch.device):
        """``step(batch_size, config)`` trains one batch, ``evaluate()`` returns the test logits, ``state()``
        every tensor a step changes (restored after the warm-up); the pack owns them, this captures them."""
        self.step, self.evaluate, self.state, self.device = step, evaluate, state, device
        self.warmed = False
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.eval_graph: torch.cuda.CUDAGraph | None = None
        self.eval_out: torch.Tensor | None = None
        self.eval_ok = True

    def _warm_up(self, sizes: list[int], config: dict) -> None:
        saved = [t.clone() for t in self.state()]
        # warm-up steps draw dropout masks: the generator goes back too, so that this epoch's masks are those of
        # a run that warmed up at another epoch (a resumed run warms up at its first epoch after the resume)
        rng = torch.cuda.get_rng_state(self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for size in sorted(set(sizes)) * 3:
                self.step(size, config)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, s in zip(self.state(), saved):
                t.copy_(s)
        torch.cuda.set_rng_state(rng, self.device)
        self.warmed = True

    def epoch(self, sizes: list[int], config: dict):
        if not self.warmed:
            self._warm_up(sizes, config)
        self.graphs = {}  # the last epoch's graphs and their memory go
        pool = None
        for size in sorted(set(sizes), reverse=True):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):  # replayed one after another: one memory pool is safe
                self.step(size, config)
            pool = graph.pool()
            self.graphs[size] = graph
        return lambda size: self.graphs[size].replay()

    def test_logits(self) -> torch.Tensor:
        """The whole evaluation as one graph, captured once: the test images never change, and BatchNorm's
        running statistics are read where training updates them in place."""
        if self.eval_graph is None:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.eval_out = self.evaluate()  # warm-up; evaluation changes no state
            torch.cuda.current_stream().wait_stream(side)
            self.eval_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.eval_graph):
                self.eval_out.copy_(self.evaluate())
        self.eval_graph.replay()
        return self.eval_out
