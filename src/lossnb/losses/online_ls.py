"""Online label smoothing: soft targets learned from the model's own correct predictions.

Stateful across batches: the soft-label matrix of epoch e is the mean predicted
distribution of the correctly classified training samples of each class in epoch
e - 1. The state lives in a dict the caller owns (``Loss.state``; reset per run,
saved in checkpoints). An epoch boundary is seen through ``config["epoch"]``.
"""
import torch
import torch.nn.functional as F

from .domains import unit_closed, unit_halfopen
from .common import upcast
from .registry import Param, register



def _ols_start(state, num_classes, smoothing, epoch, device):
    soft = torch.full((num_classes, num_classes), smoothing / (num_classes - 1), dtype=torch.float32, device=device)
    soft.fill_diagonal_(1.0 - smoothing)
    state.update(epoch=epoch, soft=soft, sums=torch.zeros_like(soft),
                 counts=torch.zeros(num_classes, dtype=torch.float32, device=device))


def _ols_next_epoch(state, epoch):
    """Column c of the new soft-label matrix: mean prediction over last epoch's correct samples of class c.

    Deviation from the reference code: a class with no correct sample keeps its previous
    column (the reference would set it to zeros, switching the soft term off for that class).
    """
    seen = state["counts"] > 0
    averaged = state["sums"] / state["counts"].clamp_min(1.0)
    state["soft"] = torch.where(seen[None, :], averaged, state["soft"])
    state["sums"].zero_()
    state["counts"].zero_()
    state["epoch"] = epoch


@register(
    "online_ls",
    paper="Zhang et al., Delving Deep into Label Smoothing, IEEE TIP 2021",
    formula=r"\alpha\,(-\log p_t) + (1-\alpha)\,(-\textstyle\sum_k S^{(e-1)}_{k,t} \log p_k)",
    summary="Online label smoothing: a mix of cross-entropy and cross-entropy against class-wise soft labels "
            "accumulated from the previous epoch's correct predictions (epoch 0 uses label smoothing). "
            "Stateful: reset per run.",
    params={
        "alpha": Param(0.5, unit_closed, "0 <= alpha <= 1", "weight of the hard-label term"),
        "smoothing": Param(0.1, unit_halfopen, "0 <= smoothing < 1", "smoothing of the initial soft labels"),
    },
    stateful=True,
)
def online_label_smoothing(logits, targets, config, state, alpha=0.5, smoothing=0.1):
    z = upcast(logits)
    epoch = config["epoch"]
    if not state:
        _ols_start(state, z.shape[1], smoothing, epoch, z.device)
    elif state["soft"].shape[0] != z.shape[1]:
        raise ValueError(f"online_ls keeps soft labels for {state['soft'].shape[0]} classes and got logits of "
                         f"{z.shape[1]}: its state belongs to one run; reset() it for another")
    elif epoch != state["epoch"]:
        _ols_next_epoch(state, epoch)
    logp = F.log_softmax(z, dim=1)
    soft_targets = state["soft"].index_select(1, targets).T.to(logp.dtype)
    loss = alpha * F.nll_loss(logp, targets) + (1.0 - alpha) * (-(soft_targets * logp).sum(dim=1)).mean()
    with torch.no_grad():
        p = logp.exp().float()
        correct = (p.argmax(dim=1) == targets).float()
        # masked adds instead of boolean indexing: no data-dependent shapes, so no host sync
        state["sums"].index_add_(1, targets, (p * correct[:, None]).T)
        state["counts"].index_add_(0, targets, correct)
    return loss
