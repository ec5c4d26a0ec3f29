"""`classreg shard --check OUT`: verify every shard against its manifest, reading each once.

Per shard: it exists with the recorded size and sha256; its DALI index is the index of the tar; every sample
has an image, a text and an int32 label that agree and lie in ``0 .. num_classes - 1``; keys are unique; the
per-class counts are the manifest's; every image header parses, within ``max_pixels`` and the recorded largest
image. A folder that passes is one `classreg shard` wrote, unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import multiprocessing as mp
import struct
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from datamodules.shards.format import IMAGE_KEYS, LABEL_EXT, MANIFEST, MAX_IMAGE_PIXELS, ShardError, read_manifest
from datamodules.shards.images import open_image
from datamodules.shards.writer import default_workers, index_lines

MAX_LISTED = 3  # problems named per shard; the rest are counted


@dataclass(frozen=True)
class ShardCheck:
    split: str
    file: str
    bytes: int
    problems: tuple[str, ...]


class _Hashing(io.RawIOBase):
    """A read-only file that hashes every byte read through it."""

    def __init__(self, fh):
        self.fh, self.sha256, self.size = fh, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.fh.readinto(buffer)
        self.sha256.update(memoryview(buffer)[:n])
        self.size += n
        return n


def _samples(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes], tarfile.TarInfo]]:
    """(key, {component: bytes}, member) per member, in order, reading the tar as a stream."""
    for m in tar:
        if not m.isreg():
            yield "", {}, m
            continue
        base = m.name.rsplit("/", 1)[-1]
        key, ext = m.name[: m.name.rfind("/") + 1 + base.find(".")], base[base.find(".") + 1 :]
        yield key, {ext: tar.extractfile(m).read()}, m


def _label(components: dict[str, bytes]) -> int:
    text, binary = components.get("cls"), components.get(LABEL_EXT)
    if text is None or binary is None or len(binary) != 4:
        raise ValueError("has no cls or lbl label")
    label = int(text)
    if struct.unpack("<i", binary)[0] != label:
        raise ValueError(f"has cls {label} but lbl {struct.unpack('<i', binary)[0]}")
    return label


def _check_sample(key: str, components: dict[str, bytes], num_classes: int, max_pixels: int) -> tuple[int, int]:
    """(label, pixels) of one sample; ValueError (or an image error) naming what is wrong."""
    images = [c for c in IMAGE_KEYS if c in components]
    if len(images) != 1:
        raise ValueError(f"has {len(images)} image components")
    label = _label(components)
    if not 0 <= label < num_classes:
        raise ValueError(f"has label {label}, outside 0..{num_classes - 1}")
    with open_image(components[images[0]], max_pixels, "its image") as im:
        return label, im.size[0] * im.size[1]


def check_shard(root: Path, split: str, shard: dict, num_classes: int, max_pixels: int) -> ShardCheck:
    path = root / shard["file"]
    problems: list[str] = []

    def done() -> ShardCheck:
        shown = problems[:MAX_LISTED] + ([f"and {len(problems) - MAX_LISTED} more"] if problems[MAX_LISTED:] else [])
        return ShardCheck(split, shard["file"], shard["bytes"], tuple(shown))

    if not path.is_file():
        problems.append("missing")
        return done()
    per_class, keys, members, largest = [0] * num_classes, set(), [], 0
    with open(path, "rb") as raw:
        stream = _Hashing(raw)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                current, parts = None, {}
                for key, component, member in itertools.chain(_samples(tar), [("", {}, None)]):  # "" ends the last
                    if member is not None:
                        members.append(member)
                    if key == current:
                        parts.update(component)
                        continue
                    if current:
                        if current in keys:
                            problems.append(f"sample '{current}' appears twice")
                        keys.add(current)
                        try:
                            label, pixels = _check_sample(current, parts, num_classes, max_pixels)
                            per_class[label] += 1
                            largest = max(largest, pixels)
                        except Exception as e:
                            problems.append(f"sample '{current}' {e}")
                    current, parts = key, dict(component)
        except (tarfile.TarError, OSError, EOFError) as e:
            problems.append(f"is not a readable tar file ({e})")
        while stream.read(1 << 20):  # the end-of-archive blocks, for the hash
            pass
    basic = []  # named first
    if stream.size != shard["bytes"]:
        basic.append(f"is {stream.size} bytes but {MANIFEST} records {shard['bytes']}")
    if stream.sha256.hexdigest() != shard.get("sha256"):
        basic.append(f"its sha256 differs from the one {MANIFEST} records")
    problems[:0] = basic
    if per_class != shard["per_class"] and not problems:
        problems.append(f"its per-class counts differ from {MANIFEST}'s")
    recorded = (shard.get("max_image") or {}).get("pixels")
    if isinstance(recorded, int) and largest > recorded:
        problems.append(f"holds an image of {largest:,} pixels but {MANIFEST} records at most {recorded:,}")
    index = root / shard["index"] if "index" in shard else None
    if index is None or not index.is_file():
        problems.append("has no DALI index file")
    elif index.read_text(errors="replace").splitlines() != index_lines(members):
        problems.append(f"its index '{shard['index']}' does not match the tar")
    return done()


def check_folder(root: str | Path, workers: int | None = None, max_pixels: int | None = None) -> list[ShardCheck]:
    """Every shard of ``root``, checked (in ``workers`` processes), with a progress bar over bytes."""
    root = Path(root)
    manifest, classes = read_manifest(root)
    max_pixels = max_pixels or manifest.get("max_pixels") or MAX_IMAGE_PIXELS  # older shards record none
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ShardError(f"{root / MANIFEST} records max_pixels={max_pixels!r}, not a pixel count: pass --max-pixels")
    shards = [(split, shard) for split, info in manifest["splits"].items() for shard in info["shards"]]
    check = functools.partial(_check_one, root, len(classes), max_pixels)
    workers = min(workers or default_workers(), max(1, len(shards)))
    results = []
    progress = tqdm(
        total=sum(s["bytes"] for _, s in shards),
        desc="check",
        unit="B",
        unit_scale=True,
        mininterval=1 if sys.stderr.isatty() else 30,
    )
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for result in pool.imap(check, shards) if pool else map(check, shards):
            results.append(result)
            progress.update(result.bytes)
    finally:
        progress.close()
        if pool:
            pool.close()
            pool.join()
    return results


def _check_one(root: Path, num_classes: int, max_pixels: int, job: tuple[str, dict]) -> ShardCheck:
    split, shard = job
    return check_shard(root, split, shard, num_classes, max_pixels)
