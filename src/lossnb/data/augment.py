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
    """Every crop of a set of padded images, both ways round, gathered by one index_select a batch.

    A flipped crop at offset dx is the crop of the mirrored image at 2p - dx, so the mirrored images are kept beside
    the originals (twice the padded images' memory). Over them lies a view in which row m is the crop whose first
    pixel is element m: a crop is then one offset (which image, mirrored or not, dy, column), computed once an epoch,
    and a batch's crops are one index_select of whole image rows. Written by hand because no library gathers crops
    without index tensors the size of the batch's pixels. A pack's input is then made in the layout the model reads:
    the model's channels (gray images repeated to as many as it has, as resize-rgb makes them) in either memory
    format (pack_layout).
    """

    def __init__(self, padded: torch.Tensor, padding: int = PADDING, channels: int | None = None,
                 channels_last: bool = False):
        """``padded``: (N, C, H + 2p, W + 2p) images; ``channels``: the model's (C, or any number if C is 1);
        ``channels_last``: a pack's batches come in that memory format."""
        self.source_channels = padded.shape[1]
        self.channels = channels or self.source_channels
        if self.channels != self.source_channels and self.source_channels != 1:
            raise ValueError(f"{self.source_channels}-channel images cannot be read as {self.channels} channels")
        self.padding, self.channels_last = padding, channels_last
        self.height, self.width = padded.shape[-2] - 2 * padding, padded.shape[-1] - 2 * padding
        self.both = torch.stack([padded, padded.flip(-1)])  # (2, N, C, H+2p, W+2p), contiguous
        self.s_flip, self.s_image, s_channel, self.s_row, self.s_col = self.both.stride()
        size, stride = (self.source_channels, self.height, self.width), (s_channel, self.s_row, self.s_col)
        extent = sum((n - 1) * st for n, st in zip(size, stride))  # last element of a crop, from its first
        self.rows = self.both.view(-1).as_strided((self.both.numel() - extent, *size), (1, *stride))

    @property
    def images(self) -> torch.Tensor:
        """The padded images as given."""
        return self.both[0]

    def offsets(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Each crop's first element: images ``index`` at offsets (dy, dx), mirrored where ``flip`` (any shape)."""
        column = torch.where(flip, 2 * self.padding - dx, dx)
        return flip.long() * self.s_flip + index * self.s_image + dy * self.s_row + column * self.s_col

    def gather(self, offsets: torch.Tensor) -> torch.Tensor:
        """The crops at ``offsets`` of any shape S: (*S, C, H, W), the images' own channels, contiguous."""
        return self.rows.index_select(0, offsets.reshape(-1)).view(*offsets.shape, *self.rows.shape[1:])

    def crops(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crops of images ``index`` at offsets (dy, dx), mirrored where ``flip``: any shape S -> (*S, C, H, W)."""
        return self.gather(self.offsets(index, dy, dx, flip))

    def batch(self, offsets: torch.Tensor) -> torch.Tensor:
        """A pack's input from its runs' crops, ``offsets`` (B, K): see pack_layout."""
        return pack_layout(self.gather(offsets), self.channels, self.channels_last)


def pack_layout(images: torch.Tensor, channels: int, channels_last: bool) -> torch.Tensor:
    """K runs' images (B, K, C_source, H, W) as a pack's input: (B, K*C, H, W) with the model's C channels (gray
    images repeated), run k's in channel block k, contiguous in the memory format asked for. On a CPU one copy into
    channels_last that both interleaves K runs and repeats a gray channel costs several times two simple ones."""
    b, k, c, h, w = images.shape
    if not channels_last:
        return images.expand(b, k, channels, h, w).reshape(b, -1, h, w).contiguous()
    images = images.permute(0, 3, 4, 1, 2)  # (B, H, W, K, C_source)
    if k > 1 or c > 1:  # the runs' pixels side by side first (for one run of gray images, a view already)
        images = images.contiguous()
    images = images.expand(b, h, w, k, channels).contiguous()  # then gray repeated
    return images.view(b, h, w, -1).permute(0, 3, 1, 2)


def crop_flip(padded: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
    """Crops of ``padded`` images: index, dy, dx, flip of any shape S -> (*S, C, H, W)."""
    return CropWindows(padded).crops(index, dy, dx, flip)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> floats in [0, 1] (the default dtype: float32), then per-channel (x - mean) / std."""
    return (x.to(mean.dtype).div_(255) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
