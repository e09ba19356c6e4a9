"""Data sets as uint8 tensors, loaded once from the original files (never from the network unless asked)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .readers import DatasetNotFound, idx_folders, read_cifar, read_idx_dataset

# flip: whether the protocol's horizontal flip suits the data set (a flipped digit is another glyph)
DATASETS = {
    "cifar10": {"classes": 10, "channels": 3, "format": "cifar", "flip": True},
    "cifar100": {"classes": 100, "channels": 3, "format": "cifar", "flip": True},
    "fashionmnist": {"classes": 10, "channels": 1, "format": "idx", "flip": True},
    "mnist": {"classes": 10, "channels": 1, "format": "idx", "flip": False},
}

# how a data set's images become the 32x32 inputs every model takes (CIFAR's already are, in both)
IMAGE_PREPS = {
    "pad": "28x28 images zero-padded to 32x32, channels as stored",
    "resize-rgb": "28x28 images resized to 32x32 (bilinear, as torchvision's Resize) and repeated to 3 channels, "
                  "as the benchmark's FashionMNIST task",
}

def input_channels(dataset: str, prep: str) -> int:
    """Channels of the 32x32 images a model of this data set and preparation receives."""
    return 3 if prep == "resize-rgb" else DATASETS[dataset]["channels"]


_HOW_TO_GET = {
    "cifar10": "put cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/) under --data-root, "
               "or pass --download where the network works",
    "cifar100": "put cifar-100-python.tar.gz (or its extracted cifar-100-python/) under --data-root, "
                "or pass --download where the network works",
    "fashionmnist": "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`, or put the four published idx "
                    ".gz files in --data-root/fashion-mnist/, or pass --download where the network works",
    "mnist": "put the four published MNIST idx .gz files in --data-root/mnist/, or pass --download where the "
             "network works",
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
    flip: bool = True
    prep: str = "pad"
    checksums: str = ""

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
        return (*read_cifar(root, name), str(root), "MD5 of every file matches torchvision's published value")
    return read_idx_dataset(idx_folders(root, name), name)


def _prepare(x: torch.Tensor, prep: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C', 32, 32) as IMAGE_PREPS says."""
    if x.shape[-1] == 32:
        return x
    if prep == "pad":  # 2 zero pixels each side, so one augmentation fits every data set
        pad = (32 - x.shape[-1]) // 2
        return F.pad(x, (pad, pad, pad, pad))
    # torchvision's uint8 bilinear resize: the same pixels as Resize(32) on the PIL images the benchmark reads
    resized = TF.resize(x, [32, 32], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return resized.expand(-1, 3, -1, -1).contiguous() if resized.shape[1] == 1 else resized


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
                 train_subset: int | None = None, val_size: int | None = None, prep: str = "pad") -> ImageData:
    """Load ``name`` as uint8 tensors.

    ``val_size`` holds out that many training images (fixed draw, seed 0) and evaluates on
    them instead of the test set: for choosing hyperparameters without touching test data.
    ``train_subset`` then keeps a fixed random subset of the remaining training images.
    ``prep`` says how images become 32x32 (IMAGE_PREPS).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    root = Path(root) if root is not None else default_data_root()
    if download:
        _download(name, root)
    if prep not in IMAGE_PREPS:
        raise ValueError(f"unknown image_prep {prep!r}; choose one of: {', '.join(IMAGE_PREPS)}")
    try:
        train_x, train_y, test_x, test_y, source, checksums = _read(name, root)
    except DatasetNotFound as missing:
        raise DatasetNotFound(f"{name} not found; looked in: {missing}. To get it: {_HOW_TO_GET[name]}.") from None
    num_classes = DATASETS[name]["classes"]
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        if len(images) != len(labels):
            raise ValueError(f"{name} {split}: {len(images)} images but {len(labels)} labels in {source}")
        _check_labels(name, labels, num_classes)
    # np.array copies: idx arrays are read-only views of the file bytes
    train_x, test_x = torch.from_numpy(np.array(train_x)), torch.from_numpy(np.array(test_x))
    train_y, test_y = torch.from_numpy(np.array(train_y)), torch.from_numpy(np.array(test_y))
    if train_x.dim() == 3:  # idx images (N, H, W): one channel
        train_x, test_x = train_x[:, None], test_x[:, None]
    stored = train_x
    train_x, test_x = _prepare(train_x, prep), _prepare(test_x, prep)
    # one normalisation per data set, from its full training set: as padded (what the earlier protocols'
    # records ran with), or as stored before the resize (the usual FashionMNIST 0.286 / 0.353)
    mean, std = _channel_stats(train_x if prep == "pad" else stored)
    if train_x.shape[1] != len(mean):  # grey repeated to 3 channels
        mean, std = mean * train_x.shape[1], std * train_x.shape[1]
    _check_sizes(len(train_y), train_subset, val_size)
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
                     mean, std, source, eval_split, DATASETS[name]["flip"], prep, checksums)


def _check_sizes(n: int, train_subset: int | None, val_size: int | None) -> None:
    """Sizes refused before anything loads onto a device: each names the value and what is allowed."""
    for key, value in (("train_subset", train_subset), ("val_size", val_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key}={value!r}; it must be a positive integer or unset")
    if val_size and val_size > n - 2:
        raise ValueError(f"val_size={val_size} leaves fewer than 2 of the {n} training images to train on")
    left = n - (val_size or 0)
    if train_subset and train_subset > left:
        raise ValueError(f"train_subset={train_subset} is more than the {left} training images there are")
    if (train_subset or left) < 2:
        raise ValueError(f"a training set of {train_subset or left} image(s); BatchNorm needs at least 2")
