"""The design chapter's decisions: capped CE's closed-form weight against autograd, the cap-engagement table
never pooling two models, ECE comparisons named by direction, and a design's evidence read from plans."""
import numpy as np
import pytest
import torch
import yaml

from conftest import write_synthetic_record
from lossnb import designs
from lossnb.gradients import loss_curves
from lossnb.plan import load_plan
from lossnb.results import load_runs

SEEDS = range(5)


@pytest.mark.parametrize("p_cap, sharpness", [(0.97, 10.0), (0.9, 30.0)])
def test_capped_ce_weight_in_closed_form_is_the_autograd_gradient_ratio(p_cap, sharpness):
    p = torch.tensor([0.3, 0.9, p_cap, 0.999], dtype=torch.float64)
    autograd = loss_curves("capped_ce", 10, p, p_cap=p_cap, sharpness=sharpness)["weight"].to_numpy()
    closed = [designs.capped_weight(float(x), p_cap, sharpness) for x in p]
    np.testing.assert_allclose(closed, autograd, rtol=1e-9)
    assert closed[2] == pytest.approx(0.5)


def reliability(top_count, top_accuracy=0.99):
    return {"bin_edges": [0.0, 0.5, 1.0], "count": [100 - top_count, top_count], "accuracy": [0.4, top_accuracy],
            "mean_confidence": [0.3, 0.97]}


def test_the_top_bin_share_keeps_each_head_apart_and_leaves_cosine_heads_out(tmp_path):
    for seed in SEEDS:
        write_synthetic_record(tmp_path, "ce", seed, 0.9, protocol="a", final_reliability=reliability(60))
        write_synthetic_record(tmp_path, "ce", seed, 0.8, protocol="a", head="cosine",
                               final_reliability=reliability(0))
    runs, _ = load_runs(tmp_path)
    shares = designs.top_bin_shares(runs, ["ce"])
    # the cosine head's softmax is of raw cosines: only the linear head's row
    assert list(shares.index) == [("The report's ConvNet on FashionMNIST, 2 epochs", "cross-entropy")]
    assert shares.iloc[0]["% of predictions with confidence ≥ 0.500"] == "60.0"


def test_ece_comparisons_say_which_loss_is_worse_calibrated(tmp_path):
    for seed in SEEDS:
        jitter = 0.001 * (seed - 2)
        write_synthetic_record(tmp_path, "ce", seed, 0.9, protocol="a", final_test_ece=0.01 + jitter)
        write_synthetic_record(tmp_path, "label_smoothing", seed, 0.9, protocol="a", loss_params={"eps": 0.1},
                               final_test_ece=0.08 - jitter)
    runs, _ = load_runs(tmp_path)
    table = designs.ece_of_parts(runs, "a-e2", "convnet-fashionmnist",
                                 ["label_smoothing-conventionuniform-eps0.1", "ce"])
    assert list(table["verdict"]) == ["higher ECE"]
    assert table.iloc[0]["mean diff"] == pytest.approx(0.07)


def test_a_designs_evidence_is_its_planned_comparisons_only(tmp_path):
    grid = {"protocol": "e", "budget": {"epochs": 2}, "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
            "losses": ["ce", {"name": "complement_ls", "params": {"eps": 0.1}}, "mae"], "seeds": list(SEEDS)}
    plan = {"grid": "grid.yaml", "task": "convnet-fashionmnist", "metric": "best_test_acc", "alpha": 0.05,
            "margin": 0.005, "families": [{"name": "d", "contenders": [{"name": "complement_ls",
                                                                          "params": {"eps": 0.1}}],
                                           "baselines": ["ce", "mae"]}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    for seed in SEEDS:
        write_synthetic_record(tmp_path / "runs", "ce", seed, 0.90 + 0.001 * seed, protocol="e")
        write_synthetic_record(tmp_path / "runs", "mae", seed, 0.50 + 0.01 * seed, protocol="e")
        write_synthetic_record(tmp_path / "runs", "complement_ls", seed, 0.93 + 0.0012 * seed, protocol="e",
                               loss_params={"eps": 0.1})
    runs, _ = load_runs(tmp_path / "runs")
    table = designs.evidence([load_plan(tmp_path / "plan.yaml")], runs, "complement_ls")
    assert list(table["verdict"]) == ["better", "better"] and len(table) == 2
    assert designs.evidence([load_plan(tmp_path / "plan.yaml")], runs, "capped_ce").empty


def test_the_eps_sweep_names_its_references_by_their_setting_and_the_design_by_its_name(tmp_path):
    for seed in SEEDS[:3]:
        write_synthetic_record(tmp_path, "ce", seed, 0.9, protocol="a")
        write_synthetic_record(tmp_path, "label_smoothing", seed, 0.9, protocol="a", loss_params={"eps": 0.05})
        for eps in (0.2, 0.3):
            write_synthetic_record(tmp_path, "selfshaped_ls", seed, 0.9, protocol="a", loss_params={"eps": eps})
        write_synthetic_record(tmp_path, "ce", seed, 0.9, protocol="b")  # no self-shaped LS: not in the sweep
    runs, _ = load_runs(tmp_path)
    sweep = designs.eps_sweep(runs, "selfshaped_ls", "label_smoothing-conventionuniform-eps0.05",
                              "selfshaped_ls-eps0.2")
    named = sweep.drop_duplicates("loss_tag").set_index("loss_tag")
    assert named["loss name"].to_dict() == {"ce": "cross-entropy",
                                            "label_smoothing-conventionuniform-eps0.05": "label smoothing ε=0.05",
                                            "selfshaped_ls-eps0.2": "self-shaped LS", "selfshaped_ls-eps0.3":
                                                "self-shaped LS"}
    assert named["eps"].to_dict() == {"ce": 0.0, "label_smoothing-conventionuniform-eps0.05": 0.05,
                                      "selfshaped_ls-eps0.2": 0.2, "selfshaped_ls-eps0.3": 0.3}
    assert set(sweep["tag"]) == {"ce", "label_smoothing-conventionuniform-eps0.05", "selfshaped_ls-eps0.2"}
    assert set(sweep["study"]) == {"a-e2"}


def test_two_studies_that_read_alike_are_told_apart_by_their_device(tmp_path):
    import json

    for protocol in ("a", "b"):
        for seed in SEEDS:
            run_dir = write_synthetic_record(tmp_path, "ce", seed, 0.9, protocol=protocol,
                                             final_reliability=reliability(60))
            if protocol == "b":  # trained on a GPU
                config = json.loads((run_dir / "config.json").read_text())
                config["environment"]["device_name"] = "NVIDIA H100 80GB HBM3"
                (run_dir / "config.json").write_text(json.dumps(config))
    runs, _ = load_runs(tmp_path)
    studies = list(designs.top_bin_shares(runs, ["ce"]).index.get_level_values("study"))
    words = "The report's ConvNet on FashionMNIST, 2 epochs"
    assert studies == [f"{words}, on a CPU", f"{words}, on a GPU"]


def test_each_grid_names_the_setting_it_runs_and_why_in_words(tmp_path):
    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "g.yaml").write_text(yaml.safe_dump({
        "protocol": "a", "budget": {"epochs": 2}, "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
        "losses": ["ce", {"name": "capped_ce", "params": {"p_cap": 0.97, "sharpness": 10}},
                   {"name": "capped_ce", "params": {"p_cap": 0.97, "sharpness": 1000}}], "seeds": [0]}))
    (grids / "t.yaml").write_text(yaml.safe_dump({  # a validation split: not a test grid
        "protocol": "a-tuning", "budget": {"epochs": 2}, "tasks": [{"arch": "convnet", "dataset": "fashionmnist"}],
        "losses": [{"name": "capped_ce", "params": {"p_cap": 0.9}}], "seeds": [0]}))
    write_synthetic_record(tmp_path / "runs", "ce", 0, 0.9, protocol="a")
    runs, _ = load_runs(tmp_path / "runs")
    table = designs.settings_in_grids(grids, runs, "capped_ce",
                                      {"capped_ce-p_cap0.97-sharpness10": "the ConvNet split's choice"})
    assert table.to_dict("records") == [
        {"setting": "capped CE p_cap=0.97, sharpness=10", "why": "the ConvNet split's choice"},
        {"setting": "capped CE p_cap=0.97, sharpness=1000", "why": "an ablation"}]
    assert set(table.index) == {"The report's ConvNet on FashionMNIST, 2 epochs"}
    assert "(not run yet)" in designs.settings_in_grids(grids, runs.iloc[0:0], "capped_ce", {}).index[0]
