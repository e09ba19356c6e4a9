"""Readers for the original on-disk formats: CIFAR python pickles and MNIST-style idx files.

CIFAR files are checked against torchvision's published MD5s *before* anything is
unpickled (unpickling runs code). idx files may be gzip-compressed or raw.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100, FashionMNIST, MNIST


class DatasetNotFound(FileNotFoundError):
    pass


class ChecksumMismatch(ValueError):
    pass


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- CIFAR (python pickle archives)

def _cifar_meta(name: str):
    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    return {
        "folder": cls.base_folder, "archive": cls.filename, "archive_md5": cls.tgz_md5,
        "train": dict(cls.train_list), "test": dict(cls.test_list),
        "label_key": "labels" if name == "cifar10" else "fine_labels",
    }


def _verified(name: str, data: bytes, expected: str, where: str) -> bytes:
    actual = md5(data)
    if actual != expected:
        raise ChecksumMismatch(f"{where}: MD5 {actual} does not match the published {expected}; "
                               f"refusing to unpickle {name}")
    return data


def _unpickle_batches(blobs: list[bytes], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for blob in blobs:
        entry = pickle.loads(blob, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return np.concatenate(images), np.asarray(labels, dtype=np.int64)


def read_cifar(root: Path, name: str, checksums: dict[str, str] | None = None):
    """(train_x, train_y, test_x, test_y) from ``root/cifar-10-batches-py/`` (or -100) or the .tar.gz beside it.

    ``checksums`` maps file names to MD5s and overrides the published ones (tests use
    tiny files in the true format, whose checksums are their own).
    """
    meta = _cifar_meta(name)
    expected = {**meta["train"], **meta["test"], meta["archive"]: meta["archive_md5"], **(checksums or {})}
    folder, archive = root / meta["folder"], root / meta["archive"]
    if folder.is_dir():
        def load(fname):
            path = folder / fname
            return _verified(fname, path.read_bytes(), expected[fname], str(path))
    elif archive.is_file():
        raw = _verified(meta["archive"], archive.read_bytes(), expected[meta["archive"]], str(archive))
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz")

        def load(fname):
            member = tar.extractfile(f"{meta['folder']}/{fname}")
            return _verified(fname, member.read(), expected[fname], f"{archive}:{fname}")
    else:
        raise DatasetNotFound(str(folder))
    train = _unpickle_batches([load(f) for f in meta["train"]], meta["label_key"])
    test = _unpickle_batches([load(f) for f in meta["test"]], meta["label_key"])
    return (*train, *test)


# ---------------------------------------------------------------- MNIST-style idx files

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's format: 2 zero bytes, dtype code, ndim, big-endian int32 dims, data).

    Written by hand because torchvision's reader wants uncompressed files in its own folder layout.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is not a readable gzip file ({err})") from None
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, where: str) -> np.ndarray:
    """The array in idx bytes; ``where`` names the file in errors."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{where} is not an idx file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{where}: header says {dims} ({int(np.prod(dims))} values) but holds {data.size}")
    return data.reshape(dims)


_IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
              "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_IDX_FOLDERS = {"fashionmnist": ("FashionMNIST/raw", "fashion-mnist"), "mnist": ("MNIST/raw", "mnist")}


def _known_idx_digests() -> dict[str, tuple[str, str, str]]:
    """MD5 -> (data set, file stem, what it is a digest of)."""
    known = {}
    for name, cls in (("fashionmnist", FashionMNIST), ("mnist", MNIST)):
        for fname, digest in cls.resources:  # the published .gz files, as torchvision lists them
            known[digest] = (name, fname.removesuffix(".gz"), "published MD5 of the .gz file")
    # the Debian package dataset-fashion-mnist recompresses the published files: its .gz bytes differ, so
    # its files are recognised by the MD5 of their decompressed idx content (computed from the package)
    for stem, digest in (("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                         ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
                         ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
                         ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965")):
        known[digest] = ("fashionmnist", stem, "MD5 of the idx content of Debian's dataset-fashion-mnist")
    return known


KNOWN_IDX_MD5 = _known_idx_digests()


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def idx_folders(root: Path | None, name: str) -> list[Path]:
    """Where MNIST-style files are looked for, in order: only folders named for this data set, so that
    one data set's files (which share their names with the other's) are never read as the other."""
    folders = [root / sub for sub in _IDX_FOLDERS[name]] if root is not None else []
    if name == "fashionmnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def verified_idx_bytes(path: Path, name: str, stem: str) -> tuple[bytes, str]:
    """The idx content of ``path`` (decompressed) and how it was verified; a file that is not a known copy of
    ``name``'s ``stem`` (corrupt, truncated, another data set's) is refused with one line naming it."""
    raw = path.read_bytes()
    found = KNOWN_IDX_MD5.get(md5(raw))
    content = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ChecksumMismatch(f"{path} is not a readable gzip file ({err})") from None
    found = found or KNOWN_IDX_MD5.get(md5(content))
    if found is None:
        raise ChecksumMismatch(f"{path}: MD5 {md5(raw)} matches no published copy of {name}'s {stem} "
                               f"(nor the Debian package's); refusing it")
    if found[:2] != (name, stem):
        raise ChecksumMismatch(f"{path} is {found[0]}'s {found[1]}, not {name}'s {stem}")
    return content, found[2]


def read_idx_dataset(folders: list[Path], name: str):
    """(train_x, train_y, test_x, test_y, folder, how verified) from the first folder holding all four files."""
    for folder in folders:
        paths = {k: _find_idx(folder, stem) for k, stem in _IDX_FILES.items()}
        if all(paths.values()):
            arrays, checks = {}, set()
            for key, path in paths.items():
                content, how = verified_idx_bytes(path, name, _IDX_FILES[key])
                arrays[key] = parse_idx(content, str(path))
                checks.add(how)
            return (arrays["train_x"], arrays["train_y"].astype(np.int64),
                    arrays["test_x"], arrays["test_y"].astype(np.int64), str(folder), "; ".join(sorted(checks)))
    raise DatasetNotFound(", ".join(str(f) for f in folders))
