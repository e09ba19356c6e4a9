"""The benchmark's loss contract, checked on every call: what lossnb's losses and their exports both run.

torch only (it is exported with the losses). The target range needs the targets' values: on the CPU they are
read (no cost there); on CUDA an asynchronous device assert checks them without a host sync, and inside a
CUDA graph capture, where no assert is recorded, the trainer has checked every label of the data set when it
loaded it. Targets of any integer dtype are taken as int64; -100, PyTorch's ignore_index, is not part of the
contract and is refused like any other out-of-range target.
"""
import torch


def check_inputs(logits, targets, config):
    """``targets`` as int64 after checking logits (N, C) floating, targets (N,) integer class ids in [0, C),
    and config's keys; every error names the bad value and what is expected."""
    if not torch.is_tensor(logits) or logits.dim() != 2:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"logits must be a 2-D (N, C) tensor, got shape {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if not torch.is_tensor(targets) or targets.dtype.is_floating_point or targets.dtype == torch.bool \
            or targets.is_complex():
        dtype = targets.dtype if torch.is_tensor(targets) else type(targets).__name__
        raise ValueError(f"targets must be an integer tensor of class ids, got {dtype}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}")
    for key in ("num_classes", "epoch", "total_epochs"):
        if key not in config:
            raise ValueError(f"config is missing {key!r}; the contract's keys are num_classes, epoch, total_epochs")
    num_classes = logits.shape[1]
    if config["num_classes"] != num_classes:
        raise ValueError(f"config num_classes={config['num_classes']} but logits have {num_classes} columns")
    targets = targets.long()
    if targets.numel():
        if targets.device.type == "cpu":
            lo, hi = (int(v) for v in targets.aminmax())
            if lo < 0 or hi >= num_classes:
                raise ValueError(f"target {lo if lo < 0 else hi} is outside [0, {num_classes}) (class ids; "
                                 "ignore_index is not part of the contract)")
        elif not (targets.is_cuda and torch.cuda.is_current_stream_capturing()):
            torch._assert_async(((targets >= 0) & (targets < num_classes)).all(),
                                f"a target is outside [0, {num_classes})")
    return targets
