"""Evaluation metrics from test logits: cross-entropy, accuracy, ECE (15 bins, L1) and macro-F1 (torchmetrics)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error, multiclass_f1_score

ECE_BINS = 15


def evaluation_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, float]:
    logits = logits.float()
    probs = logits.softmax(dim=1)
    return {
        "test_loss": F.cross_entropy(logits, targets).item(),  # test loss is always plain cross-entropy
        "test_acc": (logits.argmax(dim=1) == targets).float().mean().item(),
        "test_ece": multiclass_calibration_error(probs, targets, num_classes, n_bins=ECE_BINS, norm="l1").item(),
        "test_macro_f1": multiclass_f1_score(logits, targets, num_classes, average="macro").item(),
    }


def reliability_bins(logits: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per confidence bin: count, mean confidence and accuracy, binned as torchmetrics bins for its ECE
    (equal-width bins [lo, hi), confidence 1 in the last). Written by hand because torchmetrics returns only the ECE."""
    confidence, predicted = logits.float().softmax(dim=1).max(dim=1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, n_bins + 1, device=logits.device, dtype=torch.float32)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp_(0, n_bins - 1)
    count = torch.zeros(n_bins, device=logits.device, dtype=torch.float32).index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros(n_bins, device=logits.device, dtype=torch.float32).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, device=logits.device, dtype=torch.float32).index_add_(0, index, correct)
    safe = count.clamp(min=1)
    return {"bin_edges": edges.tolist(), "count": count.long().tolist(),
            "mean_confidence": (conf_sum / safe).tolist(), "accuracy": (acc_sum / safe).tolist()}
