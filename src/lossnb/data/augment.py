"""The protocol's augmentation on whole batches, on the training device.

RandomCrop(32, padding=4) + RandomHorizontalFlip as torchvision applies them to each
image (zero-padded pixels, crop offsets uniform in [0, 2*padding], flip with p=0.5),
done as one gather per batch instead of per-image Python transforms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The RNG of one epoch's shuffle and augmentation: a function of (seed, epoch) only, so resume is exact."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """x: uint8 (N, C, H, W) -> augmented uint8 (N, C, H, W) in channels_last memory."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=x.device)
    flip = torch.rand(n, 1, generator=generator, device=x.device) < 0.5
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    cols = torch.where(flip, cols.flip(1), cols)  # a flipped crop reads its columns right to left
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], then per-channel (x - mean) / std (memory format kept)."""
    return (x.float().div_(255) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
