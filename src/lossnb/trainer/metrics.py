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
