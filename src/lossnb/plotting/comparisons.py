"""Figures that compare losses across seeds: every seed's value with the mean and its interval, the plan's
comparisons as a forest, two studies' means side by side, and a setting swept; an interval far wider than the
rest of its panel's is cut at the edge with an arrow, one rule for all of them."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D

from ..stats import LEAST_PAIRS, mean_ci
from .colours import loss_colour
from .style import LEGEND_ROW, PAGE_WIDTH, legend_beneath, legend_height, wrap_name


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
    no run trained), else a marker at the axis' left edge labelled with the values of the row's runs below it;
    the axis then reaches far enough left that no label covers a dot."""
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
    texts = {y: _values_label(sorted(values)) for y, values in below.items()}
    if texts:
        left = right - (right - left) / (1 - _label_share(ax, texts.values()))
    for y, text in texts.items():  # one marker a row, its runs' values in one label
        ax.plot([left], [y], marker="<", markersize=9, color="black", clip_on=False, zorder=5)
        ax.annotate(text, (left, y), xytext=(LABEL_OFFSET, 0), textcoords="offset points", va="center")
    if trained:  # the markers and labels must not widen the trained runs' axis
        ax.set_xlim(left, right)


LABEL_OFFSET = 8  # points between a marker at the axis' edge and its label


def _values_label(values: list[float]) -> str:
    return (", ".join(f"{v:.1f}" for v in values) if len(values) <= 2 else
            f"{len(values)} runs, {values[0]:.1f}–{values[-1]:.1f}")


def _label_share(ax, texts) -> float:
    """The share of the axis' width that the widest label, its offset and a little air take (measured by
    drawing it; capped so that the dots keep most of the axis)."""
    renderer = ax.figure.canvas.get_renderer()
    widths = []
    for text in texts:
        probe = ax.text(0, 0, text, transform=None)
        widths.append(probe.get_window_extent(renderer).width)
        probe.remove()
    room = max(widths) + 1.5 * LABEL_OFFSET * ax.figure.dpi / 72
    return min(room / ax.get_window_extent(renderer).width, 0.4)


# A verdict is drawn in black and greys, by line style and weight: never in a colour, which the book gives to losses.
VERDICT_STYLES = {"better": ("black", "-", 2.6), "worse": ("black", (0, (1, 1)), 2.6),
                  "equivalent": ("black", (0, (4, 1.5)), 2.0), "undecided": ("0.55", "-", 1.3),
                  "not tested": ("0.8", "-", 1.3)}


BASELINE_MARKERS = "osD^vPX*hp"  # not < or >: those mark an interval cut at a panel's edge


def forest(comparisons, labels: dict[str, str], margin: float):
    """Each comparison of a plan (lossnb.plan.compare) as its difference a - b in points with the 95% CI, one
    panel per family; the equivalence band ±margin shaded and zero drawn beneath the intervals. One row per
    contender a, its comparisons stacked in it in one order of the baselines b, each b with its marker in every
    panel (a grouped forest plot: a quarter of the height of one row per comparison). A comparison on fewer
    seeds than a test needs is its mean difference alone; an interval far wider than the rest of its panel's
    is cut at the panel's edge, an arrow there (forest_span)."""

    untested = comparisons["seeds"] < LEAST_PAIRS  # drawn as a mean alone: its interval sets no axis, no arrow
    comparisons = comparisons.assign(**{col: comparisons[col].mask(untested) for col in ("ci low", "ci high")})
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
        ax.axvspan(-100 * margin, 100 * margin, color="0.5", alpha=0.12, zorder=0)
        ax.axvline(0, color="black", lw=0.8, zorder=1)
        for row, a in enumerate(contenders):
            mine = block[block["a"] == a].sort_values("b", key=lambda b: b.map(baselines.index))
            for j, r in enumerate(mine.to_dict("records")):
                y = row + (j - (len(mine) - 1) / 2) * 0.8 / max(k, 2)
                colour, style, width = VERDICT_STYLES[r["verdict"]]
                if r["seeds"] >= LEAST_PAIRS:  # an untested comparison: its mean only (see seed_dots)
                    draw_interval(ax, 100 * r["ci low"], 100 * r["ci high"], y, (left, right), colour, style, width)
                if r["seeds"]:
                    ax.plot([100 * r["mean diff"]], [y], markers[r["b"]], color=colour, zorder=4)
        ax.set_xlim(left, right)
        ax.set_yticks(range(len(contenders)), [wrap_name(labels.get(a, a), 26) for a in contenders])
        ax.set_ylim(len(contenders) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_title(wrap_name(family, 40), loc="left")
    axes[-1, 0].set_xlabel("a − b in best test accuracy (points), 95% CI")
    verdicts = [plt.Line2D([], [], color=c, ls=style, lw=w, label=v) for v, (c, style, w) in VERDICT_STYLES.items()]
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


def draw_interval(ax, low: float, high: float, y: float, span: tuple[float, float], colour, style="-",
                  width: float = 2) -> bool:
    """An interval as a line within ``span``; where it runs on past an edge, an arrow at that edge. True if cut."""
    left, right = span
    ax.plot([max(low, left), min(high, right)], [y, y], color=colour, ls=style, lw=width, zorder=3)
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
