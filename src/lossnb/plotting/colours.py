"""One colour per loss on every page of the book."""
from __future__ import annotations

import functools
import zlib

import seaborn as sns


MAX_SERIES = 8  # lines one panel can hold in colours a reader tells apart


TAB10 = dict(zip(("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan"),
                  sns.color_palette("tab10", 10).as_hex()))


# One colour per loss on every page of the book: the losses every study shows are fixed here (another setting of
# one of them keeps its loss's colour); every other registry loss has one of OTHER_COLOURS by its place in the
# registry, so no two share one; a loss file takes one by a hash of its name.
LOSS_COLOURS = {"ce": TAB10["blue"], "label_smoothing-conventionuniform-eps0.1": TAB10["orange"],
                "focal-gamma2": TAB10["red"], "focal-gamma0.5": TAB10["pink"], "poly1-epsilon1": TAB10["brown"],
                "mae": "#000000", "maxsup-alpha_end0.2-alpha_start0.1": TAB10["olive"],
                "capped_ce-p_cap0.97-sharpness10": TAB10["green"], "selfshaped_ls-eps0.2": TAB10["purple"],
                "complement_ls-eps0.1": TAB10["cyan"]}


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
    from .. import losses

    fixed = {key.split("-")[0]: colour for key, colour in LOSS_COLOURS.items()}
    return fixed, [n for n in losses.available() if n not in fixed]


def loss_palette(tags, labels: dict[str, str] | None = None) -> dict[str, str]:
    """{label (or tag): colour} for seaborn's ``palette``, the labels being what the figure's hue holds."""
    labels = labels or {}
    return {labels.get(t, t): loss_colour(t) for t in tags}
