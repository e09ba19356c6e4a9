"""Angular-margin softmax: SphereFace, CosFace and ArcFace, the face-recognition family.

Their logits are cosines: cos θ_j between the L2-normalised feature and the L2-normalised weight of class j,
which a cosine classifier head gives (``lossnb.models``, head="cosine"). Each replaces the target's cosine by
a harder one, ψ(θ_t), scales every logit by s and takes softmax cross-entropy. With no margin each is
cross-entropy on s·cos θ (NormFace, Wang et al. 2017). Defaults are those of the Angular-Penalty-Softmax-Losses
implementation the deep-ml loss library ships (cvqluu): ArcFace s 64, m 0.5; CosFace s 30, m 0.4; SphereFace
s 64, m 1.35.
"""
import math

import torch
import torch.nn.functional as F

from .common import upcast
from .domains import at_least, in_range, positive
from .registry import Param, register

def _target_cosine_and_angle(cos, targets, clamp=1e-7):
    """cos θ_t and θ_t. acos has an infinite slope at ±1: every implementation clamps the cosine first (cvqluu
    by 1e-7, opensphere by 1e-5)."""
    cos_t = cos.gather(1, targets[:, None]).squeeze(1)
    return cos_t, torch.acos(cos_t.clamp(-1 + clamp, 1 - clamp))


def _margin_cross_entropy(cos, targets, psi_t, s):
    """Softmax cross-entropy of s·cos θ with the target's cosine replaced by ψ(θ_t)."""
    return F.cross_entropy(s * cos.scatter(1, targets[:, None], psi_t[:, None]), targets)


@register(
    "sphereface",
    paper="Liu et al., SphereFace: Deep Hypersphere Embedding for Face Recognition, CVPR 2017",
    formula=r"-\log\frac{e^{s\,\psi(\theta_t)}}{e^{s\,\psi(\theta_t)} + \sum_{j\neq t} e^{s\cos\theta_j}},"
            r"\quad \psi(\theta) = (-1)^k\cos(m\theta) - 2k,\ k = \lfloor m\theta/\pi \rfloor",
    summary="Multiplicative angular margin: the target angle is multiplied by m. psi is the paper's monotone "
            "extension of cos(m theta) to all of [0, pi]. Needs cosine logits (head: cosine). The paper uses "
            "an integer m = 4 on unnormalised features; s 64 and m 1.35 on normalised ones are the deep-ml "
            "library's (cvqluu's) defaults.",
    params={"s": Param(64.0, positive, "s > 0", "scale of the cosines"),
            "m": Param(1.35, at_least(1.0), "m >= 1", "angle multiplier (m = 1: no margin)")},
    logits="cosine",
)
def sphereface(logits, targets, config, s=64.0, m=1.35):
    cos = upcast(logits)
    _, theta_t = _target_cosine_and_angle(cos, targets)
    k = torch.floor(m * theta_t / math.pi)  # piecewise constant: no gradient flows through it
    psi_t = (1 - 2 * torch.remainder(k, 2)) * torch.cos(m * theta_t) - 2 * k
    return _margin_cross_entropy(cos, targets, psi_t, s)


@register(
    "cosface",
    paper="Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition, CVPR 2018 "
          "(also Wang et al., Additive Margin Softmax, 2018)",
    formula=r"-\log\frac{e^{s(\cos\theta_t - m)}}{e^{s(\cos\theta_t - m)} + \sum_{j\neq t} e^{s\cos\theta_j}}",
    summary="Additive cosine margin: m is subtracted from the target's cosine. Needs cosine logits (head: "
            "cosine). s 30 and m 0.4 are the deep-ml library's (cvqluu's) defaults; the CosFace paper uses "
            "s 64, m 0.35. m = 0 is cross-entropy on s cos theta (NormFace).",
    params={"s": Param(30.0, positive, "s > 0", "scale of the cosines"),
            "m": Param(0.4, in_range(0.0, 1.0), "0 <= m <= 1", "cosine margin")},
    logits="cosine",
)
def cosface(logits, targets, config, s=30.0, m=0.4):
    cos = upcast(logits)
    cos_t = cos.gather(1, targets[:, None]).squeeze(1)
    return _margin_cross_entropy(cos, targets, cos_t - m, s)


@register(
    "arcface",
    paper="Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019",
    formula=r"-\log\frac{e^{s\cos(\theta_t + m)}}{e^{s\cos(\theta_t + m)} + \sum_{j\neq t} e^{s\cos\theta_j}}",
    summary="Additive angular margin: m is added to the target angle. Where theta_t + m would pass pi "
            "(cos theta_t <= cos(pi - m)) the authors' code uses cos theta_t - m sin m instead, which keeps the "
            "target logit decreasing in theta_t; easy_margin keeps cos theta_t wherever it is <= 0. Needs "
            "cosine logits (head: cosine). s 64 and m 0.5 are the paper's.",
    params={"s": Param(64.0, positive, "s > 0", "scale of the cosines"),
            "m": Param(0.5, in_range(0.0, math.pi, hi_open=True), "0 <= m < pi", "angular margin (radians)"),
            "easy_margin": Param(False, lambda v: isinstance(v, bool), "true or false",
                                 "apply the margin only where cos theta_t > 0")},
    logits="cosine",
)
def arcface(logits, targets, config, s=64.0, m=0.5, easy_margin=False):
    cos = upcast(logits)
    cos_t, theta_t = _target_cosine_and_angle(cos, targets)
    psi_t = torch.cos(theta_t + m)
    if easy_margin:
        psi_t = torch.where(cos_t > 0, psi_t, cos_t)
    else:
        psi_t = torch.where(cos_t > math.cos(math.pi - m), psi_t, cos_t - math.sin(math.pi - m) * m)
    return _margin_cross_entropy(cos, targets, psi_t, s)
