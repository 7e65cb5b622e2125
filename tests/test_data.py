import json
import pickle

import numpy as np
import pytest
import torch

from ray_nas.training.data import Batcher, DataError, load_dataset


def _write_batch(path, n, size, label_key, labels, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3 * size * size), dtype=np.uint8)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key.encode(): list(labels)}, f)
    return data


def test_cifar10_reads_real_format_and_honours_split_file(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    first = None
    for i in range(1, 6):
        d = _write_batch(base / f"data_batch_{i}", 4, 32, "labels", [i % 10] * 4, i)
        first = d if i == 1 else first
    _write_batch(base / "test_batch", 6, 32, "labels", range(6), 9)
    split = tmp_path / "split.txt"
    split.write_text(json.dumps({"train": ["int", ["0", "2"]], "valid": ["int", ["1", "5", "19"]]}))
    ds = load_dataset("cifar10", str(tmp_path), split_file=str(split))
    assert len(ds.train) == 20 and len(ds.test) == 6 and ds.num_classes == 10
    assert len(ds.search_train) == 2 and len(ds.search_valid) == 3
    # pixel layout: CIFAR rows are R, G, B planes -> HWC
    np.testing.assert_array_equal(ds.search_train.images[1][..., 0].reshape(-1), first[2][:1024])
    assert ds.search_valid.labels.tolist() == [1, 2, 5]


def test_cifar10_seeded_halves_without_split_file(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for i in range(1, 6):
        _write_batch(base / f"data_batch_{i}", 4, 32, "labels", [0] * 4, i)
    _write_batch(base / "test_batch", 2, 32, "labels", [0, 1], 9)
    a = load_dataset("cifar10", str(tmp_path), seed=1)
    b = load_dataset("cifar10", str(tmp_path), seed=1)
    assert len(a.search_train) == len(a.search_valid) == 10
    np.testing.assert_array_equal(a.search_train.images, b.search_train.images)


def test_imagenet16_keeps_labels_up_to_120(tmp_path):
    base = tmp_path / "ImageNet16"
    base.mkdir()
    for i in range(1, 11):
        _write_batch(base / f"train_data_batch_{i}", 3, 16, "labels", [1, 120, 500], i)
    _write_batch(base / "val_data", 4, 16, "labels", [1, 2, 121, 1000], 99)
    ds = load_dataset("imagenet16-120", str(tmp_path))
    assert ds.num_classes == 120 and ds.image_size == 16
    assert len(ds.train) == 20 and set(ds.train.labels.tolist()) == {0, 119}
    assert len(ds.search_valid) + len(ds.test) == 2  # val labels 1 and 2 survive, split in halves


def test_cifar100_uses_the_test_split_file(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    _write_batch(base / "train", 5, 32, "fine_labels", range(5), 1)
    _write_batch(base / "test", 4, 32, "fine_labels", [7, 8, 9, 10], 2)
    split = tmp_path / "c100.txt"
    split.write_text(json.dumps({"xvalid": ["int", ["0", "3"]], "xtest": ["int", ["1", "2"]]}))
    ds = load_dataset("cifar100", str(tmp_path), split_file=str(split))
    assert len(ds.search_train) == 5
    assert ds.search_valid.labels.tolist() == [7, 10] and ds.test.labels.tolist() == [8, 9]


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_1.*search.download"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="split_file"):
        load_dataset("digits", split_file=str(tmp_path / "nope.txt"))


def test_digits_and_fake_are_learnable_shapes():
    d = load_dataset("digits")
    assert d.image_size == 16 and d.num_classes == 10 and len(d.test) > 300
    f = load_dataset("fake")
    assert f.image_size == 32 and len(f.search_train) == 256


def test_batches_are_seeded_and_augmented():
    ds = load_dataset("fake")
    b = Batcher(ds.search_train, "fake")
    idx = torch.arange(8)
    x1, y1 = b.get(idx, torch.Generator().manual_seed(0))
    x2, _ = b.get(idx, torch.Generator().manual_seed(0))
    x3, _ = b.get(idx, torch.Generator().manual_seed(1))
    x0, _ = b.get(idx)
    assert x1.shape == (8, 3, 32, 32) and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and not torch.equal(x1, x3) and not torch.equal(x0, x1)


def test_real_cifar10_from_the_shared_jpegs(tmp_path):
    """The only real CIFAR-10 here: unpacked (small) by the shared tool into CIFAR's own format."""
    import subprocess
    import sys

    from .conftest import SHARED

    tool = SHARED / "tools" / "cifar10_from_jpeg.py"
    if not tool.is_file():
        pytest.skip(f"{tool} not found")
    subprocess.run([sys.executable, str(tool), str(tmp_path), "--limit-per-class", "10"], check=True,
                   capture_output=True)  # fmt: skip
    ds = load_dataset("cifar10", str(tmp_path), seed=0)
    assert len(ds.train) == 100 and len(ds.test) == 100
    assert ds.train.images.shape[1:] == (32, 32, 3) and set(ds.train.labels.tolist()) == set(
        range(10)
    )
    # the official split file indexes the original 50k order, so it is refused here with a clear error
    split = SHARED / "data" / "nb201" / "cifar-split.txt"
    with pytest.raises(DataError, match="outside 0..99"):
        load_dataset("cifar10", str(tmp_path), split_file=str(split))
