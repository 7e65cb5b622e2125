"""Data sets from their real on-disk formats, the search splits, and seeded augmented batches.

Images are held as uint8 arrays [N, H, W, 3] with int64 labels [N]; batches are made on the fly
(random crop with zero padding + horizontal flip + normalisation) from one torch.Generator so a
seed fixes the data order, the augmentation and the search-valid sampling.

On-disk formats:
- cifar10: `{root}/cifar-10-batches-py/data_batch_1..5, test_batch` (pickled dicts, `data`
  [N, 3072] uint8 rows R,G,B planes, `labels`).
- cifar100: `{root}/cifar-100-python/train, test` (`data`, `fine_labels`).
- imagenet16-120: `{root}/ImageNet16/train_data_batch_1..10, val_data` (`data` [N, 768],
  `labels` 1..1000; the 120-class subset keeps labels <= 120).
- digits: scikit-learn's bundled 8x8 digits, upsampled to 16x16 RGB.
- fake: seeded CIFAR-shaped images with a class-dependent pattern (learnable).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MEAN_STD = {
    "cifar10": ([125.3, 123.0, 113.9], [63.0, 62.1, 66.7]),
    "cifar100": ([129.3, 124.1, 112.4], [68.2, 65.4, 70.4]),
    "imagenet16-120": ([122.68, 116.66, 104.01], [63.22, 61.26, 65.09]),
    "digits": ([127.5] * 3, [64.0] * 3),
    "fake": ([127.5] * 3, [64.0] * 3),
}


class DataError(FileNotFoundError):
    """A data set that is missing or unreadable; the message names the path and how to get it."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray
    """uint8 [N, H, W, 3]"""
    labels: np.ndarray
    """int64 [N]"""

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Split:
        return Split(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class DataSet:
    name: str
    search_train: Split
    search_valid: Split
    train: Split
    """the whole training split (retraining trains here)"""
    test: Split
    """held-out test split (retraining scores here)"""
    num_classes: int

    @property
    def image_size(self) -> int:
        return self.train.images.shape[1]


# ------------------------------------------------------------------------------------------
# readers of the on-disk formats


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise DataError(f"{path}: not a readable pickled batch ({type(e).__name__}: {e})") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _rows_to_hwc(data: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, size, size).transpose(0, 2, 3, 1).copy()


def _read_batches(paths: list[Path], label_key: str, size: int) -> Split:
    imgs, labels = [], []
    for p in paths:
        d = _unpickle(p)
        imgs.append(_rows_to_hwc(d["data"], size))
        labels.append(np.asarray(d[label_key], dtype=np.int64))
    return Split(np.concatenate(imgs), np.concatenate(labels))


def _require(paths: list[Path], name: str, how: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{name}: missing {missing[0]} ({len(missing)} of {len(paths)} files missing); {how}"
        )


def read_cifar10(root: str | Path, download: bool = False) -> tuple[Split, Split]:
    """(train 50k, test 10k) from `{root}/cifar-10-batches-py`."""
    base = Path(root) / "cifar-10-batches-py"
    train = [base / f"data_batch_{i}" for i in range(1, 6)]
    test = [base / "test_batch"]
    if download and not all(p.is_file() for p in train + test):
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    check_available("cifar10", root)
    return _read_batches(train, "labels", 32), _read_batches(test, "labels", 32)


def read_cifar100(root: str | Path, download: bool = False) -> tuple[Split, Split]:
    base = Path(root) / "cifar-100-python"
    if download and not (base / "train").is_file():
        import torchvision

        torchvision.datasets.CIFAR100(str(root), train=True, download=True)
    check_available("cifar100", root)
    return _read_batches([base / "train"], "fine_labels", 32), _read_batches(
        [base / "test"], "fine_labels", 32
    )


def read_imagenet16(root: str | Path, classes: int = 120) -> tuple[Split, Split]:
    """(train, val) of ImageNet16 restricted to labels 1..classes, relabelled 0..classes-1."""
    base = Path(root) / "ImageNet16"
    train = [base / f"train_data_batch_{i}" for i in range(1, 11)]
    val = [base / "val_data"]
    check_available("imagenet16-120", root)

    def keep(s: Split) -> Split:
        m = (s.labels >= 1) & (s.labels <= classes)
        return Split(s.images[m], s.labels[m] - 1)

    return keep(_read_batches(train, "labels", 16)), keep(_read_batches(val, "labels", 16))


def read_digits() -> tuple[Split, Split]:
    """scikit-learn's 1,797 8x8 digits as 16x16 RGB uint8; a seeded 80/20 train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images / 16.0 * 255.0).round().astype(np.uint8)  # [N, 8, 8]
    img = img.repeat(2, axis=1).repeat(2, axis=2)  # 16x16, nearest
    img = np.repeat(img[..., None], 3, axis=3)
    labels = d.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(labels))
    n_test = len(labels) // 5
    test, train = order[:n_test], order[n_test:]
    return Split(img[train], labels[train]), Split(img[test], labels[test])


def make_fake(
    seed: int = 0, n_train: int = 512, n_test: int = 256, classes: int = 10, size: int = 32
):
    """Seeded CIFAR-shaped data: per class a fixed random pattern plus noise, so a model can learn."""
    rng = np.random.default_rng(10_000 + seed)
    patterns = rng.uniform(0, 255, size=(classes, size, size, 3))

    def draw(n: int) -> Split:
        labels = rng.integers(0, classes, size=n)
        noise = rng.normal(0, 60, size=(n, size, size, 3))
        img = np.clip(0.5 * patterns[labels] + 0.5 * 127.5 + noise, 0, 255).astype(np.uint8)
        return Split(img, labels.astype(np.int64))

    return draw(n_train), draw(n_test)


def read_split_file(path: str | Path) -> dict[str, np.ndarray]:
    """An NB201 split file: JSON {key: ["int", [index strings]]} -> {key: int64 indices}."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"split_file: {p} not found (the NB201 split files: cifar-split.txt, ...)")
    try:
        raw = json.loads(p.read_text())
        return {k: np.asarray([int(i) for i in v[1]], dtype=np.int64) for k, v in raw.items()}
    except (ValueError, TypeError, IndexError, AttributeError) as e:
        raise DataError(f"split_file: {p} is not an NB201 split file ({e})") from None


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _split_keys(split: dict[str, np.ndarray], keys: tuple[str, str], path: str, n: int):
    for k in keys:
        if k not in split:
            raise DataError(f"split_file: {path} has no {k!r} key (has: {', '.join(split)})")
        if len(split[k]) and (split[k].max() >= n or split[k].min() < 0):
            raise DataError(f"split_file: {path} key {k!r} has indices outside 0..{n - 1}")
    return split[keys[0]], split[keys[1]]


def check_available(
    name: str, root: str = "data", download: bool = False, split_file: str | None = None
) -> None:
    """Raise DataError naming the expected path when a data set's files (or its split file) are
    missing (cheap, no read)."""
    if split_file and not Path(split_file).is_file():
        raise DataError(
            f"search.split_file: {split_file} not found (the NB201 split files: cifar-split.txt, ...)"
        )
    base = Path(root)
    files = {
        "cifar10": [
            base / "cifar-10-batches-py" / f
            for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
        ],
        "cifar100": [base / "cifar-100-python" / "train", base / "cifar-100-python" / "test"],
        "imagenet16-120": [
            base / "ImageNet16" / f
            for f in [*(f"train_data_batch_{i}" for i in range(1, 11)), "val_data"]
        ],
    }.get(name, [])
    if download and name in ("cifar10", "cifar100"):
        return
    how = {
        "imagenet16-120": "download ImageNet16 (the NAS-Bench-201 authors' 16x16 ImageNet) into search.data_root/ImageNet16",
    }.get(
        name,
        "put the data set (python version) under search.data_root, or set search.download: true",
    )
    _require(files, name, how)


def load_dataset(
    name: str,
    root: str = "data",
    split_file: str | None = None,
    download: bool = False,
    seed: int = 0,
) -> DataSet:
    """Read a data set and make its search splits.

    cifar10 / digits / fake: search-train and search-valid are the two halves of the training set
    (the split file's `train`/`valid`, else a 50/50 seeded by `seed`: search.split_seed, fixed by
    default so the split does not change with the trial's seed). cifar100 / imagenet16-120:
    search-train is the whole training set and search-valid the `xvalid` half of the test set,
    the test split being `xtest` (split file, else a seeded 50/50 of the test set).
    """
    if name == "cifar10":
        train, test = read_cifar10(root, download)
        classes = 10
    elif name == "cifar100":
        train, test = read_cifar100(root, download)
        classes = 100
    elif name == "imagenet16-120":
        train, test = read_imagenet16(root)
        classes = 120
    elif name == "digits":
        train, test = read_digits()
        classes = 10
    elif name == "fake":
        train, test = make_fake()
        classes = 10
    else:
        raise ValueError(f"unknown data set {name!r}")

    split = read_split_file(split_file) if split_file else None
    if name in ("cifar100", "imagenet16-120"):
        if split is not None:
            xvalid, xtest = _split_keys(split, ("xvalid", "xtest"), split_file, len(test))
        else:
            xvalid, xtest = _halves(len(test), seed)
        return _nonempty(
            DataSet(name, train, test.take(xvalid), train, test.take(xtest), classes), split_file
        )
    if split is not None:
        a, b = _split_keys(split, ("train", "valid"), split_file, len(train))
    else:
        a, b = _halves(len(train), seed)
    return _nonempty(DataSet(name, train.take(a), train.take(b), train, test, classes), split_file)


def _nonempty(data: DataSet, split_file: str | None) -> DataSet:
    """DataError when a search split holds no image (a search would divide by zero)."""
    for what, part in (("search-train", data.search_train), ("search-valid", data.search_valid)):
        if len(part) == 0:
            where = f"split_file {split_file}" if split_file else f"data set {data.name}"
            raise DataError(f"{where}: the {what} split is empty; a search needs images in both")
    return data


# ------------------------------------------------------------------------------------------
# batches


class Batcher:
    """Turns index batches of a Split into normalised (optionally augmented) tensors on a device.

    Holds the images as a uint8 tensor [N, 3, H, W]; augmentation draws from the given generator.
    """

    def __init__(self, split: Split, dataset: str, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(split.labels)
        mean, std = MEAN_STD[dataset]
        self.mean = torch.tensor(mean).view(1, 3, 1, 1) / 255.0
        self.std = torch.tensor(std).view(1, 3, 1, 1) / 255.0
        size = self.images.shape[-1]
        self.pad = 4 if size >= 32 else 2

    def __len__(self) -> int:
        return len(self.labels)

    def get(
        self, idx: torch.Tensor, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3, H, W] float32, y [B] int64; random crop + flip when `gen` is given."""
        x = self.images[idx].float().div_(255.0)
        if gen is not None:
            x = self._augment(x, gen)
        x = (x - self.mean) / self.std
        return x.to(self.device, non_blocking=True), self.labels[idx].to(
            self.device, non_blocking=True
        )

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=gen)
        flip = torch.rand(b, generator=gen) < 0.5
        rows = (oy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # [B,1,H,1]
        cols = ox[:, None] + torch.arange(w)[None, :]
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # [B,1,1,W]
        bidx = torch.arange(b)[:, None, None, None]
        cidx = torch.arange(3)[None, :, None, None]
        return padded[bidx, cidx, rows, cols]
