"""Helpers shared by the loss functions (torch only: they are exported with the losses)."""
import torch


def upcast(logits):
    """float32 at least: bf16/fp16 logits are computed in float32, float64 stays float64 (gradcheck)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))
