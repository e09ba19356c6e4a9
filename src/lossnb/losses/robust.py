"""Bounded and noise-robust losses: MAE, generalized and symmetric cross-entropy, bi-tempered logistic.

Pure functions, torch only, float32 at least, mean over the batch.
"""
import math

import torch
import torch.nn.functional as F

from .domains import in_range, nonneg, positive_int
from .common import upcast
from .registry import Param, register



@register(
    "mae",
    paper="Ghosh et al., Robust Loss Functions under Label Noise for Deep Neural Networks, AAAI 2017",
    formula=r"\sum_k |p_k - e_{t,k}| = 2(1 - p_t)",
    summary="L1 distance between the softmax and the one-hot target, summed over classes "
            "(nn.L1Loss(softmax, one_hot) with its default mean reduction is this divided by C).",
)
def mae(logits, targets, config):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-2.0 * torch.expm1(logp_t)).mean()


@register(
    "gce",
    paper="Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels, NeurIPS 2018",
    formula=r"\frac{1 - p_t^{\,q}}{q}",
    summary="Box-Cox transform of p_t: cross-entropy as q -> 0, MAE/2 at q = 1.",
    params={"q": Param(0.7, in_range(0.0, 1.0, lo_open=True), "0 < q <= 1")},
)
def gce(logits, targets, config, q=0.7):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-torch.expm1(q * logp_t) / q).mean()


@register(
    "sce",
    paper="Wang et al., Symmetric Cross Entropy for Robust Learning with Noisy Labels, ICCV 2019",
    formula=r"\alpha\,(-\log p_t) + \beta\,(-\textstyle\sum_k \max(p_k, 10^{-7}) \log \max(e_{t,k}, 10^{-4}))",
    summary="alpha * CE + beta * reverse CE, with the clamps of the authors' code (log 0 := log 1e-4). "
            "alpha = 1, beta = 0 is cross-entropy.",
    params={
        "alpha": Param(0.1, nonneg, "alpha >= 0", "CE weight"),
        "beta": Param(1.0, nonneg, "beta >= 0", "reverse-CE weight"),
    },
)
def sce(logits, targets, config, alpha=0.1, beta=1.0):
    z = upcast(logits)
    logp = F.log_softmax(z, dim=1)
    p = logp.exp().clamp(min=1e-7, max=1.0)
    log_clamped_onehot = torch.full_like(p, math.log(1e-4))
    log_clamped_onehot.scatter_(1, targets[:, None], 0.0)
    reverse_ce = -(p * log_clamped_onehot).sum(dim=1)
    return alpha * F.nll_loss(logp, targets) + beta * reverse_ce.mean()


def _log_t(u, t):
    if t == 1.0:
        return torch.log(u)
    return (u.pow(1.0 - t) - 1.0) / (1.0 - t)


def _exp_t(u, t):
    if t == 1.0:
        return torch.exp(u)
    return torch.relu(1.0 + (1.0 - t) * u).pow(1.0 / (1.0 - t))


def _tempered_log_partition(a, t, num_iters):
    """lambda with sum_k exp_t(a_k - lambda) = 1 (t >= 1), by the fixed point of Amid et al.'s reference code.

    The value is found without autograd; its gradient is then attached by the implicit
    function theorem, d lambda / d a_k = p_k^t / sum_j p_j^t, which is exact at any
    iteration count (differentiating through the loop would only approximate it).
    """
    with torch.no_grad():
        if t == 1.0:
            lam = torch.logsumexp(a, dim=1, keepdim=True)
        else:
            mu = a.amax(dim=1, keepdim=True)
            a0 = a - mu
            a_i = a0
            for _ in range(num_iters):
                partition = _exp_t(a_i, t).sum(dim=1, keepdim=True)
                a_i = a0 * partition.pow(1.0 - t)
            partition = _exp_t(a_i, t).sum(dim=1, keepdim=True)
            lam = -_log_t(1.0 / partition, t) + mu
        w = _exp_t(a - lam, t).pow(t)
        w = w / w.sum(dim=1, keepdim=True)
    return lam + (w * (a - a.detach())).sum(dim=1, keepdim=True)


@register(
    "bitempered",
    paper="Amid et al., Robust Bi-Tempered Logistic Loss Based on Bregman Divergences, NeurIPS 2019",
    formula=r"-\log_{t_1} \hat p_t - \tfrac{1}{2-t_1} + \tfrac{1}{2-t_1}\textstyle\sum_k \hat p_k^{\,2-t_1},"
            r"\quad \hat p = \exp_{t_2}(z - \lambda_{t_2}(z))",
    summary="Tempered log (t1 < 1 bounds the loss) and tempered softmax (t2 > 1 gives heavy tails); "
            "t1 = t2 = 1 is cross-entropy. The normaliser uses the reference code's fixed-point iteration "
            "(num_iters=5), which is why this loss costs more than cross-entropy.",
    params={
        "t1": Param(0.8, in_range(0.0, 1.0, lo_open=True), "0 < t1 <= 1", "temperature of the log"),
        "t2": Param(1.2, in_range(1.0, 4.0), "1 <= t2 <= 4", "temperature of the softmax"),
        "num_iters": Param(5, positive_int, "a positive integer", "fixed-point iterations"),
    },
)
def bitempered(logits, targets, config, t1=0.8, t2=1.2, num_iters=5):
    z = upcast(logits)
    if t2 == 1.0:  # plain softmax: take log p from log_softmax so that p_t underflowing to 0 stays finite
        log_probs = F.log_softmax(z, dim=1)
    else:  # heavy-tailed: p_t > 0 for any finite logits
        log_probs = torch.log(_exp_t(z - _tempered_log_partition(z, t2, num_iters), t2))
    log_p_t = log_probs.gather(1, targets[:, None]).squeeze(1)
    # log_t1(p) = expm1((1 - t1) log p) / (1 - t1); one-hot labels make sum_k y_k log_t1(y_k) = 0, sum_k y_k^(2-t1) = 1
    neg_log_t = -log_p_t if t1 == 1.0 else -torch.expm1((1.0 - t1) * log_p_t) / (1.0 - t1)
    loss = neg_log_t + (torch.exp((2.0 - t1) * log_probs).sum(dim=1) - 1.0) / (2.0 - t1)
    return loss.mean()
