"""How a chapter's tables reach the page: pandas' HTML, with no row of their own for the index's name (the name
goes in the header's corner), no stray 0..n index column, and whole cells (never cut to 50 characters); a
formatted table (a Styler) with element ids drawn from its content, not at random, so that a chapter executed
again on the same records is the same file. book_style() installs both as the notebook's HTML forms."""
from __future__ import annotations

import hashlib

import pandas as pd
from pandas.io.formats.style import Styler


def page_html(table: pd.DataFrame) -> str:
    if isinstance(table.index, pd.MultiIndex):  # its levels become ordinary columns
        return table.reset_index().to_html(index=False)
    if isinstance(table.index, pd.RangeIndex) and table.index.name is None:
        return table.to_html(index=False)
    if table.index.name is not None and not isinstance(table.columns, pd.MultiIndex):
        return table.rename_axis(index=None, columns=table.index.name).to_html()
    return table.to_html()


def styler_html(styler: Styler) -> str:
    digest = hashlib.sha1(styler.data.to_csv().encode()).hexdigest()[:8]
    return styler.set_uuid(digest).to_html()


def install() -> None:
    """page_html and styler_html as the HTML of every table a notebook displays; nothing outside IPython."""
    pd.set_option("display.max_colwidth", None)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        html = shell.display_formatter.formatters["text/html"]
        html.for_type(pd.DataFrame, page_html)
        html.for_type(Styler, styler_html)
        # its plain-text form would be '<Styler at 0x7f...>', an address that differs at every execution
        shell.display_formatter.formatters["text/plain"].for_type(
            Styler, lambda styler, printer, cycle: printer.text(styler.data.to_string()))
