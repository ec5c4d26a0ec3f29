"""The shard folder format that `classreg shard` writes and every loader reads.

Layout of a shard folder OUT:
  {split}-000000.tar ...   WebDataset samples: {key}.jpg|png (the source bytes), {key}.cls (class index as
                           text, for webdataset) and {key}.lbl (the same index as a little-endian int32, for DALI)
  {split}-000000.idx ...   DALI index of each shard (the format of DALI's `wds2idx` tool)
  classes.json             {"0": "name", ...}
  manifest.json            per split: samples, per-class counts, shards with their counts, bytes and sha256, and
                           every source image skipped as corrupt (with the reason)
manifest.json is written last, atomically: its presence means the shards are complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datamodules.configkit import ClassregError

MANIFEST = "manifest.json"
CLASSES = "classes.json"
FORMAT = "classreg-shards/2"
IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp", ".bmp": "bmp"}
IMAGE_KEYS = tuple(sorted(set(IMAGE_SUFFIXES.values())))  # the image component of a sample, by extension
SPLIT_NAMES = ("train", "val", "test")
LABEL_EXT = "lbl"  # int32 little-endian class index (DALI reads it with dtypes=INT32)
INDEX_VERSION = "v1.2"  # DALI's wds2idx index format


class ShardError(ClassregError):
    """A shard folder is missing, incomplete or inconsistent; the message names the file and the fix."""


def read_manifest(root: str | os.PathLike) -> tuple[dict, list[str]]:
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise ShardError(
            f"no {MANIFEST} in '{root}': it is not a finished shard folder. Create one with `classreg shard SRC {root}`"
        )
    manifest = json.loads((root / MANIFEST).read_text())
    classes_map = json.loads((root / CLASSES).read_text())
    classes = [classes_map[str(i)] for i in range(len(classes_map))]
    return manifest, classes


def resolve_val_split(requested: str, splits) -> str:
    """``auto``: ``val`` if the shards have it, else ``test``."""
    return requested if requested != "auto" else ("val" if "val" in splits else "test")


def open_shards(cfg) -> tuple[dict, list[str], str]:
    """Manifest, class names and the validation split for a ``DataConfig``; ShardError names a missing split."""
    manifest, classes = read_manifest(cfg.root)
    splits = manifest["splits"]
    val_split = resolve_val_split(cfg.val_split, splits)
    for name, split in (("data.train_split", cfg.train_split), ("data.val_split", val_split)):
        if split not in splits:
            raise ShardError(f"{name}={split!r}: the shards in '{cfg.root}' have splits {sorted(splits)}")
    return manifest, classes, val_split
