"""Data: original-format readers, uint8 tensors loaded once, batched on-device augmentation."""
from .augment import CropWindows, EpochPlan, crop_flip, epoch_generator, normalize, pad_images
from .datasets import DATASETS, IMAGE_PREPS, ImageData, input_channels, load_dataset, subset_indices
from .readers import ChecksumMismatch, DatasetNotFound, read_cifar, read_idx

__all__ = ["DATASETS", "IMAGE_PREPS", "ChecksumMismatch", "CropWindows", "DatasetNotFound", "EpochPlan", "ImageData",
           "crop_flip", "epoch_generator", "input_channels", "load_dataset", "normalize", "pad_images", "read_cifar",
           "read_idx", "subset_indices"]
