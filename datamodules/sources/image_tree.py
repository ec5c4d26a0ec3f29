"""An image-folder tree as shard-writer input: ``SRC/<split>/<class>/<image>`` (torchvision's ImageFolder
layout), with ImageNet's flat ``val/`` folder handled by datamodules/sources/imagenet.py."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from PIL import Image

from datamodules.shards.format import IMAGE_SUFFIXES, SPLIT_NAMES, ShardError
from datamodules.shards.writer import Item, write_dataset
from datamodules.sources.imagenet import flat_val_items, readable_class_names


def check_image(data: bytes, verify: bool) -> None:
    """``verify``: decode the whole image. Otherwise parse the header and check that a JPEG is complete."""
    with Image.open(io.BytesIO(data)) as im:
        if verify:
            im.load()  # full decode: truncated or garbled files raise here
        elif im.format == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise OSError("JPEG is truncated: no end-of-image marker (--verify decodes every image instead)")


def encode_image_file(path: str, verify: bool = False) -> tuple[str, bytes]:
    """Read an image file unchanged; raise if it is not a complete image."""
    ext = IMAGE_SUFFIXES[Path(path).suffix.lower()]
    data = Path(path).read_bytes()
    check_image(data, verify)
    return ext, data


def sample_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)  # no dots: webdataset and DALI split keys at the first dot


def images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def scan_image_tree(src: str | os.PathLike) -> tuple[list[str], dict[str, list[Item]], dict[str, list[str]]]:
    """``SRC/<split>/<class>/<image>`` (or ImageNet's flat val/) -> class names (sorted, from train), items
    per split, and per split the images left out because their class is not in train/."""
    src = Path(src)
    if not src.is_dir():
        raise ShardError(f"source folder '{src}' does not exist")
    splits = [s for s in SPLIT_NAMES if (src / s).is_dir()]
    if "train" not in splits:
        raise ShardError(
            f"'{src}' has no train/ folder; expected SRC/train/<class>/*.jpg and optionally SRC/val|test/<class>/*.jpg"
        )
    classes = sorted(d.name for d in (src / "train").iterdir() if d.is_dir())
    if not classes:
        raise ShardError(f"'{src / 'train'}' has no class folders")
    index = {name: i for i, name in enumerate(classes)}
    items: dict[str, list[Item]] = {}
    excluded: dict[str, list[str]] = {}
    for split in splits:
        class_dirs = sorted(d for d in (src / split).iterdir() if d.is_dir())
        if split != "train" and not class_dirs and images_in(src / split):
            items[split], excluded[split] = flat_val_items(src / split, images_in(src / split), index, sample_key)
            continue
        found = []
        for class_dir in class_dirs:
            if class_dir.name not in index:
                raise ShardError(
                    f"class folder '{class_dir}' is not among the train classes; every split must use the train "
                    "class names"
                )
            for f in images_in(class_dir):
                found.append(Item(sample_key(f"{class_dir.name}_{f.stem}"), index[class_dir.name], str(f), str(f)))
        items[split] = found
    return classes, items, excluded


def shard_image_tree(src, out, **kwargs) -> dict:
    classes, items, excluded = scan_image_tree(src)
    return write_dataset(
        out,
        classes,
        items,
        encode_image_file,
        source=str(Path(src).resolve()),
        excluded=excluded,
        readable_names=readable_class_names(classes),
        **kwargs,
    )
