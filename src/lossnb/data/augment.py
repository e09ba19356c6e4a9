"""The protocol's augmentation on whole batches, on the training device.

RandomCrop(32, padding=4) + RandomHorizontalFlip as torchvision applies them to each
image (zero-padded pixels, crop offsets uniform in [0, 2*padding], flip with p=0.5),
done as one gather per batch instead of per-image Python transforms. A run's whole
epoch of randomness (order, offsets, flips) is drawn up front from its own generator,
so that a batch is a pure function of (seed, epoch, step): the same in a solo run, in
a pack of runs, after a resume and inside a CUDA graph (which can replay no host RNG).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

PADDING = 4


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The RNG of one epoch's shuffle and augmentation: a function of (seed, epoch) only, so resume is exact."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)


@dataclasses.dataclass
class EpochPlan:
    """One epoch of one run (or of K runs, stacked on a leading axis): which image goes in which position,
    and each position's crop offsets and flip."""

    order: torch.Tensor  # (n,) or (K, n) int64
    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor  # bool

    @staticmethod
    def draw(seed: int, epoch: int, n: int, device: torch.device, flip: bool = True) -> "EpochPlan":
        gen = epoch_generator(seed, epoch, device)
        order = torch.randperm(n, generator=gen, device=device)
        dy = torch.randint(0, 2 * PADDING + 1, (n,), generator=gen, device=device)
        dx = torch.randint(0, 2 * PADDING + 1, (n,), generator=gen, device=device)
        flips = torch.rand(n, generator=gen, device=device) < 0.5
        return EpochPlan(order, dy, dx, flips if flip else torch.zeros_like(flips))

    @staticmethod
    def stack(plans: list["EpochPlan"]) -> "EpochPlan":
        return EpochPlan(*(torch.stack([getattr(p, f.name) for p in plans]) for f in dataclasses.fields(EpochPlan)))

    def copy_(self, other: "EpochPlan") -> None:
        """In place, so that a captured CUDA graph reading these tensors sees the new epoch."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).copy_(getattr(other, f.name))


def pad_images(x: torch.Tensor, padding: int = PADDING) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, H + 2p, W + 2p) with zero borders: padded once, cropped every step."""
    return F.pad(x, (padding, padding, padding, padding))


class CropWindows:
    """Every crop of a set of padded images, both ways round, as one strided view: a batch of crops is then one
    indexing copy (no index tensors the size of the batch's pixels, as two gathers would build: faster on a
    CPU). A flipped crop at offset dx is the crop of the mirrored image at 2p - dx, so the mirrored
    images are kept beside the originals (twice the padded images' memory)."""

    def __init__(self, padded: torch.Tensor, padding: int = PADDING):
        self.padding = padding
        self.height, self.width = padded.shape[-2] - 2 * padding, padded.shape[-1] - 2 * padding
        self.both = torch.stack([padded, padded.flip(-1)])  # (2, N, C, H+2p, W+2p)
        self.windows = self.both.unfold(-2, self.height, 1).unfold(-2, self.width, 1)  # (2, N, C, 2p+1, 2p+1, H, W)

    @property
    def images(self) -> torch.Tensor:
        """The padded images as given."""
        return self.both[0]

    def crops(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crops of images ``index`` at offsets (dy, dx), mirrored where ``flip``: any shape S -> (*S, C, H, W)."""
        column = torch.where(flip, 2 * self.padding - dx, dx)
        return self.windows[flip.long(), index, :, dy, column]


def crop_flip(padded: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
    """Crops of ``padded`` images: index, dy, dx, flip of any shape S -> (*S, C, H, W)."""
    return CropWindows(padded).crops(index, dy, dx, flip)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> floats in [0, 1] (the default dtype: float32), then per-channel (x - mean) / std."""
    return (x.to(mean.dtype).div_(255) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
