"""lossnb's own loss: soft-capped cross-entropy.

Read off the gradient analysis: every softmax loss here has a target-logit gradient
w(p_t) * (p_t - 1) with non-target gradients w * p_k, i.e. it is cross-entropy with a
per-sample weight w. Cross-entropy (w = 1) never stops widening the logit gap; label
smoothing bounds the gap but pulls every wrong class towards the same eps/C, erasing
which wrong classes are alike; focal loss bounds nothing and already damps samples the
model gets only half right. Soft-capped CE keeps cross-entropy's non-target direction and
scales its gradient by w = 1 / (1 + (p_t / p_cap)^beta): close to 1 while p_t is well below a
cap p_cap, 1/2 at the cap, falling towards sigma(beta log p_cap) above it, so samples the
model already knows push the gap less. It is not cross-entropy below the cap, only close to it
(at beta 10 and p_cap 0.97 the weight at p_t = 0.9 is about 0.68).
"""
from __future__ import annotations

import math

import torch.nn.functional as F

from .common import upcast
from .domains import in_range, positive
from .registry import Param, register


@register(
    "capped_ce",
    paper="lossnb (this project): soft-capped cross-entropy, designed from the gradient analysis chapter",
    formula=r"\tfrac{1}{\beta}\,\operatorname{softplus}\!\big(\beta\,(-\log p_t + \log p_{\mathrm{cap}})\big),"
            r"\quad w = \sigma\big(\beta\,(-\log p_t + \log p_{\mathrm{cap}})\big)",
    summary="Cross-entropy times a per-sample weight w = 1 / (1 + (p_t / p_cap)^beta): near 1 for p_t well "
            "below p_cap, 1/2 at p_cap, falling to sigma(beta log p_cap) as p_t -> 1; beta -> inf is "
            "max(0, CE + log p_cap), p_cap -> 1 and beta -> inf is cross-entropy.",
    params={
        "p_cap": Param(0.9, in_range(0.0, 1.0, lo_open=True, hi_open=True), "0 < p_cap < 1",
                       "target probability where the weight is 1/2"),
        "sharpness": Param(10.0, positive, "sharpness > 0", "beta: how fast the weight falls around p_cap"),
    },
)
def capped_ce(logits, targets, config, p_cap=0.9, sharpness=10.0):
    z = upcast(logits)
    ce = F.cross_entropy(z, targets, reduction="none")
    return (F.softplus(sharpness * (ce + math.log(p_cap))) / sharpness).mean()
