"""The book's figure style, set once by every study: vector figures whose text the browser draws (so the built
book can be checked for legibility), font sizes that stay readable at page width, and legends beneath the panels."""
from __future__ import annotations

import seaborn as sns


# Every figure is drawn at the width the book shows it: its text column is about 696 px at a 1280 px window,
# 7.25 in at 96 px per inch. An SVG point then shows as 96/72 px, so 12 pt text is the body's 16 px, which the
# book test checks in the browser.
PAGE_WIDTH = 7.25  # inches


FONT_SIZES = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 12,
              "ytick.labelsize": 12, "legend.fontsize": 12, "legend.title_fontsize": 12, "figure.titlesize": 13}


LEGEND_ROW = 0.3  # inches: one row of legend entries at 12 pt


def book_style() -> None:
    """seaborn's whitegrid theme with the sizes above, and SVG output with text kept as text. The SVG carries no
    date and its element ids are salted by a constant, not at random: a chapter executed again on the same
    records is the same file, byte for byte."""
    sns.set_theme(style="whitegrid", context="notebook",
                  rc={**FONT_SIZES, "svg.fonttype": "none", "svg.hashsalt": "lossnb"})
    from ..page_tables import install

    install()  # tables as the page shows them
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # outside Jupyter: nothing to configure
        return
    if get_ipython() is not None:  # the figure as drawn, not cropped to its ink: its width is the page's
        set_matplotlib_formats("svg", bbox_inches=None, metadata={"Date": None})


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
