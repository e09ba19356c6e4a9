"""The analysis beside the plans' tests, on synthetic records, against independent computations (scipy's
Welch test, arithmetic done here by hand), and the 200-epoch chapter executed on records and without them."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import write_synthetic_record
from lossnb.analysis import beside_published, choose_on_validation, pooled_ece
from lossnb.results import load_runs

ACC = {"ce": [0.900, 0.910, 0.905, 0.895, 0.902],
       "label_smoothing": [0.930, 0.941, 0.936, 0.925, 0.934],
       "focal": [0.899, 0.905, 0.909, 0.894, 0.900],
       "ours": [0.945, 0.955, 0.951, 0.940, 0.949]}


@pytest.fixture
def study(tmp_path):
    for loss, accs in ACC.items():
        name = "ce" if loss == "ours" else loss
        params = {"label_smoothing": {"eps": 0.1}, "focal": {"gamma": 2}}.get(loss, {})
        for seed, acc in enumerate(accs):
            write_synthetic_record(tmp_path, name, seed, acc, epochs=3, protocol="ours" if loss == "ours" else "t",
                                   loss_params=params, wall_seconds=600.0, pack_size=4)
    runs, _ = load_runs(tmp_path)
    runs.loc[runs["study"] == "ours-e3", "loss_tag"] = "ours"  # one study, four losses
    return runs


def test_settings_are_chosen_on_the_validation_split_only(tmp_path):
    for eps, accs in ((0.1, [0.80, 0.82, 0.81]), (0.2, [0.83, 0.84, 0.85]), (0.3, [0.84, 0.80, 0.81])):
        for seed, acc in enumerate(accs):
            write_synthetic_record(tmp_path, "label_smoothing", seed, acc, protocol="tune",
                                   loss_params={"eps": eps}, eval_split="val")
            write_synthetic_record(tmp_path, "label_smoothing", seed, 1 - acc, protocol="test",
                                   loss_params={"eps": eps})
    runs, _ = load_runs(tmp_path)
    chosen, table = choose_on_validation(runs, "tune-e2", "label_smoothing")
    assert chosen == "label_smoothing-conventionuniform-eps0.2"  # mean 0.84 against 0.81 and 0.8167
    assert table.loc[chosen, "best_test_acc mean"] == pytest.approx(0.84)
    assert choose_on_validation(runs, "tune-e2", "focal")[0] is None
    with pytest.raises(ValueError, match="evaluates on test: settings are chosen on a validation split only"):
        choose_on_validation(runs, "test-e2", "label_smoothing")


def test_pooled_ece_weights_bins_by_their_counts():
    bins = pd.DataFrame({"count": [10, 30, 60], "confidence": [0.2, 0.5, 0.9], "accuracy": [0.1, 0.6, 0.8]})
    assert pooled_ece(bins) == pytest.approx((10 * 0.1 + 30 * 0.1 + 60 * 0.1) / 100)


def test_ours_beside_the_published_row(study):
    published = pd.DataFrame({"loss": ["focal"] * 3 + ["label smoothing", "PolyLoss"],
                              "best_test_acc_percent": [90.0, 90.5, 89.8, 94.82, 94.74], "source": ["theirs"] * 5})
    table = beside_published(study, published, {"focal": "focal-gamma2",
                                                "label smoothing": "label_smoothing-conventionuniform-eps0.1",
                                                "PolyLoss": "poly1-epsilon1"})
    assert list(table["loss"]) == ["focal", "label smoothing"]  # PolyLoss did not run: no row
    focal = table.set_index("loss").loc["focal"]
    ours = 100 * np.array(ACC["focal"])
    assert focal["ours mean %"] == pytest.approx(ours.mean())
    assert focal["theirs mean %"] == pytest.approx(np.mean([90.0, 90.5, 89.8]))
    assert focal["theirs std %"] == pytest.approx(np.std([90.0, 90.5, 89.8], ddof=1))
    assert focal["ours - theirs (pts)"] == pytest.approx(ours.mean() - np.mean([90.0, 90.5, 89.8]))
    assert focal["p (Welch t)"] == pytest.approx(stats.ttest_ind(ours, [90.0, 90.5, 89.8], equal_var=False).pvalue)
    one_seed = table.set_index("loss").loc["label smoothing"]  # a single published number: nothing to test
    assert one_seed["seeds (theirs)"] == 1 and np.isnan(one_seed["p (Welch t)"])


@pytest.mark.slow
def test_the_200_epoch_chapter_runs_on_records_and_without_them(tmp_path):
    """The chapter executes top to bottom (papermill fails on any error cell) on a synthetic study with a
    diverged run and on an empty runs folder, says which case it is in, and states the plan's verdicts."""
    import json
    from pathlib import Path

    import papermill

    notebook = Path(__file__).parents[1] / "notebooks" / "benchmark_200.ipynb"
    runs = tmp_path / "runs"
    for loss, params in (("ce", {}), ("label_smoothing", {"eps": 0.1}), ("focal", {"gamma": 2}),
                         ("poly1", {"epsilon": 1}), ("complement_ls", {"eps": 0.1})):
        for seed, acc, jitter in zip((42, 123, 456), (0.940, 0.945, 0.942), (0.003, 0.001, 0.002)):
            shift = {"label_smoothing": 0.004, "complement_ls": jitter}.get(loss, 0)  # complement LS: a paired spread
            write_synthetic_record(runs, loss, seed, acc + shift, epochs=200,
                                   protocol="bench-fmnist", arch="mobilenetv2", loss_params=params,
                                   wall_seconds=1200.0, pack_size=12)
    write_synthetic_record(runs, "ce", 7, 0.1, epochs=200, protocol="bench-fmnist", arch="mobilenetv2",
                           status="diverged")
    (tmp_path / "empty").mkdir()
    for folder, expected in ((runs, "Ours beside the published row"), (tmp_path / "empty", "No 200-epoch record")):
        out = tmp_path / f"{folder.name}.ipynb"
        papermill.execute_notebook(str(notebook), str(out), parameters={"runs_dir": str(folder)},
                                   cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
        text = json.dumps(json.loads(out.read_text())["cells"])
        assert expected in text
    text = json.dumps(json.loads((tmp_path / "runs.ipynb").read_text())["cells"])
    # the leaderboard's label smoothing seeds (94.82, 94.61, 94.97), as their mean
    # each study under its title in words, never its task id
    outputs = json.dumps([o for cell in json.loads(text) for o in cell.get("outputs", [])])
    assert "MobileNetV2, the benchmark's own network" in outputs and "mobilenetv2-fashionmnist" not in outputs
    assert f"{np.mean([94.82, 94.61, 94.97]):.2f}" in text
    # the plan's verdicts as a table: the design that ran is tested, those that did not are not tested yet
    html = json.loads(text)
    tables = [o["data"]["text/html"] for cell in html for o in cell.get("outputs", [])
              if "text/html" in o.get("data", {}) and "verdict" in "".join(o["data"]["text/html"])]
    rows = "".join("".join(t) for t in tables).split("<tr>")
    tested = [r for r in rows if "complement LS − cross-entropy" in r]
    untested = [r for r in rows if "capped CE" in r and "− cross-entropy" in r]
    assert tested and "not tested" not in tested[0] and untested and "not tested" in untested[0]


def test_list_parameters_given_with_papermill_p_are_read_or_refused_with_what_to_write():
    from lossnb.notebook_params import as_dict, as_list

    assert as_list("[10, 20]", "class_counts") == [10, 20] and as_list([10], "class_counts") == [10]
    assert as_dict("{focal: focal-gamma2}", "names") == {"focal": "focal-gamma2"}
    with pytest.raises(ValueError, match=r"class_counts must be a list, got 10; with papermill pass -y 'class_counts: \[10, 100\]'"):
        as_list("10", "class_counts")
    with pytest.raises(ValueError, match="must be a dict"):
        as_dict("[1, 2", "names")
