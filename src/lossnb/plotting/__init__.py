"""Every figure of the book, drawn at the page's width with text at the body's size and one colour per loss:
the style and legends (style), the colours (colours), figures of runs epoch by epoch (runs), comparisons of
losses across seeds (comparisons) and the gradient analysis (gradients). Import them from here."""
from .colours import LOSS_COLOURS, MAX_SERIES, OTHER_COLOURS, TAB10, loss_colour, loss_palette
from .comparisons import (BASELINE_MARKERS, CUT_HANDLE_LABEL, LONG_INTERVAL, STUDY_MARKERS, VERDICT_STYLES,
                          cut_handle, draw_interval, eps_sweep, forest, forest_span, interval_span, means_by_study,
                          seed_dots, split_off)
from .gradients import DASHES, angular_pulls, panel_groups, slice_panels, weight_curves
from .runs import geometric_sd_band, learning_curves, reliability_grid, run_curves, train_test_curves
from .style import FONT_SIZES, LEGEND_ROW, PAGE_WIDTH, book_style, legend_beneath, legend_height, wrap_name

__all__ = ["BASELINE_MARKERS", "CUT_HANDLE_LABEL", "DASHES", "FONT_SIZES", "LEGEND_ROW", "LONG_INTERVAL",
           "LOSS_COLOURS", "MAX_SERIES", "OTHER_COLOURS", "PAGE_WIDTH", "STUDY_MARKERS", "TAB10", "VERDICT_STYLES",
           "angular_pulls", "book_style", "cut_handle", "draw_interval", "eps_sweep", "forest", "forest_span",
           "geometric_sd_band", "interval_span", "learning_curves", "legend_beneath", "legend_height", "loss_colour",
           "loss_palette", "means_by_study", "panel_groups", "reliability_grid", "run_curves", "seed_dots",
           "slice_panels", "split_off", "train_test_curves", "weight_curves", "wrap_name"]
