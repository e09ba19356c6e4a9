"""Loss and logit gradients along the target probability, on the symmetric slice the gradient chapter uses:
target logit a, the C-1 others 0, so p_t = e^a / (e^a + C - 1)."""
from __future__ import annotations

import math

import numpy as np
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


# LogitNorm divides the logits by their norm: on the slice the logit direction is the same for every p_t > 1/C
# (and for every p_t < 1/C), so its loss is flat on each side and singular at p_t = 1/C, where all logits are 0.
# The slice says nothing about it.
SLICE_DEGENERATE = ("logitnorm",)


def cosine_losses() -> list[str]:
    """The losses that take cosines, not free logits: they have their own slice (cosine_slice)."""
    return [name for name in losses.available() if losses.describe(name)["logits"] == "cosine"]


def slice_entries(highlight: list, loss_files: list) -> tuple[list, list[str]]:
    """(what the slice draws, the registry's other losses): ``highlight`` at its settings and the loss files
    first, then every other registry loss at its defaults, less those the slice cannot show."""
    named = {entry if isinstance(entry, str) else entry[0] for entry in highlight}
    others = [n for n in losses.available() if n not in named | set(SLICE_DEGENERATE) | set(cosine_losses())]
    return list(highlight) + list(loss_files) + others, others


def weights_of(entries: list, num_classes: int, p_t: torch.Tensor) -> pd.DataFrame:
    """loss_curves for each (name, params) entry (or bare name, or a loss file), with 'loss' the loss in words
    with its settings and 'tag' its records' tag (for its colour in the book)."""
    from .names import plain_name
    from .trainer.config import loss_tag_of

    frames = []
    for entry in entries:
        name, params = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]) if len(entry) > 1 else {})
        registered = losses.spec(name).name  # a loss file's name with its hash
        tag = loss_tag_of(name, params) if name in losses.available() else registered
        label = plain_name(registered, params) if name in losses.available() else registered  # a file: its name
        frames.append(loss_curves(name, num_classes, p_t, **params).assign(loss=label, tag=tag, name=registered))
    return pd.concat(frames, ignore_index=True)


def closed_form_grads(name: str, params: dict, p_t: torch.Tensor, num_classes: int):
    """(d/dz_t, d/dz_k) on the slice from the published closed forms, for ce, label_smoothing, focal, poly1 and
    capped_ce (settings filled with the registry's defaults): the reference the chapter checks autograd against."""
    hp = losses.registry.resolve_hparams(name, dict(params))
    p_k = (1 - p_t) / (num_classes - 1)
    if name == "ce":
        return p_t - 1, p_k
    if name == "label_smoothing":
        eps = hp["eps"]
        return p_t - (1 - eps + eps / num_classes), p_k - eps / num_classes
    if name == "focal":
        g = hp["gamma"]
        w = (1 - p_t) ** g - g * p_t * (1 - p_t) ** (g - 1) * torch.log(p_t)
        return -(1 - p_t) * w, p_k * w
    if name == "poly1":
        w = 1 + hp["epsilon"] * p_t
        return (p_t - 1) * w, p_k * w
    if name == "capped_ce":
        w = torch.sigmoid(hp["sharpness"] * (math.log(hp["p_cap"]) - torch.log(p_t)))
        return (p_t - 1) * w, p_k * w
    raise ValueError(f"no closed form here for {name!r}; known: ce, label_smoothing, focal, poly1, capped_ce")


CLOSED_FORMS = ("ce", "label_smoothing", "focal", "poly1", "capped_ce")


def closed_form_errors(entries: list, class_counts: list[int], p_t: torch.Tensor) -> pd.DataFrame:
    """Per entry with a closed form and class count: the largest |autograd - closed form| of the target and
    non-target gradients, at the p_t the slice's logits really give."""
    from .names import plain_name

    rows = []
    for entry in entries:
        name, params = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]) if len(entry) > 1 else {})
        if name not in CLOSED_FORMS:
            continue
        for c in class_counts:
            auto = loss_curves(name, c, p_t, **params)
            p_real = slice_logits(p_t.double(), c).softmax(dim=1)[:, 0]
            target, other = closed_form_grads(name, params, p_real, c)
            rows.append({"loss": plain_name(name, params), "C": c,
                         "max |error| target": float(np.abs(auto["grad_target"].to_numpy() - target.numpy()).max()),
                         "max |error| non-target": float(np.abs(auto["grad_other"].to_numpy() - other.numpy()).max())})
    return pd.DataFrame(rows)


def optima(curves: pd.DataFrame) -> pd.DataFrame:
    """Per loss and class count: the p_t where d/dz_t first reaches zero (linear interpolation; NaN where it
    stays negative: the loss keeps widening the gap), the logit gap there, and the weight at p_t 0.5 and 0.95."""
    rows = []
    for (label, c), sel in curves.groupby(["loss", "C"], sort=False):
        p_star = _first_zero(sel["p_t"].to_numpy(), sel["grad_target"].to_numpy())
        rows.append({"loss": label, "C": c, "optimum p_t": p_star,
                     "logit gap a*": math.log(p_star * (c - 1) / (1 - p_star)) if p_star == p_star else np.nan,
                     "weight at p_t=0.5": float(np.interp(0.5, sel["p_t"], sel["weight"])),
                     "weight at p_t=0.95": float(np.interp(0.95, sel["p_t"], sel["weight"]))})
    table = pd.DataFrame(rows)
    numeric = ["optimum p_t", "logit gap a*", "weight at p_t=0.5", "weight at p_t=0.95"]
    table[numeric] = table[numeric].round(3) + 0.0  # + 0.0: a rounded -0.0004 prints as 0.000, not -0.000
    return table.pivot(index="loss", columns="C").loc[list(dict.fromkeys(curves["loss"]))]


def _first_zero(p: np.ndarray, g: np.ndarray) -> float:
    crossing = np.nonzero(g >= 0)[0]
    if not len(crossing):
        return np.nan
    i = crossing[0]
    if i == 0:
        return float(p[0])
    return float(p[i - 1] + (p[i] - p[i - 1]) * (-g[i - 1]) / (g[i] - g[i - 1]))


def label_smoothing_optimum(eps: float, num_classes: int) -> tuple[float, float]:
    """Label smoothing's optimum on the slice in closed form: p_t* = 1 - ε + ε/C and the gap a* = log(p_t* C / ε)."""
    p_star = 1 - eps + eps / num_classes
    return p_star, math.log(p_star * num_classes / eps)


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


def angular_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per curve of angular_curves frames (a 'curve' column names each): p_t at 0°, the angle below which its own
    p_t exceeds 0.5 (NaN: never), and its pull on the target at 30°, 60° and 90°."""
    rows = []
    for label, sel in curves.groupby("curve", sort=False):
        above = sel[sel["p_t"] > 0.5]
        pull = -sel["grad_target"]
        rows.append({"loss": label, "p_t at 0°": float(sel["p_t"].iloc[0]),
                     "angle where p_t falls below 0.5 (°)": float(above["theta_deg"].max()) if len(above) else np.nan,
                     # rounded, then + 0.0: a pull of -1e-20 would otherwise print as "-0.000"
                     **{f"pull at {a}°": round(float(np.interp(a, sel["theta_deg"], pull)), 3) + 0.0
                        for a in (30, 60, 90)}})
    return pd.DataFrame(rows).set_index("loss")
