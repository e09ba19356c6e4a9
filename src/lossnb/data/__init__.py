"""Data: original-format readers, uint8 tensors loaded once, batched on-device augmentation."""
from .augment import epoch_generator, normalize, random_crop_flip
from .datasets import DATASETS, ImageData, load_dataset, subset_indices
from .readers import ChecksumMismatch, DatasetNotFound, read_cifar, read_idx

__all__ = ["DATASETS", "ChecksumMismatch", "DatasetNotFound", "ImageData", "epoch_generator", "load_dataset",
           "normalize", "random_crop_flip", "read_cifar", "read_idx", "subset_indices"]
