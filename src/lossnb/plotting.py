"""The book's figure style, set once by every study: vector figures whose text the browser draws (so the built
book can be checked for legibility), and font sizes that stay readable when a figure is shrunk to page width."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .analysis import pooled_ece

# points. The book's text column is about 700 px wide at 1280 px, so a figure up to 13 in (936 pt) wide is
# drawn at about 0.75 px per point: 11 pt stays above half the body text's 16 px, which the book test checks.
FONT_SIZES = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 11,
              "ytick.labelsize": 11, "legend.fontsize": 11, "legend.title_fontsize": 11, "figure.titlesize": 13}


def book_style() -> None:
    """seaborn's whitegrid theme with the sizes above, and SVG output with text kept as text."""
    sns.set_theme(style="whitegrid", context="notebook", rc={**FONT_SIZES, "svg.fonttype": "none"})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # outside Jupyter: nothing to configure
        return
    if get_ipython() is not None:
        set_matplotlib_formats("svg")


MAX_SERIES = 8  # lines one panel can hold in colours a reader tells apart


def distinct_colours() -> list:
    """tab10 without its grey (which reads as 'background'): nine colours, enough for MAX_SERIES."""
    colours = sns.color_palette("tab10", 10)
    return colours[:7] + colours[8:]


def series_groups(tags: list[str], headline: list[str],
                  alone: tuple[str, ...] = ("mae",)) -> list[tuple[str, list[str]]]:
    """(title, losses) panels of at most MAX_SERIES losses: the headline ones first, in their order, then the
    others; a loss in ``alone`` (one whose scale would flatten every other curve) gets a panel of its own."""
    solo = [t for t in tags if t.split("-")[0] in alone]
    rest = [t for t in tags if t not in solo]
    first = [t for t in headline if t in rest][:MAX_SERIES]
    others = [t for t in rest if t not in first]
    groups = [("baselines and our designs", first)] if first else []
    groups += [("other losses", others[i:i + MAX_SERIES]) for i in range(0, len(others), MAX_SERIES)]
    return groups + [(f"{t}, on its own scale", [t]) for t in solo]


def learning_curves(curves, groups: list[tuple[str, list[str]]], title: str, labels: dict[str, str] | None = None):
    """Test accuracy (%) and test cross-entropy per epoch (1 = the first), mean and ±1 std band over seeds: a
    row per (title, losses) group, its legend in a third column (outside the panels, inside the figure's
    width); a loss axis spanning more than 50x is logarithmic."""
    labels = labels or {}
    fig, axes = plt.subplots(len(groups), 3, figsize=(12, 3.6 * len(groups)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 0.8]})
    data = curves.assign(epoch=curves["epoch"] + 1, acc=100 * curves["test_acc"])
    colours = distinct_colours()
    for row, (name, group) in zip(axes, groups):
        sel = data[data["loss_tag"].isin(group)].assign(loss=lambda d: d["loss_tag"].map(lambda t: labels.get(t, t)))
        order = [labels.get(t, t) for t in group]
        for ax, (column, ylabel) in zip(row, (("acc", "test accuracy (%)"), ("test_loss", "test cross-entropy"))):
            sns.lineplot(data=sel, x="epoch", y=column, hue="loss", hue_order=order,
                         palette=dict(zip(order, colours)), errorbar="sd", ax=ax, legend=ax is row[0])
            ax.set(xlabel="epoch", ylabel=ylabel, title=f"{name}: {ylabel.split(' (')[0]}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        losses = sel["test_loss"]
        if len(losses) and losses.max() > 50 * losses.min() > 0:
            row[1].set_yscale("log")
        handles, names = row[0].get_legend_handles_labels()
        row[0].get_legend().remove()
        row[2].axis("off")
        row[2].legend(handles, names, loc="center left", frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_label(loss: str, params: dict) -> str:
    """A loss and its settings in words for legends: 'focal gamma 0.5', 'label_smoothing eps 0.1'."""
    shown = {k: v for k, v in params.items() if not (k == "convention" and v == "uniform")}
    text = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
    return f"{loss} {text}" if text else loss


def reliability_grid(bins_by_loss: dict, title: str, columns: int = 4):
    """One reliability diagram per loss (bins pooled over seeds, lossnb.results.pooled_reliability), the
    pooled ECE in each panel's title; None when no loss has bins."""

    names = [n for n, bins in bins_by_loss.items() if not bins.empty]
    if not names:  # records without reliability bins: nothing to draw
        return None
    cols = max(1, min(columns, len(names)))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.1 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        bins = bins_by_loss[name]
        ax.bar(bins["bin_lo"], bins["accuracy"], width=bins["bin_hi"] - bins["bin_lo"], align="edge",
               edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], color="red", lw=1)
        ax.set_title(f"{wrap_tag(name)}\npooled ECE {100 * pooled_ece(bins):.2f}%", fontsize=11)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.supxlabel("confidence")
    fig.supylabel("accuracy")
    fig.tight_layout()
    return fig


def wrap_tag(tag: str, width: int = 24) -> str:
    """A loss tag broken at its hyphens into lines of at most ``width`` characters (panel titles)."""
    lines, line = [], ""
    for part in tag.split("-"):
        candidate = f"{line}-{part}" if line else part
        if line and len(candidate) > width:
            lines.append(line + "-")
            line = part
        else:
            line = candidate
    return "\n".join(lines + [line])
