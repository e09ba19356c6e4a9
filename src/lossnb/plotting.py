"""The book's figure style, set once by every study: vector figures whose text the browser draws (so the built
book can be checked for legibility), and font sizes that stay readable when a figure is shrunk to page width."""
from __future__ import annotations

import functools
import zlib

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.stats import gmean, gstd

from .analysis import pooled_ece

# Every figure is drawn at the width the book shows it: its text column is about 696 px at a 1280 px window,
# 7.25 in at 96 px per inch. An SVG point then shows as 96/72 px, so 12 pt text is the body's 16 px, which the
# book test checks in the browser.
PAGE_WIDTH = 7.25  # inches
FONT_SIZES = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 12,
              "ytick.labelsize": 12, "legend.fontsize": 12, "legend.title_fontsize": 12, "figure.titlesize": 13}
LEGEND_ROW = 0.3  # inches: one row of legend entries at 12 pt


def book_style() -> None:
    """seaborn's whitegrid theme with the sizes above, and SVG output with text kept as text."""
    sns.set_theme(style="whitegrid", context="notebook", rc={**FONT_SIZES, "svg.fonttype": "none"})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # outside Jupyter: nothing to configure
        return
    if get_ipython() is not None:  # the figure as drawn, not cropped to its ink: its width is the page's
        set_matplotlib_formats("svg", bbox_inches=None)


MAX_SERIES = 8  # lines one panel can hold in colours a reader tells apart


_TAB10 = dict(zip(("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan"),
                  sns.color_palette("tab10", 10).as_hex()))
# One colour per loss on every page of the book: the losses every study shows are fixed here (another setting of
# one of them keeps its loss's colour); every other registry loss has one of OTHER_COLOURS by its place in the
# registry, so no two share one; a loss file takes one by a hash of its name.
LOSS_COLOURS = {"ce": _TAB10["blue"], "label_smoothing-conventionuniform-eps0.1": _TAB10["orange"],
                "focal-gamma2": _TAB10["red"], "focal-gamma0.5": _TAB10["pink"], "poly1-epsilon1": _TAB10["brown"],
                "mae": "#000000", "maxsup-alpha_end0.2-alpha_start0.1": _TAB10["olive"],
                "capped_ce-p_cap0.97-sharpness10": _TAB10["green"], "selfshaped_ls-eps0.2": _TAB10["purple"],
                "complement_ls-eps0.1": _TAB10["cyan"]}
OTHER_COLOURS = sns.color_palette("Dark2", 8).as_hex() + sns.color_palette("tab20b", 20).as_hex()[::2]


def loss_colour(tag: str) -> str:
    """The colour of a loss (its tag, as in the records) in every figure of the book."""
    tag = tag.split("/")[-1]  # a plan of several tasks keys a loss "<task>/<tag>": the loss keeps its colour
    if tag in LOSS_COLOURS:
        return LOSS_COLOURS[tag]
    fixed, others = _colour_order()
    name = tag.split("-")[0]
    if name in fixed:
        return fixed[name]
    if name in others:
        return OTHER_COLOURS[others.index(name) % len(OTHER_COLOURS)]
    return OTHER_COLOURS[zlib.crc32(tag.encode()) % len(OTHER_COLOURS)]  # crc32: stable across processes


@functools.cache
def _colour_order() -> tuple[dict[str, str], list[str]]:
    """({loss name: colour} of the fixed losses' other settings, the registry's other losses in order)."""
    from . import losses

    fixed = {key.split("-")[0]: colour for key, colour in LOSS_COLOURS.items()}
    return fixed, [n for n in losses.available() if n not in fixed]


def loss_palette(tags, labels: dict[str, str] | None = None) -> dict[str, str]:
    """{label (or tag): colour} for seaborn's ``palette``, the labels being what the figure's hue holds."""
    labels = labels or {}
    return {labels.get(t, t): loss_colour(t) for t in tags}


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
               edgecolor="black", alpha=0.7, color=(colours or {}).get(name, _TAB10["blue"]), zorder=2)
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


def legend_height(count: int, columns: int) -> float:
    """Inches a figure legend of ``count`` entries in rows of ``columns`` takes beneath the panels."""
    return LEGEND_ROW * -(-count // columns) + 0.1


def legend_beneath(fig, handles, labels, columns: int = 2) -> None:
    """A figure legend in rows of ``columns`` beneath the panels, laid out above it (the figure's height has
    room for it: ``legend_height``)."""
    fig.tight_layout(rect=(0, legend_height(len(handles), columns) / fig.get_figheight(), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False)


def wrap_name(name: str, width: int = 20) -> str:
    """A loss in words broken at spaces into lines of at most ``width`` characters (narrow panel titles); a line
    break already in ``name`` is kept."""
    import textwrap

    return "\n".join(part for line in name.split("\n") for part in textwrap.wrap(line, width)) or name


def split_off(tags: list[str], alone: tuple[str, ...] = ("mae",)) -> list[list[str]]:
    """The tags in one group, and a loss in ``alone`` (whose scale would flatten the others) in a second."""
    solo = [t for t in tags if t.split("-")[0] in alone]
    rest = [t for t in tags if t not in solo]
    return [g for g in (rest, solo) if g]


def seed_dots(runs, tags: list[str], labels: dict[str, str], metric: str = "best_test_acc",
              xlabel: str = "best test accuracy (%)"):
    """Each loss a row: every seed's value as a dot in the loss's colour, and the mean with its 95% t interval
    over trained runs as a black bar, the interval from stats.LEAST_PAIRS trained seeds on (from two, t with one
    degree of freedom spans tens of points and would set the axis) (``runs`` has the ``trained`` column of
    lossnb.plan.study_runs; its ``collapsed`` column, where there is one, draws a run that trained and then fell
    back to chance as an open circle: counted, but not like the others). The axis spans the trained runs; a
    run that did not train is a cross, or, below the axis, a left-pointing marker at its edge with its value
    beside it (near chance, it would squeeze the rest into a sliver). MAE, far below the rest, gets a panel of
    its own."""
    from .stats import LEAST_PAIRS, mean_ci

    groups = split_off(tags)
    fig, axes = plt.subplots(1, len(groups), figsize=(PAGE_WIDTH, 0.45 * len(tags) + 1.6), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1][:len(groups)]})
    for ax, group in zip(axes[0], groups):
        failed = []
        for y, tag in enumerate(group):
            mine = runs[(runs["loss_tag"] == tag) & (runs["status"] == "complete")]
            ok = mine[mine["trained"]]
            hollow = ok["collapsed"].to_numpy(dtype=bool) if "collapsed" in ok else np.zeros(len(ok), bool)
            colour = to_rgba(loss_colour(tag), 0.8)  # in the colours, not alpha=, which would fill the hollow
            ax.scatter(100 * ok[metric], [y] * len(ok), s=22, edgecolors=[colour], zorder=3,
                       facecolors=np.where(hollow[:, None], (0, 0, 0, 0), colour))
            failed += [(y, 100 * v) for v in mine.loc[~mine["trained"], metric]]
            mean, low, high = mean_ci(100 * ok[metric].to_numpy(dtype=float), bounds=(0, 100))
            if len(ok) >= LEAST_PAIRS:
                ax.plot([low, high], [y, y], color="black", lw=2, zorder=4)
            if len(ok):
                ax.plot([mean], [y], marker="|", markersize=14, color="black", zorder=5)
        _mark_failed(ax, failed)
        ax.set_yticks(range(len(group)), [labels.get(t, t) for t in group])
        ax.set_ylim(len(group) - 0.5, -0.5)
        ax.set_xlabel(xlabel)
    if len(groups) > 1:
        axes[0][1].yaxis.tick_right()
    fig.tight_layout()
    return fig


STUDY_MARKERS = [("s", "tab:gray"), ("o", "black")]  # the first study of a figure grey squares, the second black dots


def means_by_study(runs, tags: list[str], labels: dict[str, str], studies: dict[str, str],
                   metric: str = "best_test_acc", xlabel: str = "best test accuracy (%)"):
    """Each loss a row, and in it one mean with its 95% t interval (cut at 0 and 100%) per study of ``studies``
    ({study: its name in the legend}, at most two), a little apart so that the intervals do not hide each
    other; over the runs that trained (``runs`` has the ``trained`` column of lossnb.plan.study_runs), the
    interval from stats.LEAST_PAIRS of them on, one far wider than the rest cut at the edge with an arrow
    (interval_span). MAE, far below the rest, gets a panel of its own."""
    from .stats import LEAST_PAIRS, mean_ci

    groups = split_off(tags)
    fig, axes = plt.subplots(1, len(groups), figsize=(PAGE_WIDTH, 0.45 * len(tags) + 1.6 + LEGEND_ROW),
                             squeeze=False, gridspec_kw={"width_ratios": [3, 1][:len(groups)]})
    offsets = np.linspace(-0.15, 0.15, len(studies)) if len(studies) > 1 else [0.0]
    cut = False
    for ax, group in zip(axes[0], groups):
        points = []  # (row, study's marker and colour, mean, low, high)
        for y, tag in enumerate(group):
            for study, style, dy in zip(studies, STUDY_MARKERS, offsets):
                ok = runs[(runs["study"] == study) & (runs["loss_tag"] == tag) & runs["trained"]]
                if len(ok):
                    mean, low, high = mean_ci(100 * ok[metric].to_numpy(dtype=float), bounds=(0, 100))
                    points.append((y + dy, style, mean, *((low, high) if len(ok) >= LEAST_PAIRS else (np.nan,) * 2)))
        span = interval_span(*zip(*[p[2:] for p in points])) if points else None
        for y, (marker, colour), mean, low, high in points:
            if not np.isnan(low):
                cut |= draw_interval(ax, low, high, y, span, colour)
            ax.plot([mean], [y], marker=marker, color=colour, markersize=7, ls="none", zorder=4)
        if span:
            ax.set_xlim(span)
        ax.set_yticks(range(len(group)), [labels.get(t, t) for t in group])
        ax.set_ylim(len(group) - 0.5, -0.5)
        ax.set_xlabel(xlabel)
    if len(groups) > 1:
        axes[0][1].yaxis.tick_right()
    handles = [Line2D([], [], marker=m, color=c, lw=2) for m, c in STUDY_MARKERS[:len(studies)]]
    names = list(studies.values())
    if cut:
        handles, names = handles + [cut_handle()], names + [CUT_HANDLE_LABEL]
    legend_beneath(fig, handles, names, columns=min(len(names), 2))
    return fig


def _mark_failed(ax, failed: list[tuple[int, float]]) -> None:
    """Runs that did not train: a cross at (value, row) inside the axis the trained runs span (anywhere where
    no run trained), else a marker at the axis' left edge labelled with the values of the row's runs below it."""
    trained = ax.has_data()
    left, right = ax.get_xlim()
    inside: list[tuple[int, float]] = []
    below: dict[int, list[float]] = {}
    for y, value in failed:
        if not trained or value >= left:
            inside.append((y, value))
        else:
            below.setdefault(y, []).append(value)
    if inside:
        ax.scatter([v for _, v in inside], [y for y, _ in inside], s=40, marker="x", color="black", zorder=3)
    for y, values in below.items():  # one marker a row, its runs' values in one label
        values = sorted(values)
        text = (", ".join(f"{v:.1f}" for v in values) if len(values) <= 2 else
                f"{len(values)} runs, {values[0]:.1f}–{values[-1]:.1f}")
        ax.plot([left], [y], marker="<", markersize=9, color="black", clip_on=False, zorder=5)
        ax.annotate(text, (left, y), xytext=(8, 0), textcoords="offset points", va="center")
    if trained:  # the markers and labels must not widen the trained runs' axis
        ax.set_xlim(left, right)


VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "undecided": "tab:gray",
                   "not tested": "lightgray"}
BASELINE_MARKERS = "osD^vPX*hp"  # not < or >: those mark an interval cut at a panel's edge


def forest(comparisons, labels: dict[str, str], margin: float):
    """Each comparison of a plan (lossnb.plan.compare) as its difference a - b in points with the 95% CI, one
    panel per family; the equivalence band ±margin shaded and zero drawn beneath the intervals. One row per
    contender a, its comparisons stacked in it in one order of the baselines b, each b with its marker in every
    panel (a grouped forest plot: a quarter of the height of one row per comparison). A comparison on fewer
    seeds than a test needs is its mean difference alone; an interval far wider than the rest of its panel's
    is cut at the panel's edge, an arrow there (forest_span)."""
    from .stats import LEAST_PAIRS

    families = list(dict.fromkeys(comparisons["family"]))
    counts = comparisons["b"].value_counts()
    baselines = sorted(dict.fromkeys(comparisons["b"]), key=lambda b: -counts[b])  # most compared-with first
    markers = {b: BASELINE_MARKERS[i % len(BASELINE_MARKERS)] for i, b in enumerate(baselines)}
    blocks = [comparisons[comparisons["family"] == f] for f in families]
    slots = [int(block.groupby("a").size().max()) for block in blocks]
    rows = [block["a"].nunique() for block in blocks]
    heights = [n * (0.3 + 0.14 * k) + 0.55 for n, k in zip(rows, slots)]
    spans = [forest_span(block, margin) for block in blocks]
    cut_any = any(((100 * b["ci low"] < lo) | (100 * b["ci high"] > hi)).any() for b, (lo, hi) in zip(blocks, spans))
    legend_rows = 1 + -(-(len(baselines) + cut_any) // 3)  # the verdicts in one row, the baselines in rows of three
    fig, axes = plt.subplots(len(families), 1, figsize=(PAGE_WIDTH, sum(heights) + LEGEND_ROW * legend_rows + 0.7),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, family, block, k, (left, right) in zip(axes[:, 0], families, blocks, slots, spans):
        contenders = list(dict.fromkeys(block["a"]))
        ax.axvspan(-100 * margin, 100 * margin, color="tab:blue", alpha=0.08, zorder=0)
        ax.axvline(0, color="black", lw=0.8, zorder=1)
        for row, a in enumerate(contenders):
            mine = block[block["a"] == a].sort_values("b", key=lambda b: b.map(baselines.index))
            for j, r in enumerate(mine.to_dict("records")):
                y = row + (j - (len(mine) - 1) / 2) * 0.8 / max(k, 2)
                colour = VERDICT_COLOURS[r["verdict"]]
                if r["seeds"] >= LEAST_PAIRS:  # an untested comparison: its mean only (see seed_dots)
                    draw_interval(ax, 100 * r["ci low"], 100 * r["ci high"], y, (left, right), colour)
                if r["seeds"]:
                    ax.plot([100 * r["mean diff"]], [y], markers[r["b"]], color=colour, zorder=4)
        ax.set_xlim(left, right)
        ax.set_yticks(range(len(contenders)), [wrap_name(labels.get(a, a), 26) for a in contenders])
        ax.set_ylim(len(contenders) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_title(wrap_name(family, 40), loc="left")
    axes[-1, 0].set_xlabel("a − b in best test accuracy (points), 95% CI")
    verdicts = [plt.Line2D([], [], color=c, lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    against = [plt.Line2D([], [], color="black", marker=markers[b], ls="", label=f"− {labels.get(b, b)}")
               for b in baselines]
    if cut_any:
        against.append(cut_handle())
    top = LEGEND_ROW * (legend_rows - 1) / fig.get_figheight()
    fig.add_artist(fig.legend(handles=verdicts, loc="lower center", bbox_to_anchor=(0.5, top), ncol=5,
                              frameon=False, handlelength=1.2, columnspacing=1.0))
    fig.legend(handles=against, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, (LEGEND_ROW * legend_rows + 0.15) / fig.get_figheight(), 1, 1))
    return fig


LONG_INTERVAL = 5  # an interval this many times the median half-width of its panel's is cut at the edge


def interval_span(means, lows, highs, keep=()) -> tuple[float, float]:
    """A panel's x-limits: every mean, the values in ``keep`` and every interval but those over LONG_INTERVAL
    times the panel's median half-width, which would squeeze the others into a sliver (a collapsed run's
    comparisons span tens of points), with 5% to spare either side. NaN bounds (an untested mean) are skipped."""
    lows, highs = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    tested = ~(np.isnan(lows) | np.isnan(highs))
    half = (highs - lows)[tested] / 2
    kept = half <= LONG_INTERVAL * np.median(half) if len(half) else np.zeros(0, bool)
    values = np.concatenate([np.asarray(means, dtype=float), lows[tested][kept], highs[tested][kept],
                             np.asarray(keep, dtype=float)])
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    spare = 0.05 * (high - low) or 1.0  # a single value: a point either side
    return low - spare, high + spare


def draw_interval(ax, low: float, high: float, y: float, span: tuple[float, float], colour) -> bool:
    """An interval as a line within ``span``; where it runs on past an edge, an arrow at that edge. True if cut."""
    left, right = span
    ax.plot([max(low, left), min(high, right)], [y, y], color=colour, lw=2, zorder=3)
    for edge, marker, past in ((left, "<", low < left), (right, ">", high > right)):
        if past:
            ax.plot([edge], [y], marker, color=colour, markersize=6, zorder=4, clip_on=False)
    return low < left or high > right


CUT_HANDLE_LABEL = "interval runs on"


def cut_handle() -> Line2D:
    return Line2D([], [], color="black", marker=">", ls="", label=CUT_HANDLE_LABEL)


def forest_span(block, margin: float) -> tuple[float, float]:
    """A forest panel's x-limits in points (interval_span): its mean differences, zero and the equivalence
    band kept in view."""
    return interval_span(100 * block["mean diff"].dropna(), 100 * block["ci low"], 100 * block["ci high"],
                         keep=(-100 * margin, 100 * margin))


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
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=len(names), frameon=False)
    fig.supxlabel("epoch")
    fig.supylabel("accuracy (%)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


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


def eps_sweep(sweep):
    """Best test accuracy and final ECE (%) against ε (lossnb.designs.eps_sweep: 'loss name' and 'tag' for its
    colour), mean with ±1 std bars over seeds, one row per study and task (so the figure keeps its width, and
    its text its size, as studies gain records)."""
    colours = {name: loss_colour(tag) for name, tag in zip(sweep["loss name"], sweep["tag"])}
    keys = list(sweep[["study", "task"]].drop_duplicates().itertuples(index=False, name=None))
    height = 3.2 * len(keys) + 0.2 + legend_height(len(colours), 3)
    fig, axes = plt.subplots(len(keys), 2, figsize=(PAGE_WIDTH, height), squeeze=False, sharex=True)
    for row, (study, task) in zip(axes, keys):
        data = sweep[(sweep["study"] == study) & (sweep["task"] == task)]
        for ax, (metric, label) in zip(row, (("best_test_acc", "best test accuracy (%)"),
                                             ("final_test_ece", "final test ECE (%)"))):
            sns.lineplot(data=data.assign(value=100 * data[metric]), x="eps", y="value", hue="loss name",
                         style="loss name", markers=True, errorbar="sd", err_style="bars", ax=ax,
                         palette=colours, legend=ax is axes[0, 1])
            ax.set(xlabel=r"$\varepsilon$", ylabel=label, title=wrap_name(f"{study}, {task}", 26))
    handles, names = axes[0, 1].get_legend_handles_labels()
    axes[0, 1].get_legend().remove()
    legend_beneath(fig, handles, names, columns=3)
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
