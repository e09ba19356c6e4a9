"""lossnb's third design: label smoothing's wrong-class pull, without its bound on the target.

Label smoothing splits exactly into two parts. With q_k = p_k / (1 - p_t), the model's distribution over
the wrong classes (a softmax of the wrong logits alone, so independent of z_t), and a = eps (C-1) / C:

    LS_eps = [-(1-a) log p_t - a log(1 - p_t)]  +  a * (1/(C-1)) sum_{k != t} -log q_k
             a bound: p_t -> 1 - a                 a pull of the wrong classes towards uniform

The second design kept the bound and let the wrong classes keep their shape; the runs said the opposite
was needed: on the ConvNet the uniform wrong-class target is what label smoothing gains by (self-shaping
lost to it, paired by seed), and on the ResNet the bound's push-back costs accuracy, the more the larger
eps. This loss is cross-entropy plus the pull alone: the target logit gets exactly cross-entropy's gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import upcast
from .domains import nonneg
from .registry import Param, register


@register(
    "complement_ls",
    paper="lossnb (this project): label smoothing's wrong-class term without its bound, from the exact "
          "split of label smoothing into the two (relative: complement objective training, Chen et al. 2019)",
    formula=r"-\log p_t + \frac{\varepsilon (C-1)}{C}\cdot\frac{1}{C-1}\sum_{k\neq t} -\log q_k,\quad "
            r"q_k = \frac{p_k}{1-p_t}",
    summary="Cross-entropy plus label smoothing's pull of the wrong classes towards a uniform distribution "
            "among themselves, at the weight label smoothing with the same eps gives it, and without label "
            "smoothing's bound on p_t (q does not depend on the target logit). eps = 0 is cross-entropy.",
    params={"eps": Param(0.1, nonneg, "eps >= 0", "label smoothing's eps whose wrong-class term is kept")},
)
def complement_ls(logits, targets, config, eps=0.1):
    z = upcast(logits)
    num_classes = z.shape[1]
    return ComplementLS.apply(z, targets, eps * (num_classes - 1) / num_classes)


class ComplementLS(torch.autograd.Function):
    """Mean over the batch of -log p_t + a/(C-1) sum_{k != t} -log q_k, with its closed-form gradient
    p - e_t + a (q - u), u uniform over the wrong classes. Written by hand because autograd through the two
    log-softmaxes takes 32 aten ops (this, 19), and at batch 128 a loss's time is per-op dispatch. Where a
    second derivative is asked for (create_graph), the backward recomputes the two log-softmaxes from the
    logits with differentiable ops, so it is itself differentiable."""

    @staticmethod
    def forward(ctx, z, targets, a):
        t = targets[:, None]
        wrong, n = max(z.shape[1] - 1, 1), z.shape[0]
        log_p, log_q = _log_p_and_q(z, t)
        ctx.save_for_backward(z, log_p, log_q, t)
        ctx.a, ctx.wrong = a, wrong
        # mean of -log p_t, plus a/(C-1) times the batch mean of sum_{k != t} -log q_k (log q_t = -inf: zeroed);
        # an empty batch gives nan, as F.cross_entropy's mean does
        return torch.add(F.nll_loss(log_p, targets), log_q.scatter(1, t, 0.0).sum(), alpha=-a / (wrong * max(n, 1)))

    @staticmethod
    def backward(ctx, grad):
        z, log_p, log_q, t = ctx.saved_tensors
        a, wrong = ctx.a, ctx.wrong
        full = torch.full(t.shape, a / wrong - 1, dtype=z.dtype, device=z.device)
        scale = grad / max(z.shape[0], 1)
        if torch.is_grad_enabled():  # a double backward: the gradient as a differentiable function of z
            log_p, log_q = _log_p_and_q(z, t)
            g = torch.add(log_p.exp(), log_q.exp(), alpha=a) - a / wrong
            return g.scatter_add(1, t, full) * scale, None, None
        # p + a q - a/(C-1) everywhere; at t, q_t = 0 and the right value is p_t - 1 (in place: one buffer)
        g = torch.add(log_p.exp(), log_q.exp(), alpha=a).sub_(a / wrong)
        return g.scatter_add_(1, t, full).mul_(scale), None, None


def _log_p_and_q(z, t):
    """log p, and log q: a log-softmax over the wrong logits alone (never dividing by a vanishing 1 - p_t)."""
    return F.log_softmax(z, dim=1), F.log_softmax(z.scatter(1, t, float("-inf")), dim=1)
