"""Reliability bins against torchmetrics' ECE: the same binning gives the same calibration error."""
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from lossnb.trainer.metrics import reliability_bins


@pytest.mark.parametrize("n_bins", [10, 15])
def test_reliability_bins_reproduce_torchmetrics_ece(n_bins):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5000, 10, generator=gen) * 3
    targets = torch.randint(0, 10, (5000,), generator=gen)
    bins = reliability_bins(logits, targets, n_bins)
    count = torch.tensor(bins["count"], dtype=torch.float64)
    gap = (torch.tensor(bins["accuracy"]) - torch.tensor(bins["mean_confidence"])).abs().double()
    ece = (count / count.sum() * gap).sum().item()
    reference = multiclass_calibration_error(logits.softmax(1), targets, 10, n_bins=n_bins, norm="l1").item()
    assert count.sum() == 5000 and len(bins["bin_edges"]) == n_bins + 1
    assert ece == pytest.approx(reference, abs=1e-5)


def test_a_confidence_of_exactly_one_falls_in_the_last_bin():
    logits = torch.tensor([[100.0, -100.0], [0.0, 0.0]])
    bins = reliability_bins(logits, torch.tensor([0, 1]), 10)
    assert bins["count"][-1] == 1 and bins["count"][5] == 1  # 0.5 sits on an edge: bins are [lo, hi)
