"""Data sets as uint8 tensors, loaded once from the original files (never from the network unless asked)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .readers import DatasetNotFound, idx_folders, read_cifar, read_idx_dataset

DATASETS = {
    "cifar10": {"classes": 10, "channels": 3, "format": "cifar"},
    "cifar100": {"classes": 100, "channels": 3, "format": "cifar"},
    "fashionmnist": {"classes": 10, "channels": 1, "format": "idx"},
    "mnist": {"classes": 10, "channels": 1, "format": "idx"},
}

_HOW_TO_GET = {
    "cifar10": "put cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/) under --data-root, "
               "or pass --download where the network works",
    "cifar100": "put cifar-100-python.tar.gz (or its extracted cifar-100-python/) under --data-root, "
                "or pass --download where the network works",
    "fashionmnist": "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`, or put the four idx files "
                    "(gzip or raw) under --data-root, or pass --download where the network works",
    "mnist": "put the four MNIST idx files (gzip or raw) under --data-root, or pass --download where the network works",
}


@dataclasses.dataclass
class ImageData:
    """uint8 images (N, C, 32, 32) and int64 labels; mean/std per channel of the training images in [0, 1]."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple
    source: str
    eval_split: str = "test"

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]


def default_data_root() -> Path:
    return Path(os.environ.get("LOSSNB_DATA", "data"))


def _download(name: str, root: Path) -> None:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
           "fashionmnist": datasets.FashionMNIST, "mnist": datasets.MNIST}[name]
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _read(name: str, root: Path):
    if DATASETS[name]["format"] == "cifar":
        return (*read_cifar(root, name), str(root))
    train_x, train_y, test_x, test_y, folder = read_idx_dataset(idx_folders(root, name))
    return train_x[:, None], train_y, test_x[:, None], test_y, str(folder)


def _pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """28x28 -> 32x32 with zero pixels (2 each side), so one augmentation fits every data set."""
    pad = (32 - x.shape[-1]) // 2
    return F.pad(x, (pad, pad, pad, pad)) if pad else x


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> None:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"{name}: label {int(bad[0])} is outside [0, {num_classes})")


def _channel_stats(x: torch.Tensor) -> tuple[tuple, tuple]:
    xf = x.to(torch.float64).div_(255)
    return tuple(xf.mean(dim=(0, 2, 3)).tolist()), tuple(xf.std(dim=(0, 2, 3)).tolist())


def subset_indices(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """A fixed random subset (the same for every run seed): the protocol's data, not the run's."""
    if not 0 < size <= n:
        raise ValueError(f"subset size {size} must be in [1, {n}]")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False,
                 train_subset: int | None = None, val_size: int | None = None) -> ImageData:
    """Load ``name`` as uint8 tensors.

    ``val_size`` holds out that many training images (fixed draw, seed 0) and evaluates on
    them instead of the test set: for choosing hyperparameters without touching test data.
    ``train_subset`` then keeps a fixed random subset of the remaining training images.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    root = Path(root) if root is not None else default_data_root()
    if download:
        _download(name, root)
    try:
        train_x, train_y, test_x, test_y, source = _read(name, root)
    except DatasetNotFound as missing:
        raise DatasetNotFound(f"{name} not found; looked in: {missing}. To get it: {_HOW_TO_GET[name]}.") from None
    num_classes = DATASETS[name]["classes"]
    for labels in (train_y, test_y):
        _check_labels(name, labels, num_classes)
    # np.array copies: idx arrays are read-only views of the file bytes
    train_x, test_x = _pad_to_32(torch.from_numpy(np.array(train_x))), _pad_to_32(torch.from_numpy(np.array(test_x)))
    train_y, test_y = torch.from_numpy(np.array(train_y)), torch.from_numpy(np.array(test_y))
    mean, std = _channel_stats(train_x)  # of the full training set: one normalisation per data set
    eval_split = "test"
    if val_size:
        order = subset_indices(len(train_y), len(train_y), seed=0)
        held, kept = order[:val_size], order[val_size:]
        test_x, test_y, train_x, train_y = train_x[held], train_y[held], train_x[kept], train_y[kept]
        eval_split = "val"
    if train_subset:
        keep = subset_indices(len(train_y), train_subset, seed=1)
        train_x, train_y = train_x[keep], train_y[keep]
    return ImageData(name, train_x.contiguous(), train_y, test_x.contiguous(), test_y, num_classes,
                     mean, std, source, eval_split)
