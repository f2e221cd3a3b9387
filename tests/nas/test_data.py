"""Data loaders: .npz and image folders built in tmp, Fashion-MNIST when installed, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nas.data import FASHION_MNIST, DataError, fashion_mnist, load_dataset, load_image_folder, load_npz


def test_npz_uint8_nhw_with_held_out_validation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 50)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    d = load_npz(path, val_fraction=0.2)
    assert d.x_train.shape == (40, 1, 12, 12) and d.x_val.shape == (10, 1, 12, 12) and d.x_test.shape == (10, 1, 12, 12)
    assert d.x_train.dtype == np.float32 and d.x_train.max() <= 1.0 and d.num_classes == 3
    # the split is a permutation: every training image is in exactly one of train/validation
    both = np.concatenate([d.x_train, d.x_val]).reshape(50, -1)
    assert sorted(map(bytes, (both * 255).round().astype(np.uint8))) == sorted(map(bytes, x.reshape(50, -1)))
    assert np.array_equal(d.x_test[:, 0], x[:10] / np.float32(255))


def test_npz_nhwc_float_and_explicit_validation(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((8, 10, 10, 3), dtype=np.float32)
    y = np.arange(8) % 4
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=x, y_train=y, x_val=x[:2], y_val=y[:2], x_test=x[:3], y_test=y[:3])
    d = load_dataset(str(path))
    assert d.x_train.shape == (8, 3, 10, 10) and d.x_val.shape == (2, 3, 10, 10) and d.in_channels == 3
    assert np.array_equal(d.x_train[0], x[0].transpose(2, 0, 1))


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 8, 8))}, "missing array"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(3, int), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int)}, "labels must be 4 integers"),
    ({"x_train": np.full((4, 8, 8), 2.0), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.zeros(2, int)}, "must be in [0, 1]"),
    ({"x_train": np.zeros((4, 8, 6)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 8, 6)),
      "y_test": np.zeros(2, int)}, "square"),
])
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message.replace("[", r"\[")):
        load_npz(path)


def test_image_folder(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    d = load_image_folder(tmp_path, image_size=16, val_fraction=0.25)
    assert d.num_classes == 2 and d.x_train.shape == (9, 3, 16, 16) and d.x_val.shape == (3, 3, 16, 16)
    assert d.x_test.shape == (4, 3, 16, 16) and list(d.y_test) == [0, 0, 1, 1]
    g = load_image_folder(tmp_path, grayscale=True)
    assert g.x_train.shape[1:] == (1, 20, 20)
    # without resizing, the stored pixels come back exactly
    first = np.asarray(image.open(tmp_path / "test" / "cat" / "0.png").convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal((load_image_folder(tmp_path).x_test[0] * 255).round().astype(np.uint8), first)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train/ and test/"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(str(tmp_path / "nothing.bin"))


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason=f"{FASHION_MNIST} not installed (apt-get install "
                                                        "dataset-fashion-mnist)")
def test_fashion_mnist() -> None:
    d = fashion_mnist()
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (50_000, 10_000, 10_000)
    assert d.x_train.shape[1:] == (1, 28, 28) and d.num_classes == 10
    assert set(np.unique(d.y_test)) == set(range(10))


def test_missing_fashion_mnist_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(root=tmp_path)
