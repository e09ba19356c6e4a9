"""The book's shared figures keep the promises their chapters make: at most eight losses a panel, MAE apart,
integer epochs, labelled axes, the book's font sizes."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lossnb.plotting import (FONT_SIZES, MAX_SERIES, book_style, learning_curves, panel_groups,  # noqa: E402
                             reliability_grid, wrap_tag)


def test_panels_hold_at_most_eight_losses_the_first_ones_first():
    groups = panel_groups(["ce", "loss3"], [f"loss{i}" for i in range(19)])
    assert groups[0] == ("benchmark baselines and ours", ["ce", "loss3"])
    assert [title for title, _ in groups[1:]] == [f"other losses ({i} of 3)" for i in (1, 2, 3)]
    assert all(len(g) <= MAX_SERIES for _, g in groups) and sum(len(g) for _, g in groups) == 21


def test_wrapped_titles():
    wrapped = wrap_tag("flsd53-gamma_high3-gamma_low5-threshold0.2", width=24)
    assert all(len(line) <= 24 for line in wrapped.splitlines())
    assert wrapped.replace("\n", "") == "flsd53-gamma_high3-gamma_low5-threshold0.2"


@pytest.fixture
def curves():
    rows = [{"loss_tag": tag, "seed": seed, "epoch": e, "test_acc": 0.5 + 0.01 * e + 0.001 * seed,
             "test_loss": 10.0 ** (3 - e) if tag == "mae" else 1.0 / (e + 1)}
            for tag in ["ce", "focal-gamma2", "mae"] for seed in range(3) for e in range(4)]
    return pd.DataFrame(rows)


def test_learning_curves_draw_each_group_in_a_row_with_integer_epochs(curves):
    book_style()
    groups = [("baselines", ["ce", "focal-gamma2"]), ("MAE", ["mae"])]
    fig = learning_curves(curves, groups, "a study", {"focal-gamma2": "focal gamma 2"})
    axes = fig.axes
    assert len(axes) == 3 * len(groups)
    acc, loss, legend = axes[0], axes[1], axes[2]
    assert acc.get_ylabel() == "test accuracy (%)" and loss.get_ylabel() == "test cross-entropy"
    assert [t.get_text() for t in legend.get_legend().get_texts()] == ["ce", "focal gamma 2"]
    assert all(float(t).is_integer() for t in acc.get_xticks())
    assert acc.get_lines()[0].get_xdata().min() == 1  # epochs counted from 1
    assert axes[4].get_yscale() == "log" and loss.get_yscale() == "linear"  # MAE's loss spans 1000x
    assert acc.title.get_fontsize() == FONT_SIZES["axes.titlesize"]
    plt.close(fig)


def test_reliability_grid_draws_a_panel_per_loss_with_bins_and_nothing_without():
    bins = pd.DataFrame({"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 30], "confidence": [0.3, 0.8],
                         "accuracy": [0.2, 0.9]})
    assert reliability_grid({"ce": pd.DataFrame(), "mae": pd.DataFrame()}, "no bins") is None
    fig = reliability_grid({"ce": bins, "focal-gamma2": bins, "mae": pd.DataFrame()}, "two losses")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 and "pooled ECE 10.00%" in visible[0].get_title()  # (10*0.1 + 30*0.1) / 40
    plt.close(fig)


def test_a_loss_has_one_colour_everywhere_and_the_headline_losses_are_told_apart():
    from matplotlib.colors import to_hex

    from lossnb.plotting import LOSS_COLOURS, loss_colour, loss_palette, seed_dots

    assert len(set(LOSS_COLOURS.values())) == len(LOSS_COLOURS)
    assert loss_colour("flsd53-gamma_high3") == loss_colour("flsd53-gamma_high3")
    assert loss_palette(["ce", "mae"], {"ce": "cross-entropy"}) == {"cross-entropy": LOSS_COLOURS["ce"],
                                                                    "mae": "#000000"}
    runs = pd.DataFrame({"loss_tag": ["ce", "ce", "focal-gamma2"], "status": "complete", "trained": [True, True, False],
                         "best_test_acc": [0.9, 0.91, 0.1]})
    fig = seed_dots(runs, ["ce", "focal-gamma2"], {})
    dots = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert to_hex(dots[0].get_facecolor()[0]) == LOSS_COLOURS["ce"]  # the trained ce seeds, in ce's colour
    plt.close(fig)


def test_a_reliability_diagram_draws_each_bins_share_of_the_images():
    bins = pd.DataFrame({"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 30], "confidence": [0.3, 0.8],
                         "accuracy": [0.2, 0.9]})
    fig = reliability_grid({"ce": bins}, "one loss")
    steps = [p for p in fig.axes[0].patches if type(p).__name__ == "StepPatch"]
    assert len(steps) == 1 and list(steps[0].get_data().values) == [0.25, 0.75]
    plt.close(fig)
