"""A chapter's tables as HTML: read back with the standard library's HTML parser, not with the code's own output."""
from html.parser import HTMLParser

import pandas as pd

from lossnb.page_tables import page_html, styler_html


class Rows(HTMLParser):
    """Each <tr> of a table as the list of its cells' text, header rows apart."""

    def __init__(self):
        super().__init__()
        self.head, self.body, self.cell, self.part = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag in ("thead", "tbody"):
            self.part = self.head if tag == "thead" else self.body
        elif tag == "tr":
            self.part.append([])
        elif tag in ("th", "td"):
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.part[-1].append(self.cell.strip())
            self.cell = None


def rows(html):
    parser = Rows()
    parser.feed(html)
    return parser.head, parser.body


def test_a_named_index_puts_its_name_in_the_corner_of_one_header_row():
    table = pd.DataFrame({"runs": [10, 9], "verdict": ["better", "undecided"]},
                         index=pd.Index(["capped CE", "MAE"], name="loss"))
    head, body = rows(page_html(table))
    assert head == [["loss", "runs", "verdict"]]
    assert body == [["capped CE", "10", "better"], ["MAE", "9", "undecided"]]


def test_a_default_index_is_not_shown_and_long_cells_are_whole():
    reading = "training accuracy at chance from epoch 1; at the end the output is uniform"
    head, body = rows(page_html(pd.DataFrame({"loss": ["focal γ=2"], "reading": [reading]})))
    assert head == [["loss", "reading"]] and body == [["focal γ=2", reading]]


def test_a_two_level_index_becomes_two_columns():
    table = pd.DataFrame({"best %": [10.0, 59.51]},
                         index=pd.MultiIndex.from_tuples([("focal γ=2", 32768), ("focal γ=2", 789)],
                                                         names=["loss", "seed"]))
    head, body = rows(page_html(table))
    assert head == [["loss", "seed", "best %"]]
    assert body == [["focal γ=2", "32768", "10.00"], ["focal γ=2", "789", "59.51"]]


def test_a_formatted_table_has_the_same_ids_each_time_and_other_tables_other_ids():
    first = pd.DataFrame({"error": [1.1e-16, 7.6e-17]}, index=["cross-entropy", "focal"])
    again = styler_html(first.copy().style.format("{:.1e}"))
    assert styler_html(first.style.format("{:.1e}")) == again and "1.1e-16" in again
    other = styler_html(pd.DataFrame({"error": [2.0e-16]}, index=["MAE"]).style.format("{:.1e}"))
    ids = lambda html: {part.split('"')[0] for part in html.split('id="')[1:]}
    assert not ids(again) & ids(other)
