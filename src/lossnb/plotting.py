"""The book's figure style, set once by every study: vector figures whose text the browser draws (so the built
book can be checked for legibility), and font sizes that stay readable when a figure is shrunk to page width."""
from __future__ import annotations

import seaborn as sns

# points; a figure up to ~12 in wide is shown at about 0.9 of its size, so these stay above half the body text
FONT_SIZES = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
              "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 11, "figure.titlesize": 13}


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
