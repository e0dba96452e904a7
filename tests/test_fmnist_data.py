"""Fashion-MNIST idx loader: round trip on tiny synthetic files, and its errors."""
import gzip

import numpy as np
import pytest
import torch

from dgflow.data import fmnist


def _write_split(root, split, n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    img_name, lab_name = fmnist.FILES[split]
    fmnist.write_idx(root / img_name, images)
    fmnist.write_idx(root / lab_name, labels)
    return images, labels


@pytest.fixture
def tiny(tmp_path):
    train = _write_split(tmp_path, "train", 7, seed=1)
    test = _write_split(tmp_path, "test", 3, seed=2)
    return tmp_path, train, test


def test_round_trip(tiny):
    root, (xi, yi), (xt, yt) = tiny
    images, labels = fmnist.load("train", root, check_size=False)
    np.testing.assert_array_equal(images, xi)
    np.testing.assert_array_equal(labels, yi)
    assert labels.dtype == np.int64
    images, labels = fmnist.load("test", root, check_size=False)
    np.testing.assert_array_equal(images, xt)


def test_env_var_sets_directory(tiny, monkeypatch):
    root = tiny[0]
    monkeypatch.setenv(fmnist.ENV_VAR, str(root))
    assert fmnist.data_dir() == root
    assert fmnist.load("test", check_size=False)[0].shape == (3, 28, 28)


def test_model_input_range_and_padding():
    img = np.zeros((2, 28, 28), dtype=np.uint8)
    img[0, 0, 0] = 255
    x = fmnist.to_model_input(img)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert float(x[0, 0, 2, 2]) == 1.0          # pixel 255 -> 1 at the padded position
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert bool((x[:, :, :2] == -1).all()) and bool((x[:, :, :, -2:] == -1).all())
    assert fmnist.to_model_input(img, pad=0).shape == (2, 1, 28, 28)


def test_missing_file_names_directory_and_files(tmp_path):
    with pytest.raises(fmnist.FashionMNISTError) as e:
        fmnist.load("train", tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_truncated_gzip(tiny):
    root = tiny[0]
    path = root / fmnist.FILES["train"][0]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(fmnist.FashionMNISTError, match="truncated"):
        fmnist.load("train", root, check_size=False)


def test_truncated_payload_in_valid_gzip(tiny):
    root = tiny[0]
    path = root / fmnist.FILES["test"][0]
    with gzip.open(path) as fh:
        raw = fh.read()
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-10])
    with pytest.raises(fmnist.FashionMNISTError, match="truncated or padded"):
        fmnist.load("test", root, check_size=False)


def test_wrong_magic_and_count_mismatch(tiny):
    root = tiny[0]
    img_name, lab_name = fmnist.FILES["test"]
    (root / img_name).write_bytes((root / lab_name).read_bytes())  # a labels file where images belong
    with pytest.raises(fmnist.FashionMNISTError, match="magic"):
        fmnist.load("test", root, check_size=False)
    fmnist.write_idx(root / img_name, np.zeros((4, 28, 28), np.uint8))  # 4 images, 3 labels
    with pytest.raises(fmnist.FashionMNISTError, match="4 images"):
        fmnist.load("test", root, check_size=False)


def test_official_size_is_checked(tiny):
    with pytest.raises(fmnist.FashionMNISTError, match="expected 60000"):
        fmnist.load("train", tiny[0])


def test_bad_split(tiny):
    with pytest.raises(ValueError, match="split"):
        fmnist.load("validation", tiny[0])
