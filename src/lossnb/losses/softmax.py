"""Softmax cross-entropy and the losses that reshape its training signal.

Every function here is pure, imports only torch, and computes in float32 at least
(bf16/fp16 logits are upcast; float64 stays float64 so gradcheck works). Each
returns the mean over the batch. The registry (``lossnb.losses.get``) binds the
hyperparameters and checks inputs; the functions themselves do no host syncs.
"""
import torch
import torch.nn.functional as F

from .domains import at_least, nonneg, positive, real_list, unit_closed, unit_halfopen
from .common import upcast
from .registry import Param, register



def _log_one_minus_p(logp_t):
    """log(1 - p_t) from log p_t, floored at the smallest normal float.

    The floor keeps gradients finite where p_t rounds to 1 (there (1 - p_t)^gamma is 0 to
    working precision anyway); expm1 keeps 1 - p_t accurate when p_t is small.
    """
    return torch.log((-torch.expm1(logp_t)).clamp_min(torch.finfo(logp_t.dtype).tiny))


@register(
    "ce",
    paper="Bridle, 1990; the standard softmax cross-entropy",
    formula=r"-\log p_t",
    summary="Softmax cross-entropy (torch.nn.functional.cross_entropy).",
)
def cross_entropy(logits, targets, config):
    return F.cross_entropy(upcast(logits), targets)


@register(
    "label_smoothing",
    paper="Szegedy et al., Rethinking the Inception Architecture, CVPR 2016",
    formula=r"-\sum_k q_k \log p_k,\quad q = (1-\varepsilon)\,e_t + \varepsilon/C\ \text{(uniform)}"
            r"\ \text{or}\ q_t = 1-\varepsilon,\ q_{k\neq t} = \varepsilon/(C-1)\ \text{(others)}",
    summary="Cross-entropy against smoothed targets. 'uniform' spreads eps over all C classes "
            "(torch and timm's convention, the benchmark's); 'others' spreads it over the C-1 wrong ones.",
    params={
        "eps": Param(0.1, unit_halfopen, "0 <= eps < 1", "smoothing mass"),
        "convention": Param("uniform", lambda v: v in ("uniform", "others"), "'uniform' or 'others'"),
    },
)
def label_smoothing(logits, targets, config, eps=0.1, convention="uniform"):
    z = upcast(logits)
    if convention == "uniform":
        return F.cross_entropy(z, targets, label_smoothing=eps)
    logp = F.log_softmax(z, dim=1)
    others = eps / (z.shape[1] - 1)
    logp_t = logp.gather(1, targets[:, None]).squeeze(1)
    # -(1-eps) log p_t - others * sum_{k != t} log p_k
    return (-(1.0 - eps - others) * logp_t - others * logp.sum(dim=1)).mean()


@register(
    "focal",
    paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    formula=r"-(1-p_t)^\gamma \log p_t",
    summary="Down-weights well-classified samples by (1 - p_t)^gamma; gamma = 0 is cross-entropy.",
    params={"gamma": Param(2.0, nonneg, "gamma >= 0", "focusing exponent")},
)
def focal(logits, targets, config, gamma=2.0):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    # (1-p)^gamma as exp(gamma*log(1-p)): finite gradients even where p_t rounds to 1 and gamma < 1
    weight = torch.exp(gamma * _log_one_minus_p(logp_t))
    return -(weight * logp_t).mean()


@register(
    "poly1",
    paper="Leng et al., PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions, ICLR 2022",
    formula=r"-\log p_t + \varepsilon\,(1-p_t)",
    summary="Poly-1: cross-entropy plus epsilon times the first polynomial term; epsilon = 0 is cross-entropy.",
    params={"epsilon": Param(1.0, at_least(-1.0), "epsilon >= -1", "weight of (1 - p_t)")},
)
def poly1(logits, targets, config, epsilon=1.0):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-logp_t - epsilon * torch.expm1(logp_t)).mean()


@register(
    "polyn",
    paper="Leng et al., PolyLoss, ICLR 2022 (Poly-N)",
    formula=r"-\log p_t + \sum_{j=1}^{N} \varepsilon_j (1-p_t)^j",
    summary="Poly-N: cross-entropy plus the first N polynomial terms with their own weights.",
    params={"epsilons": Param((1.0,), real_list, "a non-empty list of reals", "eps_1..eps_N")},
)
def polyn(logits, targets, config, epsilons=(1.0,)):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    one_minus_p = -torch.expm1(logp_t)
    loss = -logp_t
    for j, eps_j in enumerate(epsilons, start=1):
        loss = loss + eps_j * one_minus_p ** j
    return loss.mean()


@register(
    "confidence_penalty",
    paper="Pereyra et al., Regularizing Neural Networks by Penalizing Confident Output Distributions, ICLR-W 2017",
    formula=r"-\log p_t - \beta H(p),\quad H(p) = -\sum_k p_k \log p_k",
    summary="Cross-entropy minus beta times the entropy of the prediction; beta = 0 is cross-entropy.",
    params={"beta": Param(0.1, nonneg, "beta >= 0",
                          "entropy weight; the default is lossnb's: the paper tunes beta per task")},
)
def confidence_penalty(logits, targets, config, beta=0.1):
    z = upcast(logits)
    logp = F.log_softmax(z, dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    return F.nll_loss(logp, targets) - beta * entropy.mean()


@register(
    "logit_penalty",
    paper="Kornblith et al., Why Do Better Loss Functions Lead to Less Transferable Features?, NeurIPS 2021",
    formula=r"-\log p_t + \beta \lVert z \rVert_2^2",
    summary="Cross-entropy plus beta times the squared L2 norm of the logits; beta = 0 is cross-entropy. "
            "The default beta is ours: the paper tunes beta on held-out data.",
    params={"beta": Param(5e-4, nonneg, "beta >= 0", "penalty weight")},
)
def logit_penalty(logits, targets, config, beta=5e-4):
    z = upcast(logits)
    return F.cross_entropy(z, targets) + beta * z.pow(2).sum(dim=1).mean()


@register(
    "flsd53",
    paper="Mukhoti et al., Calibrating Deep Neural Networks using Focal Loss, NeurIPS 2020 (FLSD-53)",
    formula=r"-(1-p_t)^{\gamma(p_t)} \log p_t,\quad \gamma = 5 \text{ if } p_t < 0.2 \text{ else } 3",
    summary="Sample-dependent focal loss: gamma = 5 for p_t in [0, 0.2), 3 for [0.2, 1]; gamma is chosen "
            "from the detached p_t, as in the authors' code.",
    params={
        "gamma_low": Param(5.0, nonneg, "gamma_low >= 0", "gamma where p_t < threshold"),
        "gamma_high": Param(3.0, nonneg, "gamma_high >= 0", "gamma where p_t >= threshold"),
        "threshold": Param(0.2, unit_closed, "0 <= threshold <= 1"),
    },
)
def flsd53(logits, targets, config, gamma_low=5.0, gamma_high=3.0, threshold=0.2):
    z = upcast(logits)
    logp_t = F.log_softmax(z, dim=1).gather(1, targets[:, None]).squeeze(1)
    gamma = torch.full_like(logp_t, gamma_high).masked_fill(logp_t.detach().exp() < threshold, gamma_low)
    weight = torch.exp(gamma * _log_one_minus_p(logp_t))
    return -(weight * logp_t).mean()


@register(
    "dual_focal",
    paper="Tao et al., Dual Focal Loss for Calibration, ICML 2023",
    formula=r"-(1 - p_t + p_j)^\gamma \log p_t,\quad p_j = \max\{p_k : p_k < p_t\}\ (0 \text{ if none})",
    summary="Focal loss whose weight also grows with the largest probability below the target's, "
            "as in the authors' code.",
    params={"gamma": Param(5.0, nonneg, "gamma >= 0",
                           "focusing exponent; the default is lossnb's: the paper tunes gamma per data set")},
)
def dual_focal(logits, targets, config, gamma=5.0):
    z = upcast(logits)
    logp = F.log_softmax(z, dim=1)
    p = logp.exp()
    logp_t = logp.gather(1, targets[:, None]).squeeze(1)
    p_t = logp_t.exp()
    p_j = torch.where(p < p_t[:, None], p, torch.zeros_like(p)).amax(dim=1)
    # pow through exp/log with the base floored: finite gradients when the base rounds to 0
    base = (1.0 - p_t + p_j).clamp_min(1e-30)
    return -(torch.exp(gamma * torch.log(base)) * logp_t).mean()


@register(
    "logitnorm",
    paper="Wei et al., Mitigating Neural Network Overconfidence with Logit Normalization, ICML 2022",
    formula=r"-\log \operatorname{softmax}\!\Big(\frac{z}{\tau(\lVert z\rVert_2 + 10^{-7})}\Big)_t",
    summary="Cross-entropy on L2-normalised logits divided by a temperature tau.",
    params={"tau": Param(0.04, positive, "tau > 0", "temperature")},
)
def logitnorm(logits, targets, config, tau=0.04):
    z = upcast(logits)
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True) + 1e-7
    return F.cross_entropy(z / (norms * tau), targets)


@register(
    "maxsup",
    paper="Zhou et al., MaxSup: Overcoming Representation Collapse in Label Smoothing, 2025",
    formula=r"-\log p_t + \alpha(e)\,\big(\max_k z_k - \tfrac1C \textstyle\sum_k z_k\big),"
            r"\quad \alpha(e) = \alpha_0 + (\alpha_1-\alpha_0)\,\tfrac{e}{\max(1, E-1)}",
    summary="Label smoothing penalises z_t - mean(z); MaxSup penalises the top-1 logit instead. "
            "alpha ramps linearly from alpha_start to alpha_end over the run and reaches alpha_end at the last "
            "epoch; the authors' code (Conv/ffcv/losses.py, MaxSuppression) ramps by epoch / E and stops one "
            "step short (0.1995 at the last of 200 epochs), a difference of at most (alpha_end - alpha_start) / E.",
    params={
        "alpha_start": Param(0.1, nonneg, "alpha_start >= 0"),
        "alpha_end": Param(0.2, nonneg, "alpha_end >= 0"),
    },
)
def maxsup(logits, targets, config, alpha_start=0.1, alpha_end=0.2):
    z = upcast(logits)
    progress = config["epoch"] / max(1, config["total_epochs"] - 1)
    alpha = alpha_start + (alpha_end - alpha_start) * progress
    gap = z.amax(dim=1) - z.mean(dim=1)
    return F.cross_entropy(z, targets) + alpha * gap.mean()


@register(
    "margin",
    paper="Additive target-logit margin (cf. Wang et al., CosFace / AM-Softmax, 2018; Cao et al., LDAM, 2019)",
    formula=r"-\log \operatorname{softmax}(z - m\,e_t)_t",
    summary="Cross-entropy with m subtracted from the target logit: the target must win by a margin m. "
            "m = 0 is cross-entropy.",
    params={"m": Param(1.0, nonneg, "m >= 0", "additive margin; the default is lossnb's")},
)
def margin(logits, targets, config, m=1.0):
    z = upcast(logits)
    return F.cross_entropy(z - m * F.one_hot(targets, z.shape[1]).to(z.dtype), targets)


@register(
    "mbls",
    paper="Liu et al., The Devil is in the Margins: Margin-based Label Smoothing for Network Calibration, CVPR 2022",
    formula=r"-\log p_t + \lambda\,\tfrac1C \textstyle\sum_k \max(0,\ \max_j z_j - z_k - m)",
    summary="Cross-entropy plus a hinge on logit distances to the top logit beyond a margin m "
            "(mean over classes, as in the authors' code). lambda = 0 is cross-entropy.",
    params={
        "margin": Param(10.0, nonneg, "margin >= 0"),
        "lam": Param(0.1, nonneg, "lam >= 0", "penalty weight"),
    },
)
def mbls(logits, targets, config, margin=10.0, lam=0.1):
    z = upcast(logits)
    distances = z.amax(dim=1, keepdim=True) - z
    return F.cross_entropy(z, targets) + lam * F.relu(distances - margin).mean()
