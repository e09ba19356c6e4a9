"""The book's shared figures keep the promises their chapters make: at most eight losses a panel, MAE apart,
integer epochs, labelled axes, the book's font sizes."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import gmean, gstd  # noqa: E402

from lossnb.plotting import (FONT_SIZES, MAX_SERIES, book_style, learning_curves, panel_groups,  # noqa: E402
                             reliability_grid, wrap_name)


def test_panels_hold_at_most_eight_losses_the_first_ones_first():
    groups = panel_groups(["ce", "loss3"], [f"loss{i}" for i in range(19)])
    assert groups[0] == ("benchmark baselines and ours", ["ce", "loss3"])
    assert [title for title, _ in groups[1:]] == [f"other losses ({i} of 3)" for i in (1, 2, 3)]
    assert all(len(g) <= MAX_SERIES for _, g in groups) and sum(len(g) for _, g in groups) == 21


def test_wrapped_titles():
    wrapped = wrap_name("capped CE p_cap=0.97, sharpness=10", width=20)
    assert wrapped == "capped CE\np_cap=0.97,\nsharpness=10"
    assert wrap_name("focal γ=2\nseed 789", width=20) == "focal γ=2\nseed 789"  # a break given is kept


@pytest.fixture
def curves():
    rows = [{"loss_tag": tag, "seed": seed, "epoch": e, "test_acc": 0.5 + 0.01 * e + 0.001 * seed,
             "train_acc": 0.5 + 0.02 * e,
             "test_loss": 10.0 ** (3 - e) * (seed + 1) if tag == "mae" else 1.0 / (e + 1)}
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
    mae = curves[curves["loss_tag"] == "mae"].groupby("epoch")["test_loss"]
    line, band = axes[4].get_lines()[0], axes[4].collections[0].get_paths()[0].vertices[:, 1]
    assert list(line.get_ydata()) == pytest.approx(list(mae.agg(gmean)))  # on a log axis, the geometric mean
    assert band.min() == pytest.approx((mae.agg(gmean) / mae.agg(gstd)).min())  # ×/÷ gstd: above zero
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

    import lossnb.losses as L
    from lossnb.plotting import LOSS_COLOURS, loss_colour, loss_palette, seed_dots

    assert len(set(LOSS_COLOURS.values())) == len(LOSS_COLOURS)
    others = [n for n in L.available() if not any(tag.split("-")[0] == n for tag in LOSS_COLOURS)]
    assert len({loss_colour(n) for n in others}) == len(others)  # no two other losses share a colour
    assert not {loss_colour(n) for n in others} & set(LOSS_COLOURS.values())
    assert loss_colour("capped_ce-p_cap0.8-sharpness10") == LOSS_COLOURS["capped_ce-p_cap0.97-sharpness10"]
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


def _comparisons():
    long = "the cosine head against cross-entropy on the linear head, a family with a long name"
    return pd.DataFrame({"family": [long, long, "short"], "a": ["arc", "sphere", "ce"], "b": ["ce", "ce", "mae"],
                         "seeds": [5, 1, 0], "mean diff": [-0.05, 0.01, float("nan")],
                         "ci low": [-0.08, float("nan"), float("nan")], "ci high": [-0.02, float("nan"), float("nan")],
                         "verdict": ["worse", "not tested", "not tested"]})


def _figures(curves):
    import torch

    from lossnb.gradients import angular_curves, weights_of
    from lossnb.plotting import (angular_pulls, eps_sweep, forest, means_by_study, run_curves, seed_dots,
                                 slice_panels, train_test_curves, weight_curves)

    labels = {"arc": "ArcFace (s 64, m 0.5)", "sphere": "SphereFace (s 64, m 1.35)", "ce": "CE, linear head"}
    p = torch.linspace(0.01, 0.99, 9, dtype=torch.float64)
    entries = ["ce", ("label_smoothing", {"eps": 0.1}), ("capped_ce", {"p_cap": 0.97, "sharpness": 10}),
               ("selfshaped_ls", {"eps": 0.2}), ("complement_ls", {"eps": 0.1})]
    weights = pd.concat([weights_of(entries, c, p) for c in (10, 100)])
    runs = pd.DataFrame({"loss_tag": ["ce", "ce", "mae"], "status": "complete", "trained": [True, True, False],
                         "best_test_acc": [0.9, 0.91, 0.1]})
    bins = pd.DataFrame({"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 30], "confidence": [0.3, 0.8],
                         "accuracy": [0.2, 0.9]})
    sweep = pd.DataFrame({"study": "a-study-with-a-long-name-e20", "task": "convnet-fashionmnist", "eps": [0, 0.1, 0.2],
                          "loss name": ["cross-entropy", "label smoothing ε=0.1", "self-shaped LS"],
                          "tag": ["ce", "label_smoothing-conventionuniform-eps0.1", "selfshaped_ls-eps0.2"],
                          "best_test_acc": [0.9, 0.91, 0.92], "final_test_ece": [0.01, 0.05, 0.1]})
    theta = torch.linspace(0.1, 3.0, 9, dtype=torch.float64)
    cosine = angular_curves("arcface", 10, theta).assign(curve="ArcFace (s 64, m 0.5)", tag="arcface")
    metrics = pd.DataFrame({"epoch": [0, 1], "train_acc": [0.5, 0.6], "test_acc": [0.5, 0.7], "train_loss": [1, 0.8],
                            "test_loss": [1, 0.7]})
    return {"forest": forest(_comparisons(), labels, 0.005), "seed dots": seed_dots(runs, ["ce", "mae"], {}),
            "reliability": reliability_grid({"capped CE p_cap=0.97, sharpness=10": bins, "ce": bins}, "bins"),
            "learning curves": learning_curves(curves, [("baselines", ["ce", "focal-gamma2"]), ("MAE", ["mae"])], ""),
            "train and test": train_test_curves(curves, ["ce", "focal-gamma2", "mae"], {}),
            "weights": weight_curves(weights[weights["C"] == 10], 1, (-1, 2)),
            "slice": slice_panels(weights, panel_groups(list(dict.fromkeys(weights["loss"])), []), "weight", "w")[0],
            "eps sweep": eps_sweep(sweep), "angular": angular_pulls(cosine), "one run": run_curves(metrics),
            "two studies": means_by_study(runs.assign(study="s"), ["ce", "mae"], {}, {"s": "20 epochs (shortened)",
                                                                                      "t": "200 epochs (full length)"})}


def test_every_figure_is_drawn_at_the_page_width_with_all_its_ink_inside(curves):
    """The book shows figures as drawn (not cropped to their ink): a label, title or legend outside the figure
    would be cut off, and a figure wider than the page would be shrunk below the body text's size."""
    from lossnb.plotting import PAGE_WIDTH

    book_style()
    for name, fig in _figures(curves).items():
        width, height = fig.get_size_inches()
        ink = fig.get_tightbbox(fig.canvas.get_renderer())
        assert width == PAGE_WIDTH, name
        assert ink.x0 >= -0.01 and ink.y0 >= -0.01 and ink.x1 <= width + 0.01 and ink.y1 <= height + 0.01, name
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]
        assert min(t.get_fontsize() for t in texts) >= 12, name
        plt.close(fig)


def test_a_forest_draws_its_verdicts_in_black_and_greys_never_in_a_loss_colour():
    """Every verdict, each drawn: each line, marker and band of the figure is a grey (red = green = blue, as
    matplotlib resolves the colour), so no verdict reads as a loss; the five verdicts are five styles."""
    from matplotlib.colors import to_rgb

    from lossnb.plotting import forest

    book_style()
    verdicts = ["better", "worse", "equivalent", "undecided", "not tested"]
    table = pd.DataFrame([{"family": "f", "a": "x", "b": b, "seeds": 5 if v != "not tested" else 2,
                           "mean diff": 0.01 * i, "ci low": 0.01 * i - 0.002, "ci high": 0.01 * i + 0.002, "verdict": v}
                          for i, (b, v) in enumerate(zip("abcde", verdicts))])
    fig = forest(table, {}, 0.005)
    ax = fig.axes[0]
    colours = [to_rgb(line.get_color()) for line in ax.get_lines()] + [p.get_facecolor()[:3] for p in ax.patches]
    assert colours and all(max(c) - min(c) < 1e-6 for c in colours)
    legend = [(line.get_color(), str(line.get_linestyle()), line.get_linewidth())
              for line in fig.legends[0].get_lines()]
    assert len(legend) == len(verdicts) == len(set(legend))
    plt.close(fig)


def test_a_forest_stacks_a_contenders_comparisons_in_its_row_and_gives_each_baseline_one_marker():
    from lossnb.plotting import forest

    book_style()
    diffs = {("x", "ce"): 0.011, ("x", "ls"): 0.012, ("y", "ce"): 0.013, ("y", "ls"): 0.014, ("x2", "ls"): 0.015}
    table = pd.DataFrame([{"family": "one" if a != "x2" else "two", "a": a, "b": b, "seeds": 5, "mean diff": d,
                           "ci low": d - 0.001, "ci high": d + 0.001, "verdict": "better"}
                          for (a, b), d in diffs.items()])
    fig = forest(table, {"x": "design x"}, 0.005)
    first, second = fig.axes[:2]
    assert [t.get_text() for t in first.get_yticklabels()] == ["design x", "y"]
    marker = {}
    for ax in (first, second):
        for line in ax.get_lines():
            x, y = line.get_data()
            if len(x) == 1:  # a point: its difference in points names its comparison
                pair = next(k for k, d in diffs.items() if abs(100 * d - x[0]) < 1e-9)
                marker.setdefault(pair[1], set()).add(line.get_marker())
                assert round(y[0]) == {"x": 0, "y": 1, "x2": 0}[pair[0]]  # in its contender's row
    assert len(marker["ls"]) == 1 and marker["ls"] != marker["ce"]
    plt.close(fig)


def test_a_run_that_did_not_train_does_not_set_the_axis_of_those_that_did():
    from lossnb.plotting import seed_dots

    book_style()
    runs = pd.DataFrame({"loss_tag": ["ce"] * 3 + ["poly1-epsilon1"] * 3 + ["arcface"] * 3, "status": "complete",
                         "trained": [True, True, True, True, True, False, False, False, False],
                         "best_test_acc": [0.86, 0.87, 0.88, 0.85, 0.86, 0.10, 0.12, 0.15, 0.13]})
    fig = seed_dots(runs, ["ce", "poly1-epsilon1", "arcface"], {})
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert 10 < left < 85 and right > 88  # the trained runs' span, not 10 to 88
    assert [t.get_text() for t in ax.texts] == ["10.0", "3 runs, 12.0–15.0"]  # their values, one label a row
    plt.close(fig)


def test_a_label_of_runs_below_the_axis_covers_no_dot():
    from lossnb.plotting import seed_dots

    book_style()
    # a collapsed run at 59.5 sets the axis' left edge, where the label of the run below would go
    accs = [0.86, 0.87, 0.88, 0.865, 0.875, 0.87, 0.86, 0.88, 0.595]  # its interval narrower than the dots' span
    runs = pd.DataFrame({"loss_tag": "focal-gamma2", "status": "complete", "trained": [True] * 9 + [False],
                         "best_test_acc": accs + [0.10]})
    fig = seed_dots(runs, ["focal-gamma2"], {})
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    label = ax.texts[0].get_window_extent(renderer)
    dots = ax.transData.transform(next(c for c in ax.collections if len(c.get_offsets()) == 9).get_offsets())
    assert ax.texts[0].get_text() == "10.0"
    assert label.x1 < dots[:, 0].min() - 3  # pixels: the label ends left of every dot, with air
    assert ax.get_xlim()[1] > 87  # the dots keep their side of the axis
    plt.close(fig)


def test_a_run_that_collapsed_after_training_is_an_open_circle_among_the_filled_dots():
    from lossnb.plotting import seed_dots
    from lossnb.results import with_trained

    book_style()
    runs = with_trained(pd.DataFrame({"loss_tag": "focal-gamma2", "status": "complete", "dataset": "fashionmnist",
                                      "best_test_acc": [0.86, 0.87, 0.595], "final_test_acc": [0.85, 0.87, 0.10]}))
    assert list(runs["trained"]) == [True, True, True] and list(runs["collapsed"]) == [False, False, True]
    fig = seed_dots(runs, ["focal-gamma2"], {})
    dots = next(c for c in fig.axes[0].collections if len(c.get_offsets()) == 3)
    faces = {float(x): face[3] for (x, _), face in zip(dots.get_offsets(), dots.get_facecolors())}
    assert faces[59.5] == 0 and faces[86.0] > 0 and faces[87.0] > 0  # hollow at 59.5 only (final at chance)
    plt.close(fig)


def test_where_no_run_trained_the_failed_runs_set_the_axis():
    from lossnb.plotting import seed_dots

    book_style()
    runs = pd.DataFrame({"loss_tag": ["arcface"] * 2, "status": "complete", "trained": False,
                         "best_test_acc": [0.10, 0.15]})
    fig = seed_dots(runs, ["arcface"], {})
    ax = fig.axes[0]
    crosses = [c.get_offsets() for c in ax.collections]
    assert sorted(float(x) for o in crosses for x, _ in o) == [10.0, 15.0]  # each run a cross at its accuracy
    assert not ax.texts  # nothing is below an axis the failed runs set themselves
    plt.close(fig)


def test_an_interval_is_drawn_from_three_seeds_on_as_the_plans_tests_need():
    from lossnb.plotting import forest, seed_dots

    book_style()
    runs = pd.DataFrame({"loss_tag": ["ce"] * 3 + ["poly1-epsilon1"] * 2, "status": "complete", "trained": True,
                         "best_test_acc": [0.86, 0.87, 0.88, 0.85, 0.88]})
    fig = seed_dots(runs, ["ce", "poly1-epsilon1"], {})
    bars = [line.get_xdata() for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 2]
    assert len(bars) == 1 and bars[0][0] < 86 and bars[0][1] > 88  # ce's interval only; from 2 seeds none
    assert fig.axes[0].get_xlim()[1] < 90  # Poly-1's t interval with 1 df (to ~105%) does not set the axis
    plt.close(fig)
    table = pd.DataFrame({"family": "f", "a": "x", "b": ["ce", "poly1"], "seeds": [3, 2], "mean diff": [0.01, 0.0],
                          "ci low": [0.0, -0.2], "ci high": [0.02, 0.2], "verdict": ["undecided", "not tested"]})
    fig = forest(table, {}, 0.005)
    spans = [line.get_xdata() for line in fig.axes[0].get_lines()
             if len(line.get_xdata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]]
    assert [list(s) for s in spans] == [[0.0, 2.0]]  # the tested comparison's interval, in points
    plt.close(fig)


def test_means_by_study_draws_each_loss_mean_and_t_interval_once_per_study_in_its_row():
    from statsmodels.stats.weightstats import DescrStatsW

    from lossnb.plotting import means_by_study

    book_style()
    accs = {("short", "ce"): [0.84, 0.85, 0.86], ("long", "ce"): [0.86, 0.87, 0.89], ("short", "mae"): [0.4, 0.5, 0.7],
            ("long", "mae"): [0.30, 0.45, 0.6], ("long", "focal-gamma2"): [0.86, 0.87, 0.12]}
    runs = pd.DataFrame([{"study": st, "loss_tag": t, "trained": True, "best_test_acc": a}
                         for (st, t), values in accs.items() for a in values])
    fig = means_by_study(runs, ["ce", "focal-gamma2", "mae"], {"ce": "CE"}, {"short": "20 ep", "long": "200 ep"})
    main, alone = fig.axes[:2]
    assert [t.get_text() for t in main.get_yticklabels()] == ["CE", "focal-gamma2"]
    assert [t.get_text() for t in alone.get_yticklabels()] == ["mae"]  # MAE in a panel of its own
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["20 ep", "200 ep"]
    for (study, tag), values in accs.items():
        ax = alone if tag == "mae" else main
        row = {"ce": 0, "focal-gamma2": 1, "mae": 0}[tag]
        low, high = DescrStatsW(100 * np.array(values)).tconfint_mean(alpha=0.05)
        drawn = [line.get_xdata() for line in ax.get_lines()
                 if line.get_color() == {"short": "tab:gray", "long": "black"}[study]
                 and abs(line.get_ydata()[0] - row) < 0.5]
        assert any(len(x) == 1 and x[0] == pytest.approx(100 * np.mean(values)) for x in drawn), (study, tag)
        left, right = ax.get_xlim()
        want = [max(low, 0, left), min(high, 100, right)]  # cut at 0 and 100%, and at the panel's edge
        assert any(len(x) == 2 and list(x) == pytest.approx(want) for x in drawn), (study, tag)
    arrows = [line for line in main.get_lines() if line.get_marker() in "<>"]
    assert len(arrows) == 2 and all(abs(line.get_ydata()[0] - 1) < 0.5 for line in arrows)  # focal's, cut both ways
    assert "interval runs on" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_a_forest_cuts_an_interval_many_times_wider_than_the_rest_at_its_edge_with_an_arrow():
    from lossnb.plotting import forest

    book_style()
    rows = [("x", "ce", 0.004, 0.01), ("x", "ls", -0.002, 0.008), ("y", "ce", 0.003, 0.012), ("y", "ls", 0.001, 0.009),
            ("x", "focal", 0.06, 0.15)]  # (a, b, mean, half-width): x − focal spans -9 to +21 points
    table = pd.DataFrame([{"family": "f", "a": a, "b": b, "seeds": 5, "mean diff": m, "ci low": m - h,
                           "ci high": m + h, "verdict": "undecided"} for a, b, m, h in rows])
    fig = forest(table, {}, 0.005)
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert left <= -1.0 and right >= 6.0  # the narrow intervals (-1.0 to 1.5) and every mean (up to 6) inside
    assert left > -9 and right < 21  # not the wide one
    arrows = {line.get_marker(): line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() in "<>"}
    assert arrows == {"<": pytest.approx(left), ">": pytest.approx(right)}
    assert "interval runs on" in [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    plt.close(fig)
    two_seeds = table.assign(seeds=[5, 5, 5, 5, 2])  # x − focal not tested: its mean alone, no interval
    fig = forest(two_seeds, {}, 0.005)
    assert not [line for line in fig.axes[0].get_lines() if line.get_marker() in "<>"]
    assert "interval runs on" not in [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    plt.close(fig)
    narrow = forest(table.iloc[:4], {}, 0.005)
    assert not [line for line in narrow.axes[0].get_lines() if line.get_marker() in "<>"]
    assert "interval runs on" not in [t.get_text() for legend in narrow.legends for t in legend.get_texts()]
    plt.close(narrow)


def test_each_column_of_curve_panels_shows_its_epochs_under_its_lowest_panel():
    """Four panels in rows of three: the three columns' lowest panels (one in the first row, above an empty
    slot) each label their epoch axis; no 'epoch' floats beneath the figure."""
    from lossnb.plotting import train_test_curves

    book_style()
    curves = pd.DataFrame([{"loss_tag": t, "seed": 0, "epoch": e, "train_acc": 0.5, "test_acc": 0.5}
                           for t in "abcd" for e in range(5)])
    fig = train_test_curves(curves, list("abcd"), {})
    fig.canvas.draw()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    labelled = [ax.get_title() for ax in shown if ax.get_xlabel() == "epoch"
                and any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())]
    assert sorted(labelled) == ["b", "c", "d"]
    assert fig._supxlabel is None
    plt.close(fig)
