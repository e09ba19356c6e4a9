"""Record reading and the book's statistics, against on-disk records and statsmodels/scipy references."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossnb.data.readers import DEBIAN_FASHION_MNIST
from lossnb.results import RecordError, load_runs, mean_std_table, normalisation, read_record
from lossnb.trainer import RunConfig, records


def write_record(root, loss, seed, best, epochs=2, **kwargs):
    """A record in the on-disk format the trainer writes (config.json, metrics.csv, summary.json)."""
    from conftest import write_synthetic_record

    return write_synthetic_record(root, loss, seed, best, epochs=epochs, **kwargs)


def test_tables_from_records(tmp_path):
    ce = [0.90, 0.91, 0.89, 0.905]
    focal = [0.905, 0.92, 0.895, 0.915]
    for seed, (a, b) in enumerate(zip(ce, focal)):
        write_record(tmp_path, "ce", seed, a)
        write_record(tmp_path, "focal", seed, b)
    write_record(tmp_path, "focal", 9, 0.5)  # a seed without a CE partner is not paired
    runs, curves = load_runs(tmp_path)
    assert len(runs) == 9 and len(curves) == 18 and set(runs["study"]) == {"t-e2"}
    table = mean_std_table(runs)
    assert table.loc["ce", "seeds"] == 4
    assert table.loc["ce", "best_test_acc mean"] == pytest.approx(np.mean(ce))
    assert table.loc["ce", "best_test_acc std"] == pytest.approx(np.std(ce, ddof=1))
    assert table.loc["focal-gamma2", "seeds"] == 5  # every complete run of the loss, paired or not


@pytest.mark.parametrize("file, key", [("summary.json", "best_test_acc"), ("config.json", "run.seed")])
def test_a_record_missing_a_required_field_is_refused(tmp_path, file, key):
    run_dir = write_record(tmp_path, "ce", 0, 0.9)
    data = json.loads((run_dir / file).read_text())
    if key.startswith("run."):
        del data["run"][key[4:]]
    else:
        del data[key]
    (run_dir / file).write_text(json.dumps(data))
    with pytest.raises(RecordError, match=key.split(".")[-1]):
        read_record(run_dir)


def test_a_complete_record_with_missing_epochs_is_refused(tmp_path):
    run_dir = write_record(tmp_path, "ce", 0, 0.9, epochs=3)
    metrics = pd.read_csv(run_dir / "metrics.csv").iloc[:2]
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    with pytest.raises(RecordError, match="has 2 epoch rows; summary.json says 3 epochs completed"):
        read_record(run_dir)


def test_every_committed_record_is_complete_and_matches_its_grid_file():
    """The records the book stands on: readable, complete, and each one a run its grid file names."""
    from pathlib import Path

    from lossnb.grid import load_grid

    root = Path(__file__).parents[1]
    expected = {}
    for grid_file in root.glob("grids/*.yaml"):
        for cfg in load_grid(grid_file).runs:
            expected[str(cfg.run_path())] = cfg
    for run_dir in sorted(p.parent for p in (root / "runs").rglob("summary.json") if ".checkpoints" not in p.parts):
        rec = read_record(run_dir)
        path = str(run_dir.relative_to(root / "runs"))
        assert path in expected, f"{path} is in no grid file"
        assert rec["summary"]["status"] in records.FINISHED
        # settings added to RunConfig after a record was written read as their defaults, what it ran with
        assert RunConfig.from_dict(rec["config"]["run"]) == expected[path]


def test_gradient_curves_of_cross_entropy_follow_its_closed_form():
    import torch

    from lossnb.gradients import loss_curves, slice_logits

    p = torch.linspace(0.01, 0.99, 25, dtype=torch.float64)
    assert torch.allclose(slice_logits(p, 7).softmax(1)[:, 0], p)
    curves = loss_curves("ce", 7, p)
    np.testing.assert_allclose(curves["value"], -np.log(p.numpy()), rtol=1e-12)
    np.testing.assert_allclose(curves["grad_target"], p.numpy() - 1, atol=1e-12)
    np.testing.assert_allclose(curves["grad_other"], (1 - p.numpy()) / 6, atol=1e-12)
    np.testing.assert_allclose(curves["weight"], 1.0, rtol=1e-10)


def test_a_foreign_or_broken_directory_is_reported_and_skipped(tmp_path):
    write_record(tmp_path, "ce", 0, 0.9)
    broken = write_record(tmp_path, "focal", 0, 0.8)
    (broken / "metrics.csv").unlink()  # what a run that diverged at its first step used to publish
    foreign = tmp_path / "notes" / "summary.json"
    foreign.parent.mkdir()
    foreign.write_text("{not json")
    with pytest.warns(UserWarning, match="skipped") as caught:
        runs, _ = load_runs(tmp_path)
    assert list(runs["loss"]) == ["ce"]
    reasons = dict(runs.attrs["skipped"])
    assert "metrics.csv is missing" in reasons[str(broken)] and str(foreign.parent) in reasons
    assert len(caught) == 2


def test_a_study_of_one_run_has_its_mean_and_no_spread(tmp_path):
    write_record(tmp_path, "ce", 0, 0.9)
    runs, _ = load_runs(tmp_path)
    assert mean_std_table(runs).loc["ce", "seeds"] == 1


def test_angular_curves_follow_the_chain_rule_through_the_margin():
    """On the cosine slice, d loss/d cos θ_t is s (p_t - 1) dψ/dcos θ_t: 1 for CosFace, sin(θ+m)/sin θ for
    ArcFace; a non-target's is s p_k. p_t from the closed-form softmax of the scaled, margin-adjusted logits."""
    import math

    import numpy as np
    import torch

    from lossnb.gradients import angular_curves

    theta = torch.linspace(0.2, 2.4, 12, dtype=torch.float64)
    s, m, c = 16.0, 0.5, 10
    for name, psi, dpsi in (("cosface", lambda t: np.cos(t) - m, lambda t: np.ones_like(t)),
                            ("arcface", lambda t: np.cos(t + m), lambda t: np.sin(t + m) / np.sin(t))):
        t = theta.numpy()
        p_t = np.exp(s * psi(t)) / (np.exp(s * psi(t)) + (c - 1))  # the others' cosines are 0
        curves = angular_curves(name, c, theta, s=s, m=m)
        np.testing.assert_allclose(curves["p_t"], p_t, rtol=1e-9)
        np.testing.assert_allclose(curves["grad_target"], s * (p_t - 1) * dpsi(t), rtol=1e-7)
        np.testing.assert_allclose(curves["grad_other"], s * (1 - p_t) / (c - 1), rtol=1e-9)
    assert math.isclose(curves["theta_deg"].iloc[-1], math.degrees(2.4))


def test_grid_status_counts_whole_records_only(tmp_path):
    import yaml

    from lossnb.results import grid_status

    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "g.yaml").write_text(yaml.safe_dump({"protocol": "t", "budget": {"epochs": 2},
                                                  "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
                                                  "losses": ["ce"], "seeds": [0, 1, 2]}))
    runs = tmp_path / "runs"
    write_record(runs, "ce", 0, 0.9)
    broken = write_record(runs, "ce", 1, 0.9)
    (broken / "summary.json").write_text("{")
    row = grid_status(grids, runs).loc["g.yaml"]
    assert (row["runs"], row["complete"], row["broken"], row["not started"], row["state"]) == (3, 1, 1, 1, "partial")
    assert row["trains"] == "The report's ConvNet on FashionMNIST, 2 epochs"


def test_the_slice_optimum_of_label_smoothing_is_its_closed_form_and_ce_has_none():
    import math

    import torch

    from lossnb.gradients import closed_form_errors, label_smoothing_optimum, optima, weights_of

    p = torch.linspace(0.005, 0.995, 399, dtype=torch.float64)
    entries = ["ce", ("label_smoothing", {"eps": 0.2}), ("capped_ce", {"p_cap": 0.97, "sharpness": 10})]
    table = optima(pd.concat([weights_of(entries, c, p) for c in (10, 100)]))
    for c in (10, 100):
        p_star = 1 - 0.2 + 0.2 / c  # Szegedy et al.'s target, 1 - eps + eps / C
        assert label_smoothing_optimum(0.2, c) == (pytest.approx(p_star), pytest.approx(math.log(p_star * c / 0.2)))
        assert table.loc["label smoothing ε=0.2", ("optimum p_t", c)] == pytest.approx(p_star, abs=1e-3)
        assert np.isnan(table.loc["cross-entropy", ("optimum p_t", c)])
    errors = closed_form_errors(entries, [10], p)
    assert len(errors) == 3 and (errors[["max |error| target", "max |error| non-target"]] < 1e-8).all().all()


def test_a_summary_table_shows_scalars_in_percent_and_leaves_the_bins_out():
    from lossnb.results import summary_table

    table = summary_table({"status": "complete", "best_test_acc": 0.8534, "final_test_loss": 0.41,
                           "final_reliability": {"count": [1, 2]}})
    assert table["summary"].to_dict() == {"status": "complete", "best_test_acc %": "85.34", "final_test_loss": 0.41}


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_the_committed_studies_normalisation_is_fashion_mnists_own_statistics():
    """Against numpy on the idx bytes: the 28x28 training pixels as stored (what resize-rgb normalises with), and
    the same images framed by 2 zero pixels per side (the earlier protocols' padded 32x32)."""
    import gzip

    raw = gzip.decompress((DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").read_bytes())
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(60000, 28, 28) / 255.0
    padded = np.pad(pixels, ((0, 0), (2, 2), (2, 2)))
    runs, _ = load_runs(Path(__file__).parents[1] / "runs")
    for prep, images, channels in (("resize-rgb", pixels, 3), ("pad", padded, 1)):
        mean, std = normalisation(runs, "fashionmnist", prep)
        np.testing.assert_allclose(mean, [images.mean()] * channels, rtol=1e-5)
        np.testing.assert_allclose(std, [images.std()] * channels, rtol=1e-5)


def test_two_normalisations_of_one_preparation_are_refused(tmp_path):
    for seed, mean in ((0, [0.5]), (1, [0.4])):
        run_dir = write_record(tmp_path, "ce", seed, 0.9)
        config = json.loads((run_dir / "config.json").read_text())
        records.write_json(run_dir / "config.json", config | {"data": {"mean": mean, "std": [0.3]}})
    runs, _ = load_runs(tmp_path)
    assert runs.sort_values("seed")["norm_mean"].tolist() == [(0.5,), (0.4,)]
    with pytest.raises(ValueError, match="fashionmnist in pad were normalised differently"):
        normalisation(runs, "fashionmnist", "pad")
