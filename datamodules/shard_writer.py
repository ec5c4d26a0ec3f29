"""Write WebDataset tar shards (plus classes.json and manifest.json) from labelled images.

Layout written under OUT:
  {split}-000000.tar ...   samples: {"__key__", "jpg"|"png", "cls"}  (cls = class index as text)
  classes.json             {"0": "name", ...}
  manifest.json            per split: samples, per-class counts, shards with their counts,
                           and every source image skipped as corrupt (with the reason)
manifest.json is written last, atomically: its presence means the shards are complete.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from launch.config import atomic_write_text

MANIFEST = "manifest.json"
CLASSES = "classes.json"
FORMAT = "classreg-shards/1"
IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp", ".bmp": "bmp"}
SPLIT_NAMES = ("train", "val", "test")


class ShardError(RuntimeError):
    pass


@dataclass(frozen=True)
class Item:
    """One sample to write: ``payload`` is handed to the encoder in a worker process."""

    key: str
    label: int
    payload: object
    source: str  # shown in errors and in the manifest's skipped list


def _check_image(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # full decode: truncated or garbled files raise here


def encode_image_file(path: str) -> tuple[str, bytes]:
    """Read an image file unchanged; raise if it does not decode completely."""
    ext = IMAGE_SUFFIXES[Path(path).suffix.lower()]
    data = Path(path).read_bytes()
    _check_image(data)
    return ext, data


def encode_png_array(array) -> tuple[str, bytes]:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "png", buf.getvalue()


def _encode_worker(args):
    encode, item = args
    try:
        ext, data = encode(item.payload)
        return item, ext, data, None
    except Exception as e:  # reported per file in the manifest; never written to a shard
        return item, None, None, f"{type(e).__name__}: {e}"


def scan_image_tree(src: str | os.PathLike) -> tuple[list[str], dict[str, list[Item]]]:
    """``SRC/<split>/<class>/<image>`` -> class names (sorted, from train) and items per split."""
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
    for split in splits:
        found = []
        for class_dir in sorted(d for d in (src / split).iterdir() if d.is_dir()):
            if class_dir.name not in index:
                raise ShardError(
                    f"class folder '{class_dir}' is not among the train classes; every split must use the train class names"
                )
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    key = re.sub(r"[^A-Za-z0-9_-]", "_", f"{class_dir.name}_{f.stem}")
                    found.append(Item(key, index[class_dir.name], str(f), str(f)))
        items[split] = found
    return classes, items


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def write_split(
    out: Path,
    split: str,
    items: list[Item],
    num_classes: int,
    encode: Callable[[object], tuple[str, bytes]],
    shard_size: int,
    seed: int,
    workers: int,
) -> dict:
    """Shuffle deterministically, encode in ``workers`` processes, write shards in order."""
    order = list(items)
    random.Random(f"{seed}-{split}").shuffle(order)
    shards: list[dict] = []
    skipped: list[dict] = []
    per_class = [0] * num_classes

    pattern = str(out / f"{split}-%06d.tar")
    jobs = ((encode, item) for item in order)
    ctx = mp.get_context("spawn") if workers > 1 else None
    pool = ctx.Pool(workers) if ctx else None
    try:
        results: Iterable = pool.imap(_encode_worker, jobs, chunksize=32) if pool else map(_encode_worker, jobs)
        with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0) as sink:
            for item, ext, data, error in tqdm(results, total=len(order), desc=f"shard {split}", unit="img", mininterval=1 if sys.stderr.isatty() else 30):
                if error is not None:
                    skipped.append({"source": item.source, "error": error})
                    continue
                sink.write({"__key__": item.key, ext: data, "cls": str(item.label)})
                if not shards or shards[-1]["file"] != Path(sink.fname).name:
                    shards.append({"file": Path(sink.fname).name, "samples": 0, "per_class": [0] * num_classes})
                shards[-1]["samples"] += 1
                shards[-1]["per_class"][item.label] += 1
                per_class[item.label] += 1
    finally:
        if pool:
            pool.close()
            pool.join()
    if not shards:  # the writer opened a first, empty shard: drop it
        Path(pattern % 0).unlink(missing_ok=True)
    return {"samples": sum(per_class), "per_class": per_class, "shards": shards, "skipped": skipped}


def write_dataset(
    out: str | os.PathLike,
    classes: list[str],
    items_by_split: dict[str, list[Item]],
    encode: Callable[[object], tuple[str, bytes]],
    source: str,
    shard_size: int = 1000,
    seed: int = 0,
    workers: Optional[int] = None,
    overwrite: bool = False,
) -> dict:
    out = Path(out)
    if (out / MANIFEST).exists() and not overwrite:
        raise ShardError(f"'{out}' already holds finished shards ({MANIFEST} exists); pass --overwrite to rewrite them")
    if shard_size < 1:
        raise ShardError(f"--shard-size must be >= 1, got {shard_size}")
    workers = workers or default_workers()
    staging = out / ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = {"format": FORMAT, "source": source, "seed": seed, "shard_size": shard_size,
                "num_classes": len(classes), "splits": {}}
    for split, items in items_by_split.items():
        manifest["splits"][split] = write_split(staging, split, items, len(classes), encode, shard_size, seed, workers)
    for old in out.glob("*.tar"):
        old.unlink()
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()
    atomic_write_text(out / CLASSES, json.dumps({str(i): c for i, c in enumerate(classes)}, indent=1))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def shard_image_tree(src, out, **kwargs) -> dict:
    classes, items = scan_image_tree(src)
    return write_dataset(out, classes, items, encode_image_file, source=str(Path(src).resolve()), **kwargs)


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
