"""Figures of the gradient analysis: the weight each loss puts on an example, sliced along the true-class
probability or the angle to the class centre."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from .colours import MAX_SERIES, loss_colour
from .style import PAGE_WIDTH, legend_beneath, legend_height, wrap_name


def weight_curves(weights, reference: float, ylim: tuple[float, float]):
    """Each loss's weight relative to cross-entropy against p_t (lossnb.gradients.weights_of: 'loss' in words,
    'tag' for its colour), the reference line drawn beneath the curves so a loss lying on it stays visible."""
    names = list(dict.fromkeys(weights["loss"]))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 3.5 + legend_height(len(names), 2)))
    ax.axhline(reference, color="gray", lw=1, ls=":", zorder=0)
    colours = {name: loss_colour(tag) for name, tag in zip(weights["loss"], weights["tag"])}
    sns.lineplot(data=weights, x="p_t", y="weight", hue="loss", hue_order=names, style="loss", style_order=names,
                 palette=colours, ax=ax, lw=2)
    ax.set(ylim=ylim, xlabel="target probability $p_t$", ylabel="weight relative to CE")
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    legend_beneath(fig, handles, labels)
    return fig


DASHES = ["-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2))]


def panel_groups(first: list[str], rest: list[str], first_title: str = "benchmark baselines and ours",
                 rest_title: str = "other losses") -> list[tuple[str, list[str]]]:
    """(title, names) panels of at most MAX_SERIES names: ``first`` in its panels, then ``rest``, numbered
    when a title needs several."""
    groups = []
    for names, title in ((first, first_title), (rest, rest_title)):
        chunks = [names[i:i + MAX_SERIES] for i in range(0, len(names), MAX_SERIES)]
        groups += [(title + (f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else ""), chunk)
                   for i, chunk in enumerate(chunks)]
    return groups


def slice_panels(curves, groups: list[tuple[str, list[str]]], y: str, ylabel: str, yscale: str = "linear",
                 ylim: tuple[float, float] | None = None, reference: float | None = None) -> list:
    """One figure per (title, losses) group of gradient-slice curves (lossnb.gradients.weights_of frames:
    'loss' in words, 'tag' for the colour), a panel per class count, the reference line beneath the curves."""
    figures = []
    counts = sorted(curves["C"].unique())
    for title, group in groups:
        fig, axes = plt.subplots(1, len(counts), figsize=(PAGE_WIDTH, 3.6 + legend_height(len(group), 2)),
                                 squeeze=False)
        for ax, c in zip(axes[0], counts):
            if reference is not None:
                ax.axhline(reference, color="gray", lw=1, ls=":", zorder=0)
            for i, label in enumerate(group):  # a dash per loss: curves that coincide (CE, complement LS) both show
                sel = curves[(curves["loss"] == label) & (curves["C"] == c)]
                ax.plot(sel["p_t"], sel[y], color=loss_colour(sel["tag"].iloc[0]), lw=2, label=label,
                        ls=DASHES[i % len(DASHES)])
            ax.set(xlabel="target probability $p_t$", ylabel=ylabel if c == counts[0] else None, yscale=yscale,
                   title=wrap_name(f"{title}, C = {c}", 28))
            if ylim:
                ax.set_ylim(*ylim)
        handles, names = axes[0, 0].get_legend_handles_labels()
        legend_beneath(fig, handles, names)
        figures.append(fig)
    return figures


def angular_pulls(curves, dashed: tuple[str, ...] = ("CE", "NormFace")):
    """On the cosine slice (lossnb.gradients.angular_curves frames with 'curve' and 'tag'): the target's
    probability, the pull on the target and the push on a non-target against the target angle; the controls
    (curves whose name starts with ``dashed``) dashed."""
    fig, grid = plt.subplots(2, 2, figsize=(PAGE_WIDTH, 7.0))
    axes = [grid[0, 0], grid[0, 1], grid[1, 0]]
    pulls = curves.assign(pull=-curves["grad_target"])
    for ax, (column, ylabel, title) in zip(axes, [
            ("p_t", "target probability $p_t$", "probability of\nthe target"),
            ("pull", r"$-\partial\ell/\partial\cos\theta_t$", "pull on the target\n(symlog)"),
            ("grad_other", r"$\partial\ell/\partial\cos\theta_k$", "push on a non-target\n(symlog)")]):
        for label, sel in pulls.groupby("curve", sort=False):
            ax.plot(sel["theta_deg"], sel[column], "--" if label.startswith(dashed) else "-", lw=2,
                    color=loss_colour(sel["tag"].iloc[0]), label=label)
        ax.set(xlabel=r"target angle $\theta_t$ (°)", ylabel=ylabel, xticks=range(0, 181, 45), title=title)
    axes[1].set_yscale("symlog", linthresh=1)
    axes[2].set_yscale("symlog", linthresh=0.1)
    for ax in axes[1:]:
        ax.set_ylim(bottom=0)  # both are pulls (>= 0) on this slice
    grid[1, 1].axis("off")
    grid[1, 1].legend(*axes[0].get_legend_handles_labels(), loc="center", frameon=False)
    fig.tight_layout()
    return fig
