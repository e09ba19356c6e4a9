"""How a chapter's tables reach the page: pandas' HTML, with no row of their own for the index's name (the name
goes in the header's corner), no stray 0..n index column, and whole cells (never cut to 50 characters).
book_style() installs it as the notebook's HTML form of every DataFrame."""
from __future__ import annotations

import pandas as pd


def page_html(table: pd.DataFrame) -> str:
    if isinstance(table.index, pd.MultiIndex):  # its levels become ordinary columns
        return table.reset_index().to_html(index=False)
    if isinstance(table.index, pd.RangeIndex) and table.index.name is None:
        return table.to_html(index=False)
    if table.index.name is not None and not isinstance(table.columns, pd.MultiIndex):
        return table.rename_axis(index=None, columns=table.index.name).to_html()
    return table.to_html()


def install() -> None:
    """page_html as the HTML of every DataFrame a notebook displays; nothing outside IPython."""
    pd.set_option("display.max_colwidth", None)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, page_html)
