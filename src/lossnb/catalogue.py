"""The loss catalogue's page content, from the registry: an index with anchors, an overview table, and each
loss's entry (formula, source, settings, its standalone export) in Markdown."""
from __future__ import annotations

import re

import pandas as pd

from . import losses


def anchor(name: str) -> str:
    """The id of a loss's section: its name in lower case, runs of other characters made one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def index_html() -> str:
    """Links to every loss's entry (headings in a cell's output are not the page's own sections, so each
    entry carries an explicit anchor)."""
    links = " · ".join(f'<a href="#{anchor(n)}"><code>{n}</code></a>' for n in losses.available())
    return f"<p><b>Index:</b> {links}</p>"


def overview() -> pd.DataFrame:
    """One row per loss: its source, whether it keeps state, the logits it takes."""
    return pd.DataFrame([{"loss": n, "paper": losses.describe(n)["paper"], "stateful": losses.describe(n)["stateful"],
                          "logits": losses.describe(n)["logits"]} for n in losses.available()]).set_index("loss")


def entry(name: str, show_export: bool = True) -> str:
    """A loss's entry in Markdown: anchor, heading, formula, summary, source, head and state notes, its
    settings' table and (``show_export``) the standalone compute_loss in a dropdown."""
    info = losses.describe(name)
    text = [f'<span id="{anchor(name)}"></span>', "", f"## `{name}`", "", f"$$\\ell = {info['formula']}$$", "",
            info["summary"], "", f"*Source:* {info['paper']}."]
    if info["logits"] == "cosine":
        text += ["", "*Logits:* cosines, from a cosine classifier head (`head: cosine`); a run that pairs it with a "
                 "linear head is refused."]
    if info["stateful"]:
        text += ["", "*Stateful:* keeps state across batches and is reset at the start of every run."]
    if info["params"]:
        text += ["", "| hyperparameter | default | allowed | meaning |", "|---|---|---|---|"]
        text += [f"| `{k}` | `{p['default']}` | {p['domain']} | {p['doc']} |" for k, p in info["params"].items()]
    if show_export:
        # the outer fence is longer than the inner one, or the inner closing fence would end the dropdown
        text += ["", "````{dropdown} Standalone export", "```python", losses.export_source(name).rstrip(), "```",
                 "````"]
    return "\n".join(text)
