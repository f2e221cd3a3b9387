"""Image-classification data for the search: Fashion-MNIST (Debian's ``dataset-fashion-mnist``), ``.npz`` files and
image folders. Nothing is ever downloaded.

Every loader returns a :class:`Dataset`: float32 images ``[N, C, H, W]`` in [0, 1] and int64 labels, split into
train, validation (held out of the training images, for the search's fitness) and test. :func:`resize` brings images
to a network's input resolution (bilinear, the same function for training, calibration and the C test run).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.errors import MccError

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm")


class DataError(MccError):
    """A dataset that is missing or malformed."""


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test arrays: images float32 ``[N, C, H, W]`` in [0, 1], labels int64 in ``[0, classes)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def in_channels(self) -> int:
        """Image channels."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width after loading) of the stored images."""
        return int(self.x_train.shape[2])

    def subset(self, train: int | None = None, val: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train``/``val``/``test`` samples of each split (None: all of it)."""
        return Dataset(self.name, self.x_train[:train], self.y_train[:train], self.x_val[:val], self.y_val[:val],
                       self.x_test[:test], self.y_test[:test], self.num_classes)

    def summary(self) -> str:
        """One line: sizes of the splits and the image shape."""
        return (f"{self.name}: {len(self.x_train):,} train, {len(self.x_val):,} validation, {len(self.x_test):,} "
                f"test images of {self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes")


def load_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed): unsigned bytes with a big-endian shape header."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_split(kind: str, root: Path = FASHION_MNIST) -> tuple[np.ndarray, np.ndarray]:
    """One Fashion-MNIST split (``train`` or ``t10k``): images float32 [N, 1, 28, 28] in [0, 1], labels int64."""
    img, lab = root / f"{kind}-images-idx3-ubyte.gz", root / f"{kind}-labels-idx1-ubyte.gz"
    if not img.is_file() or not lab.is_file():
        raise DataError(f"Fashion-MNIST not found in {root}; install it with: apt-get install dataset-fashion-mnist")
    images = load_idx(img).astype(np.float32)[:, None] / 255.0
    return images, load_idx(lab).astype(np.int64)


def _split_val(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    if not 0 < val_fraction < 1:
        raise DataError(f"the validation fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * val_fraction))
    if n_val >= len(x):
        raise DataError(f"{len(x)} training images are too few to hold out a validation split")
    v, t = perm[:n_val], perm[n_val:]
    return x[t], y[t], x[v], y[v]


def fashion_mnist(val_fraction: float = 1 / 6, seed: int = 0, root: Path = FASHION_MNIST) -> Dataset:
    """Fashion-MNIST: the 60,000 training images split into train and validation (10,000 by default), and the
    10,000 test images."""
    x, y = load_fashion_split("train", root)
    xt, yt = load_fashion_split("t10k", root)
    x_tr, y_tr, x_va, y_va = _split_val(x, y, val_fraction, seed)
    return Dataset("fashion-mnist", x_tr, y_tr, x_va, y_va, xt, yt, 10)


def _as_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """Images as float32 NCHW in [0, 1] from [N, H, W], [N, H, W, C] (C <= 4) or [N, C, H, W]; uint8 is scaled."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] <= 4 < x.shape[1]:
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise DataError(f"{what}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W], got shape {x.shape}")
    if x.shape[2] != x.shape[3]:
        raise DataError(f"{what}: images must be square, got {x.shape[2]}x{x.shape[3]}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{what}: float images must be in [0, 1] (or pass uint8), got [{x.min():g}, {x.max():g}]")
    return x


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be {n} integers, got shape {y.shape} of {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0")
    return y.astype(np.int64)


def load_npz(path: Path, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (optionally ``x_val``, ``y_val``; else a
    ``val_fraction`` of the training images is held out). Images as in :func:`_as_nchw`."""
    if not path.is_file():
        raise DataError(f"no such dataset file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"cannot read {path}: {e}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (has: {', '.join(sorted(arrays))})")
    split = {}
    for s in ("train", "test", "val"):
        if f"x_{s}" in arrays:
            x = _as_nchw(arrays[f"x_{s}"], f"{path.name} x_{s}")
            if f"y_{s}" not in arrays:
                raise DataError(f"{path}: x_{s} without y_{s}")
            split[s] = (x, _labels(arrays[f"y_{s}"], len(x), f"{path.name} y_{s}"))
    if "val" not in split:
        x_tr, y_tr, x_va, y_va = _split_val(*split["train"], val_fraction, seed)
        split["train"], split["val"] = (x_tr, y_tr), (x_va, y_va)
    shapes = {v[0].shape[1:] for v in split.values()}
    if len(shapes) != 1:
        raise DataError(f"{path}: the splits have different image shapes {sorted(shapes)}")
    classes = int(max(int(v[1].max()) for v in split.values() if len(v[1]))) + 1
    return Dataset(path.stem, *split["train"], *split["val"], *split["test"], classes)


def _read_image(path: Path, size: int | None, mode: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image folders need Pillow, which is not installed (pip install pillow)") from None
    try:
        with Image.open(path) as f:
            im = f.convert(mode)
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _folder(root: Path, classes: list[str], size: int | None, mode: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for label, c in enumerate(classes):
        d = root / c
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else []
        for p in files:
            xs.append(_read_image(p, size, mode))
            ys.append(label)
    if not xs:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    if len({x.shape for x in xs}) != 1:
        raise DataError(f"{root}: images of different sizes; pass --image-size to resize them")
    return np.stack(xs).astype(np.float32) / 255.0, np.array(ys, dtype=np.int64)


def load_image_folder(root: Path, image_size: int | None = None, grayscale: bool = False,
                      val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Images in ``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` (optionally ``root/val/<class>``),
    one folder per class, classes in sorted order (taken from ``train``). Images are resized to ``image_size``
    (when given) and converted to grey (``grayscale``) or RGB."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataError(f"{root}: an image-folder dataset needs train/ and test/ subfolders with one folder per class")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root}/train has no class folders")
    mode = "L" if grayscale else "RGB"
    x_tr, y_tr = _folder(root / "train", classes, image_size, mode)
    x_te, y_te = _folder(root / "test", classes, image_size, mode)
    if (root / "val").is_dir():
        x_va, y_va = _folder(root / "val", classes, image_size, mode)
    else:
        x_tr, y_tr, x_va, y_va = _split_val(x_tr, y_tr, val_fraction, seed)
    if x_tr.shape[1:] != x_te.shape[1:] or x_tr.shape[2] != x_tr.shape[3]:
        raise DataError(f"{root}: train and test images must be square and of one size; pass --image-size")
    return Dataset(root.name, x_tr, y_tr, x_va, y_va, x_te, y_te, len(classes))


def load_dataset(spec: str, *, image_size: int | None = None, grayscale: bool = False, seed: int = 0) -> Dataset:
    """``fashion-mnist`` (default), a ``.npz`` file or an image-folder directory."""
    if spec == "fashion-mnist":
        return fashion_mnist(seed=seed)
    path = Path(spec)
    if path.suffix == ".npz":
        return load_npz(path, seed=seed)
    if path.is_dir():
        return load_image_folder(path, image_size, grayscale, seed=seed)
    raise DataError(f"unknown dataset {spec!r}: use fashion-mnist, a .npz file or an image-folder directory")


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Images ``[N, C, H, W]`` resized to ``size`` x ``size`` (bilinear, half-pixel centres; unchanged when equal).
    The same function prepares training, calibration and test images, so the C sees what the network learned."""
    if x.shape[2] == size:
        return x
    from nas.torch_model import require_torch

    torch = require_torch()
    out = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=(size, size),
                                          mode="bilinear", align_corners=False)
    return np.ascontiguousarray(out.numpy().clip(0.0, 1.0))
