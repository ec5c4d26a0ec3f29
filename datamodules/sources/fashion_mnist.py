"""Fashion-MNIST (the demo data) from its IDX files, turned into the same shards as ImageNet."""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from datamodules.shards.format import MAX_IMAGE_PIXELS, ShardError, check_image_size
from datamodules.shards.writer import Item, write_dataset

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = (
    "Fashion-MNIST was not found. Install it with `sudo apt-get install dataset-fashion-mnist` "
    f"(files go to {DEBIAN_DIR}), or put the four *-ubyte[.gz] IDX files in a folder and pass it "
    "with --fashion-mnist-dir."
)


def encode_png_array(array, verify: bool = False, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[str, bytes, tuple]:
    height, width = array.shape[:2]
    check_image_size(width, height, max_pixels, "the image")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "png", buf.getvalue(), (width, height)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ShardError(f"'{path}' is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ShardError(f"'{path}' is truncated: expected {int(np.prod(shape))} bytes of data, found {array.size}")
    return array.reshape(shape)


def locate(folder: Optional[str | os.PathLike] = None, download_root: Optional[str | os.PathLike] = None) -> Path:
    """Folder holding the IDX files: the one given, else Debian's, else torchvision's download."""
    candidates = [Path(folder)] if folder else [DEBIAN_DIR]
    for c in candidates:
        if all(_find(c, stem) for pair in FILES.values() for stem in pair):
            return c
    if folder:
        raise ShardError(f"'{folder}' does not hold the four Fashion-MNIST IDX files. " + HOW_TO_GET)
    if download_root:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(download_root), train=True, download=True)
            FashionMNIST(str(download_root), train=False, download=True)
            raw = Path(download_root) / "FashionMNIST" / "raw"
            if all(_find(raw, stem) for pair in FILES.values() for stem in pair):
                return raw
        except Exception as e:  # no network on most compute nodes
            raise ShardError(HOW_TO_GET + f" (torchvision's download failed too: {type(e).__name__}: {e})") from None
    raise ShardError(HOW_TO_GET)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find(folder, images_stem))
    labels = read_idx(_find(folder, labels_stem))
    if len(images) != len(labels):
        raise ShardError(f"{split}: {len(images)} images but {len(labels)} labels in '{folder}'")
    if len(labels) and labels.max() >= len(CLASSES):
        raise ShardError(
            f"'{_find(folder, labels_stem)}' holds the label {labels.max()}, but Fashion-MNIST has {len(CLASSES)} "
            "classes (0-9): it is not Fashion-MNIST's label file"
        )
    return images, labels


def shard_fashion_mnist(out, folder=None, download_root=None, **kwargs) -> dict:
    folder = locate(folder, download_root)
    items = {}
    for split in FILES:
        images, labels = load_split(folder, split)
        items[split] = [
            Item(f"{split}_{i:05d}", int(labels[i]), images[i], f"{folder}:{split}[{i}]") for i in range(len(images))
        ]
    return write_dataset(out, CLASSES, items, encode_png_array, source=f"fashion-mnist:{folder}", **kwargs)
