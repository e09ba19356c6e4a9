"""Data readers on tiny files in the true on-disk formats, the checksum path, and augmentation statistics."""
import gzip
import hashlib
import io
import pickle
import re
import struct
import tarfile

import numpy as np
import pytest
import torch

from lossnb.data import (ChecksumMismatch, CropWindows, DatasetNotFound, EpochPlan, crop_flip, load_dataset, pad_images,
                         read_cifar, read_idx)
from lossnb.data import readers
from lossnb.data.readers import DEBIAN_FASHION_MNIST

FMNIST_DIR = DEBIAN_FASHION_MNIST


# ---------------------------------------------------------------- CIFAR pickle fixtures

def _cifar_files(name, per_batch=4, seed=0):
    """{file name: bytes} laid out as the python version of CIFAR (dicts of 'data' uint8 (n, 3072) + labels)."""
    rng = np.random.default_rng(seed)
    classes, key = (10, "labels") if name == "cifar10" else (100, "fine_labels")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    files, expected = {}, {"train": [], "test": []}
    for fname in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=per_batch).tolist()
        files[fname] = pickle.dumps({"data": data, key: labels, "batch_label": fname}, protocol=2)
        expected["test" if "test" in fname else "train"].append((data, labels))
    return files, expected


def _write_folder(root, name, files):
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    for fname, blob in files.items():
        (folder / fname).write_bytes(blob)
    return folder


def _md5s(files):
    return {f: hashlib.md5(b).hexdigest() for f, b in files.items()}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder_is_read_in_the_published_layout(tmp_path, name):
    files, expected = _cifar_files(name)
    _write_folder(tmp_path, name, files)
    train_x, train_y, test_x, test_y = read_cifar(tmp_path, name, checksums=_md5s(files))
    want_train = np.concatenate([d for d, _ in expected["train"]]).reshape(-1, 3, 32, 32)
    assert train_x.dtype == np.uint8 and np.array_equal(train_x, want_train)
    assert train_y.tolist() == sum((lab for _, lab in expected["train"]), [])
    # row layout of the archive: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert test_x[0, 1, 0, 5] == expected["test"][0][0][0, 1024 + 5]
    assert test_y.tolist() == expected["test"][0][1]


def test_cifar_tar_gz_archive_is_read_without_extracting(tmp_path):
    files, _ = _cifar_files("cifar10")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, blob in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{fname}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    sums = {**_md5s(files), "cifar-10-python.tar.gz": hashlib.md5(buf.getvalue()).hexdigest()}
    train_x, _, test_x, _ = read_cifar(tmp_path, "cifar10", checksums=sums)
    assert train_x.shape == (20, 3, 32, 32) and test_x.shape == (4, 3, 32, 32)


class _PlantsAFile:
    """A pickle that, if ever loaded, creates a file: proof that unpickling ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_file_failing_its_checksum_is_never_unpickled(tmp_path):
    files, _ = _cifar_files("cifar10")
    sums = _md5s(files)
    marker = tmp_path / "unpickled"
    files["data_batch_3"] = pickle.dumps(_PlantsAFile(str(marker)))  # tampered after the checksums were taken
    _write_folder(tmp_path, "cifar10", files)
    with pytest.raises(ChecksumMismatch, match="data_batch_3.*does not match the published"):
        read_cifar(tmp_path, "cifar10", checksums=sums)
    assert not marker.exists()


def test_published_checksums_are_used_by_default(tmp_path):
    files, _ = _cifar_files("cifar100")
    _write_folder(tmp_path, "cifar100", files)
    with pytest.raises(ChecksumMismatch, match="16019d7e3df5f24257cddd939b257f8d"):  # torchvision's MD5 of 'train'
        read_cifar(tmp_path, "cifar100")


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound, match=rf"cifar10 not found; looked in: {tmp_path}.*--download"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetNotFound, match="mnist not found.*idx .gz files in --data-root/mnist/"):
        load_dataset("mnist", tmp_path)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*cifar10, cifar100, fashionmnist, mnist"):
        load_dataset("cifar")


# ---------------------------------------------------------------- idx (MNIST-style) fixtures

def _idx_bytes(array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder, n_train=6, n_test=4, gz=True, seed=0, monkeypatch=None, name="mnist", n_labels=None):
    """Tiny idx files; with ``monkeypatch``, their content digests are made known as ``name``'s (tiny files
    cannot match the published checksums, which stay in force for every other file)."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_labels or n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        blob = _idx_bytes(arr)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(blob) if gz else blob)
        if monkeypatch:
            monkeypatch.setitem(readers.KNOWN_IDX_MD5, hashlib.md5(blob).hexdigest(), (name, stem, "test fixture"))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gzip_or_raw(tmp_path, gz, monkeypatch):
    arrays = _write_mnist(tmp_path / "MNIST" / "raw", gz=gz, monkeypatch=monkeypatch)  # torchvision's layout
    data = load_dataset("mnist", tmp_path)
    assert data.train_x.shape == (6, 1, 32, 32) and data.train_x.dtype == torch.uint8
    # 28x28 padded with 2 zero pixels on each side
    assert torch.equal(data.train_x[:, 0, 2:30, 2:30], torch.from_numpy(arrays["train-images-idx3-ubyte"]).byte())
    assert data.train_x[:, :, :2].sum() == 0 and data.train_x[:, :, :, 30:].sum() == 0
    assert data.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_reader_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.arange(10))[:-3])
    with pytest.raises(ValueError, match=r"header says \(10,\).*holds 7"):
        read_idx(path)


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashionmnist")
    assert data.train_x.shape == (60000, 1, 32, 32) and data.test_x.shape == (10000, 1, 32, 32)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10  # the published class balance
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_subset_and_validation_split_are_fixed_and_disjoint():
    a = load_dataset("fashionmnist", train_subset=500, val_size=1000)
    b = load_dataset("fashionmnist", train_subset=500, val_size=1000)
    assert a.eval_split == "val" and len(a.test_y) == 1000 and len(a.train_y) == 500
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    train_rows = {bytes(x.numpy()) for x in a.train_x}
    assert not any(bytes(x.numpy()) in train_rows for x in a.test_x)


# ---------------------------------------------------------------- augmentation

def _position_image(n):
    """Each pixel holds 1 + its column index (1..32), so a crop's offset and flip can be read off it."""
    cols = torch.arange(1, 33, dtype=torch.uint8)
    return cols.view(1, 1, 1, 32).expand(n, 1, 32, 32).contiguous()


def _augment(x, seed, epoch, flip=True):
    plan = EpochPlan.draw(seed, epoch, len(x), torch.device("cpu"), flip)
    return crop_flip(pad_images(x), plan.order, plan.dy, plan.dx, plan.flip), plan


def test_crop_offsets_and_flips_are_uniform_and_padding_is_zero():
    n = 40_000
    out, _ = _augment(_position_image(n), 0, 0)
    row = out[:, 0, 16].long()  # one row: columns of the padded image, 0 where padding
    # unflipped rows increase left to right: the largest source column lies right of the smallest
    flipped = row.argmax(dim=1) < torch.where(row > 0, row, 99).argmin(dim=1)
    left = torch.where(flipped[:, None], row.flip(1), row)  # undo the flip
    # offset dx: the first real column is 1 + max(0, dx - 4); padding zeros fill where the crop leaves the image
    zeros_left = (left == 0).long().cumprod(dim=1).sum(dim=1)
    zeros_right = (left.flip(1) == 0).long().cumprod(dim=1).sum(dim=1)
    dx = torch.where(zeros_left > 0, 4 - zeros_left, 4 + zeros_right)
    counts = torch.bincount(dx, minlength=9).float()
    expected = n / 9
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 26.1, counts  # 8 degrees of freedom, p = 0.001
    assert abs(flipped.float().mean() - 0.5) < 0.01
    # inside the image the values are the source columns in order: padding is the only source of zeros
    nonzero = left[left > 0].view(-1)
    assert nonzero.min() >= 1 and nonzero.max() <= 32


def test_a_data_set_without_flip_is_never_flipped():
    out, plan = _augment(_position_image(2000), 0, 0, flip=False)
    row = out[:, 0, 16].long()
    assert not plan.flip.any()
    nonzero = [r[r > 0] for r in row]
    assert all(bool((r[1:] > r[:-1]).all()) for r in nonzero)  # columns left to right in every crop


def test_augmentation_is_a_function_of_seed_and_epoch():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a, _ = _augment(x, 3, 7)
    b, _ = _augment(x, 3, 7)
    c, _ = _augment(x, 3, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_matches_torchvision_for_each_image_its_offsets_and_flip():
    import torchvision.transforms.v2.functional as TF

    x = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out, plan = _augment(x, 0, 0)
    for i in range(16):
        want = TF.crop(TF.pad(x[plan.order[i]], [4]), int(plan.dy[i]), int(plan.dx[i]), 32, 32)
        want = TF.horizontal_flip(want) if plan.flip[i] else want
        assert torch.equal(out[i], want)
    # K runs at once: a stacked plan gives each run the crops its own plan gives
    plans = [EpochPlan.draw(s, 0, 16, torch.device("cpu")) for s in (0, 1)]
    both = EpochPlan.stack(plans)
    stacked = crop_flip(pad_images(x), both.order, both.dy, both.dx, both.flip)
    assert torch.equal(stacked[0], out) and torch.equal(stacked[1], _augment(x, 1, 0)[0])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("source_channels, channels", [(3, 3), (1, 3), (1, 1)])
def test_a_packs_batch_holds_each_runs_torchvision_crops_in_its_channel_block(channels_last, source_channels,
                                                                              channels):
    """The step's input for K runs: image b of the batch holds run k's crop (its own image, offsets, flip) in
    channels k*C..(k+1)*C, gray images repeated to the model's C channels, contiguous in the memory format asked."""
    import torchvision.transforms.v2.functional as TF

    x = torch.randint(1, 256, (24, source_channels, 32, 32), dtype=torch.uint8)
    plans = EpochPlan.stack([EpochPlan.draw(seed, 0, 24, torch.device("cpu")) for seed in (0, 1, 2)])
    windows = CropWindows(pad_images(x), channels=channels, channels_last=channels_last)
    start, size = 5, 16  # a slice of the epoch, as a step takes it
    offsets = windows.offsets(plans.order, plans.dy, plans.dx, plans.flip).t()[start:start + size]
    got = windows.batch(offsets)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert got.shape == (size, 3 * channels, 32, 32) and got.is_contiguous(memory_format=layout)
    for b in range(size):
        i = start + b
        want = []
        for k in range(3):
            img = TF.crop(TF.pad(x[plans.order[k, i]], [4]), int(plans.dy[k, i]), int(plans.dx[k, i]), 32, 32)
            img = TF.horizontal_flip(img) if plans.flip[k, i] else img
            want.append(img.expand(channels, 32, 32))
        assert torch.equal(got[b], torch.cat(want).float())


def test_images_of_several_channels_are_not_read_as_another_count():
    with pytest.raises(ValueError, match="3-channel images cannot be read as 1 channels"):
        CropWindows(pad_images(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), channels=1)


# ---------------------------------------------------------------- the benchmark's FashionMNIST task, and bad data

@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.slow
def test_benchmark_fashion_mnist_matches_torchvisions_transforms_on_the_same_images():
    """resize-rgb against the benchmark's harness: torchvision's FashionMNIST (PIL images), Resize(32),
    Grayscale(3 channels), ToTensor, Normalize with the data set's mean/std."""
    from torchvision import transforms

    data = load_dataset("fashionmnist", prep="resize-rgb")
    raw = read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert data.test_x.shape == (10000, 3, 32, 32) and data.train_x.shape == (60000, 3, 32, 32)
    train = read_idx(FMNIST_DIR / "train-images-idx3-ubyte.gz").astype(np.float64) / 255
    assert data.mean == pytest.approx((train.mean(),) * 3) and data.std == pytest.approx((train.std(ddof=1),) * 3)
    tf = transforms.Compose([transforms.Resize(32), transforms.Grayscale(num_output_channels=3),
                             transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    from PIL import Image

    ours = (data.test_x[:200].float() / 255 - torch.tensor(data.mean).view(3, 1, 1)) / torch.tensor(data.std).view(3, 1, 1)
    want = torch.stack([tf(Image.fromarray(raw[i], mode="L")) for i in range(200)])
    assert torch.allclose(ours, want, atol=1e-6)


def test_image_and_label_counts_must_agree(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "mnist", n_train=6, n_labels=5, monkeypatch=monkeypatch)
    with pytest.raises(ValueError, match="mnist train: 6 images but 5 labels"):
        load_dataset("mnist", tmp_path)


def test_one_data_sets_files_are_never_read_as_anothers(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "mnist", monkeypatch=monkeypatch, name="fashionmnist")  # FashionMNIST's, in mnist/
    with pytest.raises(ChecksumMismatch, match="is fashionmnist's train-images-idx3-ubyte, not mnist's"):
        load_dataset("mnist", tmp_path)
    _write_mnist(tmp_path, monkeypatch=monkeypatch)  # at the root: not a folder named for either data set
    with pytest.raises(DatasetNotFound):
        load_dataset("mnist", tmp_path / "elsewhere")
    assert readers.idx_folders(tmp_path, "mnist") == [tmp_path / "MNIST" / "raw", tmp_path / "mnist"]


def test_unknown_corrupt_or_truncated_gzip_files_are_refused_naming_the_file(tmp_path):
    _write_mnist(tmp_path / "mnist")  # no digest known: not a published copy
    with pytest.raises(ChecksumMismatch, match=r"train-images-idx3-ubyte.gz: MD5 \w+ matches no published copy"):
        load_dataset("mnist", tmp_path)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(ChecksumMismatch, match=f"{path} is not a readable gzip file"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"val_size": -5}, "val_size=-5; it must be a positive integer"),
    ({"train_subset": 0}, "train_subset=0; it must be a positive integer"),
    ({"train_subset": 7}, "train_subset=7 is more than the 6 training images"),
    ({"val_size": 5}, "val_size=5 leaves fewer than 2 of the 6 training images"),
    ({"train_subset": 1}, "a training set of 1 image(s); BatchNorm needs at least 2"),
])
def test_sizes_are_checked_before_anything_trains(tmp_path, monkeypatch, kwargs, message):
    _write_mnist(tmp_path / "mnist", monkeypatch=monkeypatch)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("mnist", tmp_path, **kwargs)
