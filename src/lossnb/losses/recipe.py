"""The recipe that published agent designs for the benchmark's own task converge on.

MLS-Bench publishes five designs for its cv-classification-loss task (repository Imbernoulli/mls-bench-website,
public/data/annotations/cv-classification-loss.json). Each is label smoothing whose epsilon is ramped over the run,
plus a Poly-1 term, plus a small logit penalty or margin. This is that recipe as one loss, with the weights of the
design that is exactly it ("Adaptive smooth-poly with logit penalty"): epsilon from 0.05 to 0.15 in proportion to
the epoch, Poly-1 weight 1 (that design's weight for 50 classes or fewer; FashionMNIST has 10), and 1e-3 times the
mean squared logit norm.
"""
from __future__ import annotations

import torch.nn.functional as F

from .common import upcast
from .domains import at_least, nonneg, unit_halfopen
from .registry import Param, register


@register(
    "smooth_poly",
    paper="MLS-Bench cv-classification-loss, the recipe of its published agent designs (Imbernoulli/"
          "mls-bench-website, public/data/annotations/cv-classification-loss.json), weights of its "
          "'Adaptive smooth-poly with logit penalty'",
    formula=r"-\sum_k q_k \log p_k + w\,(1-p_t) + \lambda\,\lVert z\rVert_2^2,\quad q = (1-\varepsilon_e)\,e_t"
            r" + \varepsilon_e/C,\quad \varepsilon_e = \varepsilon_0 + (\varepsilon_1-\varepsilon_0)\,e/E",
    summary="Label smoothing with epsilon ramped from eps_start to eps_end over the run (epoch / total_epochs), "
            "plus a Poly-1 term of weight poly and logit_penalty times the mean squared logit norm. eps 0, "
            "poly 0 and penalty 0 is cross-entropy.",
    params={
        "eps_start": Param(0.05, unit_halfopen, "0 <= eps_start < 1", "smoothing at the first epoch"),
        "eps_end": Param(0.15, unit_halfopen, "0 <= eps_end < 1", "smoothing the ramp reaches at epoch E"),
        "poly": Param(1.0, at_least(-1.0), "poly >= -1", "weight of (1 - p_t), Poly-1's epsilon"),
        "logit_penalty": Param(1e-3, nonneg, "logit_penalty >= 0", "weight of the mean squared logit norm"),
    },
)
def smooth_poly(logits, targets, config, eps_start=0.05, eps_end=0.15, poly=1.0, logit_penalty=1e-3):
    z = upcast(logits)
    eps = eps_start + (eps_end - eps_start) * config["epoch"] / config["total_epochs"]
    p_t = F.softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (F.cross_entropy(z, targets, label_smoothing=eps) + poly * (1 - p_t).mean()
            + logit_penalty * z.pow(2).sum(dim=1).mean())
