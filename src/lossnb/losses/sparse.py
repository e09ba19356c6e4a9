"""Sparse-output Fenchel-Young losses: sparsemax (alpha = 2) and entmax-1.5.

L(z, t) = <p, z> - z_t + H(p), with p the sparse mapping of z and H its Tsallis
entropy. By Danskin's theorem the gradient is exactly p - e_t, so p is computed
under no_grad by the exact sort-based algorithms and the loss is written so that
autograd returns that gradient (no differentiation through the sort).
"""
import torch

from .common import upcast
from .registry import register



def _require_finite(z, name):
    """The sort-based algorithms index by the size of the support, which NaN or inf logits make -1: refuse
    them by name (read on the CPU; a device assert on CUDA, no host sync; none inside a graph capture)."""
    if z.device.type == "cpu":
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"{name} needs finite logits; these hold NaN or inf")
    elif not (z.is_cuda and torch.cuda.is_current_stream_capturing()):
        torch._assert_async(torch.isfinite(z).all(), f"{name} needs finite logits")


def _sparsemax_probs(z):
    """Martins & Astudillo (2016), Algorithm 1."""
    z = z - z.amax(dim=1, keepdim=True)
    z_sorted, _ = torch.sort(z, dim=1, descending=True)
    k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    cumsum = z_sorted.cumsum(dim=1)
    support = (1.0 + k * z_sorted) > cumsum
    k_z = support.sum(dim=1, keepdim=True)
    tau = (cumsum.gather(1, k_z - 1) - 1.0) / k_z.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)


def _entmax15_probs(z):
    """Peters et al. (2019), exact sort-based entmax with alpha = 1.5."""
    z = z / 2.0
    z = z - z.amax(dim=1, keepdim=True)
    z_sorted, _ = torch.sort(z, dim=1, descending=True)
    rho = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    mean = z_sorted.cumsum(dim=1) / rho
    mean_sq = (z_sorted ** 2).cumsum(dim=1) / rho
    delta = (1.0 - rho * (mean_sq - mean ** 2)) / rho
    tau = mean - torch.sqrt(torch.clamp(delta, min=0.0))
    support_size = (tau <= z_sorted).sum(dim=1, keepdim=True)
    tau_star = tau.gather(1, support_size - 1)
    return torch.clamp(z - tau_star, min=0.0) ** 2


@register(
    "sparsemax",
    paper="Martins & Astudillo, From Softmax to Sparsemax, ICML 2016",
    formula=r"\langle p, z\rangle - z_t + \tfrac12\big(1 - \lVert p\rVert_2^2\big),\quad p = \operatorname{sparsemax}(z)",
    summary="Sparsemax loss: zero once the target's margin puts all mass on it; gradient p - e_t.",
)
def sparsemax_loss(logits, targets, config):
    z = upcast(logits)
    _require_finite(z, "sparsemax")
    with torch.no_grad():
        p = _sparsemax_probs(z)
        entropy = 0.5 * (1.0 - (p * p).sum(dim=1))
    z_t = z.gather(1, targets[:, None]).squeeze(1)
    return ((p * z).sum(dim=1) - z_t + entropy).mean()


@register(
    "entmax15",
    paper="Peters et al., Sparse Sequence-to-Sequence Models, ACL 2019 (entmax, alpha = 1.5)",
    formula=r"\langle p, z\rangle - z_t + \tfrac{1}{0.75}\big(1 - \textstyle\sum_k p_k^{1.5}\big),\quad p = 1.5\text{-entmax}(z)",
    summary="Entmax-1.5 Fenchel-Young loss: between softmax and sparsemax; gradient p - e_t.",
)
def entmax15_loss(logits, targets, config):
    z = upcast(logits)
    _require_finite(z, "entmax15")
    with torch.no_grad():
        p = _entmax15_probs(z)
        entropy = (1.0 - (p * torch.sqrt(p)).sum(dim=1)) / 0.75
    z_t = z.gather(1, targets[:, None]).squeeze(1)
    return ((p * z).sum(dim=1) - z_t + entropy).mean()
