"""The shard folder format that `classreg shard` writes and every loader reads.

Layout of a shard folder OUT:
  {split}-000000.tar ...   WebDataset samples: {key}.jpg|png (the source bytes), {key}.cls (class index as
                           text, for webdataset) and {key}.lbl (the same index as a little-endian int32, for DALI)
  {split}-000000.idx ...   DALI index of each shard (the format of DALI's `wds2idx` tool)
  classes.json             {"0": "name", ...}
  manifest.json            per split: samples, per-class counts, shards with their counts, bytes, sha256 and
                           largest image, and every source image skipped (with the reason)
manifest.json is written last, atomically: its presence means the shards are complete.

Nothing in a shard folder is trusted further than it is checked: ``read_manifest`` checks that the metadata
agree with each other and that every path stays inside the folder, ``open_shards`` that the shards of the splits
a run reads exist with their recorded sizes; the loaders check every label and image size they decode.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from datamodules.config import MAX_IMAGE_PIXELS  # noqa: F401  (the limit of the writer and of both loaders)
from datamodules.configkit import ClassregError

MANIFEST = "manifest.json"
CLASSES = "classes.json"
FORMAT = "classreg-shards/2"
IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp", ".bmp": "bmp"}
IMAGE_KEYS = tuple(sorted(set(IMAGE_SUFFIXES.values())))  # the image component of a sample, by extension
SPLIT_NAMES = ("train", "val", "test")
LABEL_EXT = "lbl"  # int32 little-endian class index (DALI reads it with dtypes=INT32)
INDEX_VERSION = "v1.2"  # DALI's wds2idx index format
SHARD_FILE = re.compile(r"(?:train|val|test)-\d{6}\.(?:tar|idx)")  # the only names `classreg shard` writes shards as


class ShardError(ClassregError):
    """A shard folder is missing, incomplete or inconsistent; the message names the file and the fix."""


class ImageTooLargeError(ShardError):
    """An image has more pixels than the limit."""


def printable(text: str | os.PathLike) -> str:
    """``text`` safe to print and to store as JSON: bytes that are not UTF-8 and control characters escaped."""
    raw = os.fsencode(text).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def check_image_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width} x {height} = {width * height:,} pixels, above the limit of {max_pixels:,}"
        )


def _redo(root: Path) -> str:
    return (
        f"the folder was changed or was not written by `classreg shard`. Re-create it: "
        f"`classreg shard SRC {root} --overwrite` (or into a new folder)"
    )


def shard_path(root: Path, name: object, where: str) -> Path:
    """``root / name`` for a file named in the manifest; ShardError unless it stays inside ``root``."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ShardError(
            f"{root / MANIFEST}: {where} is {name!r}, not a file name inside the shard folder: " + _redo(root)
        )
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise ShardError(
            f"{path} (named by {where} in {root / MANIFEST}) is a symbolic link to '{path.resolve()}', outside "
            f"the shard folder: classreg reads shards only from inside it. Copy the shard into '{root}'"
        )
    return path


def _load_json(path: Path, root: Path):
    if not path.is_file():
        raise ShardError(
            f"no {path.name} in '{root}': it is not a finished shard folder. "
            f"Create one with `classreg shard SRC {root}`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"cannot read '{path}': {e}; " + _redo(root)) from None


def _counts(value, length: int, where: str, root: Path) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        got = f"{len(value)} entries" if isinstance(value, list) else repr(value)[:40]
        raise ShardError(
            f"{root / MANIFEST}: {where} should be {length} counts, one per class of {CLASSES}, "
            f"but is {got}: " + _redo(root)
        )
    return value


def _number(record: dict, key: str, where: str, root: Path) -> int:
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ShardError(f"{root / MANIFEST}: {where}.{key} is {value!r}, not a count: " + _redo(root))
    return value


def check_manifest(root: Path, manifest, classes_map) -> list[str]:
    """The class names; ShardError where manifest.json and classes.json disagree with each other or themselves."""
    if not isinstance(classes_map, dict) or set(classes_map) != {str(i) for i in range(len(classes_map))}:
        raise ShardError(f"{root / CLASSES} should map '0', '1', ... to class names: " + _redo(root))
    classes = [classes_map[str(i)] for i in range(len(classes_map))]
    if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ShardError(f"{root / CLASSES}: class names must be distinct, non-empty strings: " + _redo(root))
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("classreg-shards/"):
        raise ShardError(f"{root / MANIFEST} is not the manifest of a `classreg shard` folder: " + _redo(root))
    if manifest.get("num_classes") != len(classes):
        raise ShardError(
            f"{root / MANIFEST} records num_classes={manifest.get('num_classes')!r} but {root / CLASSES} names "
            f"{len(classes)} classes: " + _redo(root)
        )
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise ShardError(f"{root / MANIFEST} lists no splits: " + _redo(root))
    n = len(classes)
    for split, info in splits.items():
        if not isinstance(info, dict) or not isinstance(info.get("shards"), list):
            raise ShardError(f"{root / MANIFEST}: splits.{split} lists no shards: " + _redo(root))
        total = [0] * n
        for i, shard in enumerate(info["shards"]):
            where = f"splits.{split}.shards[{i}]"
            if not isinstance(shard, dict):
                raise ShardError(f"{root / MANIFEST}: {where} is not a shard record: " + _redo(root))
            shard_path(root, shard.get("file"), f"{where}.file")
            if "index" in shard:
                shard_path(root, shard["index"], f"{where}.index")
            per_class = _counts(shard.get("per_class"), n, f"{where}.per_class", root)
            if sum(per_class) != _number(shard, "samples", where, root):
                raise ShardError(
                    f"{root / MANIFEST}: {where} records {shard['samples']} samples but its per-class counts "
                    f"sum to {sum(per_class)}: " + _redo(root)
                )
            _number(shard, "bytes", where, root)
            total = [a + b for a, b in zip(total, per_class)]
        if _counts(info.get("per_class"), n, f"splits.{split}.per_class", root) != total:
            raise ShardError(
                f"{root / MANIFEST}: splits.{split}.per_class differs from the sum over its shards: " + _redo(root)
            )
        if _number(info, "samples", f"splits.{split}", root) != sum(total):
            raise ShardError(
                f"{root / MANIFEST}: splits.{split}.samples is {info['samples']} but its shards hold "
                f"{sum(total)}: " + _redo(root)
            )
    return classes


def read_manifest(root: str | os.PathLike) -> tuple[dict, list[str]]:
    """The manifest and the class names of a finished shard folder, checked against each other."""
    root = Path(root)
    manifest = _load_json(root / MANIFEST, root)
    classes = check_manifest(root, manifest, _load_json(root / CLASSES, root))
    return manifest, classes


def resolve_val_split(requested: str, splits) -> str:
    """``auto``: ``val`` if the shards have it, else ``test``."""
    return requested if requested != "auto" else ("val" if "val" in splits else "test")


def check_shard_files(root: Path, split: str, info: dict) -> None:
    """Each shard of a split exists and has the size the manifest records (a stat per shard: cheap)."""
    for shard in info["shards"]:
        tar = root / shard["file"]
        if not tar.is_file():
            raise ShardError(f"shard '{tar}' listed in {root / MANIFEST} is missing; " + _redo(root))
        size = tar.stat().st_size
        if size != shard["bytes"]:
            raise ShardError(
                f"shard '{tar}' is {size} bytes but {MANIFEST} records {shard['bytes']}: it is truncated or was "
                f"changed. `classreg shard --check {root}` lists every bad shard; re-create them with `classreg shard`"
            )


def check_image_limit(root: Path, split: str, info: dict, max_pixels: int) -> None:
    """The largest image the manifest records for ``split`` is within ``data.max_pixels``."""
    largest = info.get("max_image") or {}
    pixels = largest.get("pixels") if isinstance(largest, dict) else None
    if isinstance(pixels, int) and pixels > max_pixels:
        raise ShardError(
            f"the {split} shards in '{root}' hold an image of {largest.get('width')} x {largest.get('height')} = "
            f"{pixels:,} pixels, above data.max_pixels={max_pixels:,}. Raise data.max_pixels if you trust them "
            "(each such image takes 3 bytes per pixel per loader worker when decoded)"
        )


def open_shards(cfg) -> tuple[dict, list[str], str]:
    """Manifest, class names and the validation split for a ``DataConfig``; ShardError names a missing split,
    a missing or truncated shard, or an image above ``cfg.max_pixels``."""
    manifest, classes = read_manifest(cfg.root)
    splits = manifest["splits"]
    val_split = resolve_val_split(cfg.val_split, splits)
    for name, split in (("data.train_split", cfg.train_split), ("data.val_split", val_split)):
        if split not in splits:
            raise ShardError(f"{name}={split!r}: the shards in '{cfg.root}' have splits {sorted(splits)}")
    for split in dict.fromkeys((cfg.train_split, val_split)):
        check_shard_files(Path(cfg.root), split, splits[split])
        check_image_limit(Path(cfg.root), split, splits[split], cfg.max_pixels)
    return manifest, classes, val_split
