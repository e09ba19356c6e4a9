"""lossnb's second design: self-shaped label smoothing.

From the results and the gradient analysis: label smoothing led the 20-epoch study of the report's ConvNet, and on the
gradient slice what distinguishes it is a bounded target (p_t -> 1 - eps) *and* a uniform target for the
wrong classes, which flattens which wrong classes the model finds alike. This loss keeps the first and
drops the second: the eps of non-target mass is spread over the wrong classes in proportion to the model's
own (detached) non-target probabilities, so only the total wrong-class mass is bounded, not its shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import upcast
from .domains import unit_halfopen
from .registry import Param, register


@register(
    "selfshaped_ls",
    paper="lossnb (this project): self-shaped label smoothing, designed from the gradient analysis and the "
          "20-epoch results on the report's ConvNet",
    formula=r"-(1-\varepsilon)\log p_t - \varepsilon \sum_{k\neq t} r_k \log p_k,\quad "
            r"r_k = \operatorname{sg}\!\big[p_k / (1-p_t)\big]",
    summary="Label smoothing whose eps of wrong-class mass follows the model's own (stop-gradient) wrong-class "
            "distribution instead of the uniform one: the optimum bounds p_t at 1 - eps and leaves the shape "
            "of the wrong classes free. eps = 0 is cross-entropy.",
    params={"eps": Param(0.1, unit_halfopen, "0 <= eps < 1", "wrong-class mass")},
)
def selfshaped_ls(logits, targets, config, eps=0.1):
    z = upcast(logits)
    t = targets[:, None]
    # the loss is cross-entropy against the (stop-gradient) soft target (1-eps) e_t + eps r, so F.cross_entropy
    # with probability targets computes it: half the aten ops of the written sum, and at batch 128 a loss's
    # time is per-op dispatch. r_k = p_k / (1 - p_t) is a softmax of the wrong logits alone (no division by
    # a vanishing 1 - p_t).
    with torch.no_grad():
        target = torch.softmax(z.scatter(1, t, float("-inf")), dim=1).mul_(eps).scatter_(1, t, 1 - eps)
    return F.cross_entropy(z, target)
