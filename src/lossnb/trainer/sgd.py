"""SGD with momentum and weight decay, torch.optim.SGD's update exactly, for a step captured in a CUDA graph.

    d = g + wd * p;  buf = momentum * buf + d;  d = d + momentum * buf if nesterov else buf;  p -= lr * d

Written out (a few foreach ops) because torch.optim.SGD's foreach path reads a tensor learning rate as a
host number (a sync a graph cannot hold) and starts its momentum buffers on the first step (a graph would
capture that first step only). Here the buffers start at zero, which gives torch's first step (buf = d)
exactly, and lr is a device tensor set between epochs.
"""
from __future__ import annotations

import torch


class SGD:
    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float, weight_decay: float,
                 nesterov: bool):
        self.params = list(params)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.lr = torch.tensor(float(lr), device=self.params[0].device)
        self.buffers = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        d = list(grads)
        if self.weight_decay:
            d = torch._foreach_add(d, self.params, alpha=self.weight_decay)
        if self.momentum:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, d)
            d = torch._foreach_add(d, self.buffers, alpha=self.momentum) if self.nesterov else self.buffers
        torch._foreach_sub_(self.params, torch._foreach_mul(d, self.lr))

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)
