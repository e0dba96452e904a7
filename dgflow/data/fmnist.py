"""Fashion-MNIST from the standard idx ``.gz`` files (Xiao, Rasul & Vollgraf 2017).

The four files are looked up in a directory, in this order:

1. the ``root`` argument;
2. the ``DGFLOW_FMNIST_DIR`` environment variable;
3. ``/usr/share/datasets/fashion-mnist`` (where ``apt-get install dataset-fashion-mnist``
   puts them on this project's machines).

Elsewhere, download the four files from https://github.com/zalandoresearch/fashion-mnist
(``data/fashion``) into a directory and point ``root`` or ``DGFLOW_FMNIST_DIR`` at it::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

Images come out as uint8 arrays (N, 28, 28); :func:`to_model_input` turns them into the
float tensors the image models of :mod:`dgflow.models.arch.dcgan` take: (N, 1, 32, 32) in
[-1, 1], the 28x28 image zero-padded (background -1) by 2 pixels on each side.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "DGFLOW_FMNIST_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 60000, "test": 10000}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
PAD = 2  # 28 + 2 * 2 = 32
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801


class FashionMNISTError(FileNotFoundError):
    """The Fashion-MNIST files are missing, truncated or not idx files."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The directory the files are read from (argument, then ``$DGFLOW_FMNIST_DIR``, then default)."""
    return Path(root if root is not None else os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _how_to_get(directory: Path) -> str:
    names = ", ".join(n for pair in FILES.values() for n in pair)
    return (f"Fashion-MNIST expects {names} in {directory}. Install them with "
            f"`apt-get install dataset-fashion-mnist` (files in {DEFAULT_DIR}) or download them from "
            f"https://github.com/zalandoresearch/fashion-mnist (data/fashion) and pass root=... "
            f"or set ${ENV_VAR}.")


def parse_idx(raw: bytes, magic: int, source: str) -> np.ndarray:
    """Decode one uncompressed idx buffer (images: magic 0x803, labels: 0x801) to uint8."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FashionMNISTError(f"{source}: truncated idx header ({len(raw)} bytes)")
    (got,) = struct.unpack(">I", raw[:4])
    if got != magic:
        raise FashionMNISTError(f"{source}: not an idx file of the expected kind "
                                f"(magic 0x{got:08x}, expected 0x{magic:08x})")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise FashionMNISTError(f"{source}: truncated or padded idx data: header says shape {shape} "
                                f"({expected} bytes) but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read(path: Path, magic: int, directory: Path) -> np.ndarray:
    if not path.is_file():
        raise FashionMNISTError(f"missing file {path.name} in {directory}. " + _how_to_get(directory))
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (EOFError, OSError, zlib.error) as e:
        raise FashionMNISTError(f"{path} is truncated or not gzip ({e}). " + _how_to_get(directory)) from e
    try:
        return parse_idx(raw, magic, str(path))
    except FashionMNISTError as e:
        raise FashionMNISTError(f"{e}. " + _how_to_get(directory)) from None


def load(split: str = "train", root: str | os.PathLike | None = None,
         check_size: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` (``"train"`` or ``"test"``).

    ``check_size`` requires the official sizes (60,000 / 10,000); turn it off for subsets.
    Raises :class:`FashionMNISTError` naming the directory and the expected file names when a
    file is missing, truncated or malformed.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    directory = data_dir(root)
    img_name, lab_name = FILES[split]
    images = _read(directory / img_name, _IDX_IMAGES, directory)
    labels = _read(directory / lab_name, _IDX_LABELS, directory)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise FashionMNISTError(f"{directory / img_name}: expected images of shape (N, 28, 28), "
                                f"got {images.shape}")
    if len(images) != len(labels):
        raise FashionMNISTError(f"{directory}: {img_name} has {len(images)} images but {lab_name} "
                                f"has {len(labels)} labels")
    if check_size and len(images) != SIZES[split]:
        raise FashionMNISTError(f"{directory / img_name}: expected {SIZES[split]} {split} images, got "
                                f"{len(images)} (pass check_size=False for a subset). " + _how_to_get(directory))
    return images, labels.astype(np.int64)


def to_model_input(images: np.ndarray | torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28 + 2 pad, 28 + 2 pad) in [-1, 1], padded with -1."""
    x = torch.tensor(np.asarray(images), dtype=torch.float32)
    if x.dim() != 3:
        raise ValueError(f"images must have shape (N, H, W), got {tuple(x.shape)}")
    x = x.unsqueeze(1) / 127.5 - 1.0
    return torch.nn.functional.pad(x, (pad,) * 4, value=-1.0) if pad else x


def load_tensor(split: str = "train", root: str | os.PathLike | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`load` then :func:`to_model_input`: images (N, 1, 32, 32) in [-1, 1], labels (N,)."""
    images, labels = load(split, root)
    return to_model_input(images), torch.from_numpy(labels)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array (N, 28, 28) or (N,) as a gzipped idx file (for tests and subsets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x08 << 8) | array.ndim
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())
