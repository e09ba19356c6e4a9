"""Loss and logit gradients along the target probability, on the symmetric slice the gradient chapter uses:
target logit a, the C-1 others 0, so p_t = e^a / (e^a + C - 1)."""
from __future__ import annotations

import pandas as pd
import torch

from . import losses


def slice_logits(p_t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) float64 logits whose class 0 has probability p_t and whose other classes are equal."""
    z = torch.zeros(len(p_t), num_classes, dtype=torch.float64)
    z[:, 0] = torch.log(p_t * (num_classes - 1) / (1 - p_t))
    return z


def loss_curves(name: str, num_classes: int, p_t: torch.Tensor, **hparams) -> pd.DataFrame:
    """Per sample, alone (one call each, so no batch effects): the loss, d/dz_t, d/dz_k for a non-target,
    and the weight relative to cross-entropy w = (d/dz_t) / (p_t - 1)."""
    loss = losses.get(name, **hparams)
    cfg = {"num_classes": num_classes, "epoch": 0, "total_epochs": 200}
    values, grads = [], []
    for row in slice_logits(p_t.double(), num_classes):
        z = row[None].clone().requires_grad_()
        value = loss(z, torch.zeros(1, dtype=torch.long), cfg)
        (g,) = torch.autograd.grad(value, z)
        values.append(value.item())
        grads.append(g[0])
    grad = torch.stack(grads)
    p = p_t.double()
    return pd.DataFrame({"loss": loss.spec.name, "C": num_classes, "p_t": p.numpy(), "value": values,
                         "grad_target": grad[:, 0].numpy(), "grad_other": grad[:, 1].numpy(),
                         "weight": (grad[:, 0] / (p - 1)).numpy()})


def weights_of(entries: list, num_classes: int, p_t: torch.Tensor) -> pd.DataFrame:
    """loss_curves for each (name, params) entry (or bare name), with 'loss' the loss in words with its settings
    and 'tag' its records' tag (for its colour in the book)."""
    from .names import plain_name
    from .trainer.config import loss_tag_of

    frames = []
    for entry in entries:
        name, params = (entry, {}) if isinstance(entry, str) else entry
        tag = loss_tag_of(name, params)
        frames.append(loss_curves(name, num_classes, p_t, **params).assign(loss=plain_name(name, params), tag=tag))
    return pd.concat(frames, ignore_index=True)


def cosine_slice(theta: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) float64 cosine logits: class 0 at angle theta (radians) from the feature, every other class at 90°
    (in a high-dimensional feature space, class weights not yet pulled towards a feature are nearly orthogonal
    to it)."""
    z = torch.zeros(len(theta), num_classes, dtype=torch.float64)
    z[:, 0] = torch.cos(theta.double())
    return z


def angular_curves(name: str, num_classes: int, theta: torch.Tensor, **hparams) -> pd.DataFrame:
    """Along the target angle on the cosine slice, per sample: the loss, d/dcos θ_t, d/dcos θ_k for a non-target,
    and p_t, the softmax probability of the target under the loss's own (margin-adjusted, scaled) logits."""
    loss = losses.get(name, **hparams)
    cfg = {"num_classes": num_classes, "epoch": 0, "total_epochs": 200}
    target = torch.zeros(1, dtype=torch.long)
    values, grads = [], []
    for row in cosine_slice(theta, num_classes):
        z = row[None].clone().requires_grad_()
        value = loss(z, target, cfg)
        (g,) = torch.autograd.grad(value, z)
        values.append(value.item())
        grads.append(g[0])
    grad = torch.stack(grads)
    return pd.DataFrame({"loss": loss.spec.name, "C": num_classes, "theta_deg": torch.rad2deg(theta).numpy(),
                         "value": values, "p_t": torch.exp(-torch.tensor(values, dtype=torch.float64)).numpy(),
                         "grad_target": grad[:, 0].numpy(), "grad_other": grad[:, 1].numpy()})
