"""Figures of training runs epoch by epoch: learning curves, train against test accuracy, one run's curves, and
the reliability of their final epoch."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from scipy.stats import gmean, gstd

from ..analysis import pooled_ece
from .colours import TAB10, loss_palette
from .style import LEGEND_ROW, PAGE_WIDTH, wrap_name


def learning_curves(curves, groups: list[tuple[str, list[str]]], title: str, labels: dict[str, str] | None = None):
    """Test accuracy (%) and test cross-entropy per epoch (1 = the first), mean and ±1 std band over seeds: a
    row of two panels per (title, losses) group with its legend beneath (axes in the order accuracy, loss,
    legend). A loss axis spanning more than 50x is logarithmic, and there the line is the geometric mean and
    the band ×/÷ one geometric standard deviation (a band of ±1 std would run below zero, off a log axis)."""
    labels = labels or {}
    legend_rows = [-(-len(group) // 2) for _, group in groups]
    heights = [h for rows in legend_rows for h in (3.0, LEGEND_ROW * rows + 0.1)]
    fig = plt.figure(figsize=(PAGE_WIDTH, sum(heights) + (0.4 if title else 0)))
    grid = fig.add_gridspec(2 * len(groups), 2, height_ratios=heights)
    axes = [[fig.add_subplot(grid[2 * i, 0]), fig.add_subplot(grid[2 * i, 1]), fig.add_subplot(grid[2 * i + 1, :])]
            for i in range(len(groups))]
    data = curves.assign(epoch=curves["epoch"] + 1, acc=100 * curves["test_acc"])
    for row, (name, group) in zip(axes, groups):
        sel = data[data["loss_tag"].isin(group)].assign(loss=lambda d: d["loss_tag"].map(lambda t: labels.get(t, t)))
        order = [labels.get(t, t) for t in group]
        losses = sel["test_loss"]
        log = bool(len(losses)) and losses.max() > 50 * losses.min() > 0
        for ax, (column, ylabel) in zip(row, (("acc", "test accuracy (%)"), ("test_loss", "test cross-entropy"))):
            geometric = log and column == "test_loss"
            sns.lineplot(data=sel, x="epoch", y=column, hue="loss", hue_order=order,
                         palette=loss_palette(group, labels), estimator=gmean if geometric else "mean",
                         errorbar=geometric_sd_band if geometric else "sd", ax=ax, legend=ax is row[0])
            ax.set(xlabel="epoch", ylabel=ylabel + (" (geometric)" if geometric else ""), title=name)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))  # "0 50 100 150 200" stays legible
        if log:
            row[1].set_yscale("log")
        handles, names = row[0].get_legend_handles_labels()
        row[0].get_legend().remove()
        row[2].axis("off")
        row[2].legend(handles, names, loc="upper center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def geometric_sd_band(values) -> tuple[float, float]:
    """The geometric mean ×/÷ one geometric standard deviation (scipy's gstd, ddof 1) of ``values``; the mean
    alone where there is one value."""
    centre = gmean(values)
    spread = gstd(values) if len(values) > 1 else 1.0
    return centre / spread, centre * spread


def reliability_grid(bins_by_loss: dict, title: str, columns: int = 3, colours: dict[str, str] | None = None):
    """One reliability diagram per loss (bins pooled over seeds, lossnb.results.pooled_reliability), the
    pooled ECE in each panel's title and each bin's share of the images as a grey step line (a bar over a
    handful of images says little); None when no loss has bins. ``colours``: {name: colour} for the bars."""

    names = [n for n, bins in bins_by_loss.items() if not bins.empty]
    if not names:  # records without reliability bins: nothing to draw
        return None
    cols = max(1, min(columns, len(names)))
    rows = -(-len(names) // cols)
    height = 3.2 * rows + 1.5  # the last 1.5 in: the shared x label and the legend beneath the panels
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH, height), squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        bins = bins_by_loss[name]
        ax.plot([0, 1], [0, 1], color="black", lw=1, ls="--", zorder=1)
        ax.bar(bins["bin_lo"], bins["accuracy"], width=bins["bin_hi"] - bins["bin_lo"], align="edge",
               edgecolor="black", alpha=0.7, color=(colours or {}).get(name, TAB10["blue"]), zorder=2)
        share = bins["count"] / bins["count"].sum()
        ax.stairs(share, [*bins["bin_lo"], bins["bin_hi"].iloc[-1]], color="dimgray", lw=1.5, zorder=3,
                  label="share of images")
        ax.set_title(f"{wrap_name(name)}\npooled ECE {100 * pooled_ece(bins):.2f}%")
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color="lightgray", ec="black", label="accuracy in the bin"),
               plt.Line2D([], [], color="dimgray", lw=1.5, label="share of images in the bin"),
               plt.Line2D([], [], color="black", lw=1, ls="--", label="perfect calibration")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0))
    fig.suptitle(title)
    fig.supxlabel("confidence", y=0.85 / height)
    fig.supylabel("accuracy, share")
    fig.tight_layout(rect=(0, 1.0 / height, 1, 1))
    return fig


def train_test_curves(curves, tags: list[str], labels: dict[str, str], columns: int = 3,
                      guides: dict[str, float] | None = None, ylim: tuple[float, float] | None = None):
    """One small panel per loss that has curves: train and test accuracy (%) per epoch, mean over seeds; a gap
    that opens says overfitting, a curve still rising at the end says the run had not converged. ``guides``
    ({name: accuracy, 0 to 1}) draws a grey line at each in every panel, dotted then dashed; ``ylim`` (in %)
    fixes every panel's axis."""
    tags = [t for t in tags if (curves["loss_tag"] == t).any()]  # a loss without curves gets no empty panel
    rows = -(-len(tags) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH, 2.6 * rows + 0.8), squeeze=False, sharex=True)
    for ax, tag in zip(axes.flat, tags):
        mine = curves[curves["loss_tag"] == tag].groupby("epoch")[["train_acc", "test_acc"]].mean()
        ax.plot(mine.index + 1, 100 * mine["train_acc"], color="tab:orange", label="train")
        ax.plot(mine.index + 1, 100 * mine["test_acc"], color="tab:blue", label="test")
        for (name, value), style in zip((guides or {}).items(), (":", "--", "-.")):
            ax.axhline(100 * value, color="grey", linestyle=style, lw=1, label=name)
        ax.set_title(wrap_name(labels.get(tag, tag), 18))
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    for ax in axes.flat[len(tags):]:
        ax.set_visible(False)
    for column in range(columns):  # the lowest panel of each column carries the epochs, even above an empty slot
        shown = [ax for ax in axes[:, column] if ax.get_visible()]
        if shown:
            shown[-1].tick_params(labelbottom=True)
            shown[-1].set_xlabel("epoch")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=len(names), frameon=False)
    fig.supylabel("accuracy (%)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def run_curves(metrics):
    """One run's metrics.csv: train (dashed) and test accuracy (%) and loss per epoch, side by side."""
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.4))
    for split, style, colour in (("train", "--", "tab:orange"), ("test", "-", "tab:blue")):  # as train_test_curves
        acc.plot(metrics["epoch"] + 1, 100 * metrics[f"{split}_acc"], style, marker="o", label=split, color=colour)
        loss.plot(metrics["epoch"] + 1, metrics[f"{split}_loss"], style, marker="o", label=split, color=colour)
    acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss.set(xlabel="epoch", ylabel="loss (test: cross-entropy)", title="loss")
    for ax in (acc, loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc.legend()
    fig.tight_layout()
    return fig
