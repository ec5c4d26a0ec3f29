"""Write a shard folder (datamodules/shards/format.py) from labelled images.

Samples are shuffled once (seeded), then cut into shards of ``shard_size`` planned inputs, so every shard is
an independent job: shards are written in parallel processes, each staged in OUT/.partial/, recorded in
OUT/.progress/ and moved into place with its index. A run that is interrupted continues where it stopped
(finished shards are not rewritten) and produces the same bytes as an uninterrupted one. ``train_per_class``
keeps a fixed, seeded subset of N training images per class (small-data experiments). The sources
(image trees, Fashion-MNIST) are in datamodules/sources/.

The writer deletes and replaces only files it recorded writing: shards and indexes listed in OUT's manifest or
progress records, under the names it gives shards; it refuses a folder that is neither empty nor a shard folder.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import struct
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from datamodules.configkit import atomic_write_text
from datamodules.shards.format import (
    CLASSES,
    FORMAT,
    INDEX_VERSION,
    LABEL_EXT,
    MANIFEST,
    MAX_IMAGE_PIXELS,
    SHARD_FILE,
    ShardError,
    printable,
)

STAGING, PROGRESS = ".partial", ".progress"
PLAN = "plan.json"
RECORD = re.compile(r"(?:train|val|test)-\d{6}\.json")
TEMPORARY = re.compile(r"\..+\.tmp\d+")  # left by atomic_write_text when killed mid-write
TRAIN_SPLIT = "train"  # the split that ``train_per_class`` subsamples; validation and test are kept whole


@dataclass(frozen=True)
class Item:
    """One sample to write: ``payload`` is handed to the encoder in a worker process."""

    key: str
    label: int
    payload: object
    source: str  # shown in errors and in the manifest's skipped list


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def index_lines(members) -> list[str]:
    """DALI's index of a WebDataset shard from its tar members: ``v1.2 N`` then per sample
    ``ext offset size name`` per component."""
    samples: list[list[str]] = []
    last = None
    for m in members:
        if not m.isreg():
            continue
        base = m.name.rsplit("/", 1)[-1]
        key, ext = m.name[: m.name.rfind("/") + 1 + base.find(".")], base[base.find(".") + 1 :]
        if key != last:
            samples.append([])
            last = key
        samples[-1].append(f"{ext} {m.offset_data} {m.size} {m.name}")
    return [f"{INDEX_VERSION} {len(samples)}", *(" ".join(s) for s in samples)]


def write_index(tar_path: Path, idx_path: Path) -> int:
    """Write the DALI index of a shard; returns the number of samples it indexes."""
    with tarfile.open(tar_path) as tar:
        lines = index_lines(tar)
    idx_path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0  # fixed metadata: identical bytes on every run
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class ShardJob:
    out: Path
    split: str
    number: int
    items: tuple[Item, ...]
    num_classes: int
    encode: Callable

    @property
    def name(self) -> str:
        return f"{self.split}-{self.number:06d}"


def _largest(sizes: list[dict]) -> dict:
    """Per image dimension the largest value, and the most pixels of one image."""
    return {k: max((s[k] for s in sizes), default=0) for k in ("width", "height", "pixels")}


def write_shard(job: ShardJob) -> dict:
    """Encode and write one shard (tar + idx) through the staging folder; return its manifest record.

    The record is saved before the files are moved into place, so a file named like a shard that no record lists
    was not written by classreg."""
    staging = job.out / STAGING
    tar_tmp, idx_tmp = staging / f"{job.name}.tar", staging / f"{job.name}.idx"
    record = {
        "file": f"{job.name}.tar",
        "index": f"{job.name}.idx",
        "samples": 0,
        "per_class": [0] * job.num_classes,
        "skipped": [],
    }
    sizes = []
    with tarfile.open(tar_tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for item in job.items:
            try:
                ext, data, (width, height) = job.encode(item.payload)
            except Exception as e:  # reported per file in the manifest; never written to a shard
                record["skipped"].append({"source": item.source, "error": f"{type(e).__name__}: {e}"})
                continue
            _add(tar, f"{item.key}.{ext}", data)
            _add(tar, f"{item.key}.cls", str(item.label).encode())
            _add(tar, f"{item.key}.{LABEL_EXT}", struct.pack("<i", item.label))
            record["samples"] += 1
            record["per_class"][item.label] += 1
            sizes.append({"width": width, "height": height, "pixels": width * height})
    if record["samples"]:
        indexed = write_index(tar_tmp, idx_tmp)
        if indexed != record["samples"]:  # two samples under one key: the scan must have made keys unique
            raise ShardError(f"shard {job.name}: {record['samples']} samples but {indexed} keys; please report this")
        with open(tar_tmp, "rb") as fh:
            record["sha256"] = hashlib.file_digest(fh, "sha256").hexdigest()
        record["bytes"] = tar_tmp.stat().st_size
        record["max_image"] = _largest(sizes)
    atomic_write_text(job.out / PROGRESS / f"{job.name}.json", json.dumps(record))
    if record["samples"]:
        os.replace(idx_tmp, job.out / record["index"])
        os.replace(tar_tmp, job.out / record["file"])
    else:
        tar_tmp.unlink()
    return record


def _read_json(path: Path) -> Optional[dict]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _finished(job: ShardJob) -> Optional[dict]:
    """The record of a shard an earlier run finished (its tar and index in place, the tar of the recorded size)."""
    record = _read_json(job.out / PROGRESS / f"{job.name}.json")
    if record is None or record.get("file") != f"{job.name}.tar":
        return None
    if record["samples"] and not (
        (job.out / record["file"]).is_file()
        and (job.out / record["index"]).is_file()
        and (job.out / record["file"]).stat().st_size == record["bytes"]
    ):
        return None
    return record


def plan_shards(
    out: Path, split: str, items: list[Item], num_classes: int, encode: Callable, shard_size: int, seed: int
) -> list[ShardJob]:
    order = list(items)
    random.Random(f"{seed}-{split}").shuffle(order)
    return [
        ShardJob(out, split, n, tuple(order[start : start + shard_size]), num_classes, encode)
        for n, start in enumerate(range(0, len(order), shard_size))
    ]


def keep_per_class(items: list[Item], classes: list[str], per_class: int, seed: int) -> list[Item]:
    """``per_class`` items of every class, drawn without replacement (seeded by ``seed`` and the class index),
    kept in their source order: the same sources and seed give the same subset on every machine."""
    if per_class < 1:
        raise ShardError(f"--train-per-class must be >= 1, got {per_class}")
    members: list[list[int]] = [[] for _ in classes]
    for i, item in enumerate(items):
        members[item.label].append(i)
    short = [f"'{classes[c]}' ({len(m)})" for c, m in enumerate(members) if len(m) < per_class]
    if short:
        raise ShardError(
            f"--train-per-class {per_class}: {len(short)} class(es) have fewer training images: "
            f"{', '.join(short[:5])}{' ...' if len(short) > 5 else ''}; "
            f"pass at most {min(len(m) for m in members)}"
        )
    keep: set[int] = set()
    for c, m in enumerate(members):
        keep.update(random.Random(f"{seed}-{TRAIN_SPLIT}-per-class-{c}").sample(m, per_class))
    return [item for i, item in enumerate(items) if i in keep]


def _plan_fingerprint(jobs_by_split: dict[str, list[ShardJob]], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for split, jobs in jobs_by_split.items():
        for job in jobs:
            h.update(f"{split}/{job.number}:".encode())
            for item in job.items:
                h.update(f"{item.key},{item.label},{item.source};".encode())
    return h.hexdigest()


def _run_jobs(jobs: list[ShardJob], workers: int) -> dict[str, dict]:
    """Write the shards not finished yet (in ``workers`` processes); return every shard's record by name."""
    records, todo = {}, []
    for job in jobs:
        record = _finished(job)
        if record is None:
            todo.append(job)
        else:
            records[job.name] = record
    if records:
        print(f"resuming: {len(records)} of {len(jobs)} shards already written", file=sys.stderr)
    progress = tqdm(
        total=sum(len(j.items) for j in todo),
        desc="shard",
        unit="img",
        mininterval=1 if sys.stderr.isatty() else 30,
        disable=not todo,
    )
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 and len(todo) > 1 else None
    try:
        results = pool.imap_unordered(write_shard, todo) if pool else map(write_shard, todo)
        for record in results:
            records[record["file"][: -len(".tar")]] = record
            progress.update(record["samples"] + len(record["skipped"]))
    finally:
        progress.close()
        if pool:
            pool.close()
            pool.join()
    return records


def _split_summary(jobs: list[ShardJob], records: dict[str, dict], num_classes: int, scan: dict) -> dict:
    shards, skipped, per_class = [], list(scan.get("skipped", [])), [0] * num_classes
    for job in jobs:
        record = records[job.name]
        skipped += record["skipped"]
        if record["samples"]:
            keys = ("file", "index", "samples", "per_class", "bytes", "sha256", "max_image")
            shards.append({k: record[k] for k in keys})
            per_class = [a + b for a, b in zip(per_class, record["per_class"])]
    summary = {
        "samples": sum(per_class),
        "per_class": per_class,
        "max_image": _largest([s["max_image"] for s in shards]),
        "shards": shards,
        "skipped": skipped,
    }
    for note in ("excluded_not_in_train_classes", "hidden_skipped", "keys_made_unique"):
        if scan.get(note):
            summary[note] = scan[note]
    return summary


# --- what OUT holds, and what classreg may delete there ------------------------------------------------------


def _listed_files(record) -> set[str]:
    """Shard and index names a manifest's shard entry or a progress record lists (only names classreg gives)."""
    names = {record.get("file"), record.get("index")} if isinstance(record, dict) else set()
    return {n for n in names if isinstance(n, str) and SHARD_FILE.fullmatch(n)}


def _manifest_files(out: Path) -> Optional[set[str]]:
    """The shard files a classreg manifest in OUT lists; None if OUT has no classreg manifest."""
    manifest = _read_json(out / MANIFEST)
    if manifest is None or not str(manifest.get("format", "")).startswith("classreg-shards/"):
        return None
    splits = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
    return {
        name
        for info in splits.values()
        if isinstance(info, dict) and isinstance(info.get("shards"), list)
        for shard in info["shards"]
        for name in _listed_files(shard)
    }


def _progress_files(out: Path) -> set[str]:
    folder = out / PROGRESS
    records = (p for p in folder.iterdir() if RECORD.fullmatch(p.name)) if folder.is_dir() else ()
    return {name for p in records for name in _listed_files(_read_json(p))}


def _remove_own(folder: Path, pattern: re.Pattern) -> None:
    """Delete the files in one of classreg's own folders that classreg names so, then the folder if empty."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and (pattern.fullmatch(p.name) or TEMPORARY.fullmatch(p.name)):
            p.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _check_out(out: Path, overwrite: bool) -> None:
    """OUT is new, empty, or a shard folder (finished: a classreg manifest; unfinished: .progress/)."""
    if out.exists() and not out.is_dir():
        raise ShardError(f"OUT '{out}' is a file, not a folder: give a new or empty folder for the shards")
    if not out.is_dir():
        return
    ours = _manifest_files(out) is not None or (out / PROGRESS).is_dir()
    if ours:
        if (out / MANIFEST).exists() and not overwrite:
            raise ShardError(
                f"'{out}' already holds finished shards ({MANIFEST} exists); pass --overwrite to rewrite them"
            )
        return
    found = sorted(p.name for p in out.iterdir())
    if found:
        shown = ", ".join(repr(printable(n)) for n in found[:5]) + (f" and {len(found) - 5} more" if found[5:] else "")
        raise ShardError(
            f"OUT '{out}' is not empty and holds no shards written by `classreg shard` ({shown}): give a new or "
            "empty folder (classreg never deletes or replaces files it did not write)"
        )


def _refuse_foreign(out: Path, jobs: list[ShardJob], own: set[str]) -> None:
    """The run would replace a file named like one of its shards that no record of classreg lists."""
    for job in jobs:
        for name in (f"{job.name}.tar", f"{job.name}.idx"):
            if (out / name).exists() and name not in own:
                raise ShardError(
                    f"'{out / name}' would be replaced by a new shard, but no {MANIFEST} or progress record of "
                    "`classreg shard` lists it: move it out of OUT, or give a new folder"
                )


def _start_over(out: Path) -> None:
    """--overwrite: delete the shards, indexes and records this folder's manifest and progress records list."""
    for name in (_manifest_files(out) or set()) | _progress_files(out):
        (out / name).unlink(missing_ok=True)
    for name in (MANIFEST, CLASSES):
        (out / name).unlink(missing_ok=True)
    _remove_own(out / PROGRESS, re.compile(f"{RECORD.pattern}|{re.escape(PLAN)}"))
    _remove_own(out / STAGING, SHARD_FILE)


def _unique_keys(split: str, items: list[Item]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if item.key in seen:
            raise ShardError(
                f"{split}: '{printable(seen[item.key])}' and '{printable(item.source)}' have the same sample key "
                f"'{item.key}'; rename one of them"
            )
        seen[item.key] = item.source


def write_dataset(
    out: str | os.PathLike,
    classes: list[str],
    items_by_split: dict[str, list[Item]],
    encode: Callable[..., tuple[str, bytes, tuple[int, int]]],
    source: str,
    shard_size: int = 1000,
    seed: int = 0,
    workers: Optional[int] = None,
    overwrite: bool = False,
    verify: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
    scan: Optional[dict[str, dict]] = None,
    readable_names: Optional[list[str]] = None,
    source_settings: Optional[dict] = None,
    val_fraction: float = 0.0,
    train_per_class: Optional[int] = None,
) -> dict:
    """``encode(payload, verify=, max_pixels=)`` -> (extension, bytes, (width, height)); raising skips the image.
    ``scan``: per split, what the source left out (``skipped`` entries, counts), copied into the manifest.
    ``source_settings``: more options of the source that a resumed run must share. ``train_per_class``: keep only
    that many training images of every class (a fixed, seeded subset, see ``keep_per_class``; drawn after
    ``val_fraction`` is carved), the other splits whole."""
    out = Path(out)
    if shard_size < 1:
        raise ShardError(f"--shard-size must be >= 1, got {shard_size}")
    if max_pixels < 1:
        raise ShardError(f"--max-pixels must be >= 1, got {max_pixels}")
    _check_out(out, overwrite)
    workers = workers or default_workers()
    val_from_train = None
    if val_fraction:
        from datamodules.shards.holdout import carve_validation

        items_by_split, val_from_train = carve_validation(items_by_split, val_fraction, seed, len(classes))
    drawn_from = None
    if train_per_class is not None:
        if TRAIN_SPLIT not in items_by_split:
            raise ShardError(
                f"--train-per-class needs a '{TRAIN_SPLIT}' split; the source has {sorted(items_by_split)}"
            )
        drawn_from = len(items_by_split[TRAIN_SPLIT])
        items_by_split = {
            **items_by_split,
            TRAIN_SPLIT: keep_per_class(items_by_split[TRAIN_SPLIT], classes, train_per_class, seed),
        }
    for split, items in items_by_split.items():
        _unique_keys(split, items)
    encode = functools.partial(encode, verify=verify, max_pixels=max_pixels)
    jobs = {
        split: plan_shards(out, split, items, len(classes), encode, shard_size, seed)
        for split, items in items_by_split.items()
    }
    settings = {
        "format": FORMAT,
        "source": source,
        "seed": seed,
        "shard_size": shard_size,
        "verify": verify,
        "max_pixels": max_pixels,
        "classes": classes,
        **(source_settings or {}),
        "val_fraction": val_fraction,
        "train_per_class": train_per_class,
    }
    fingerprint = _plan_fingerprint(jobs, settings)
    plan_file = out / PROGRESS / PLAN
    all_jobs = [j for split_jobs in jobs.values() for j in split_jobs]
    _refuse_foreign(out, all_jobs, _progress_files(out) | ((_manifest_files(out) or set()) if overwrite else set()))
    if overwrite:
        _start_over(out)
    elif plan_file.is_file():
        plan = _read_json(plan_file)
        if plan is None or plan.get("fingerprint") != fingerprint:
            raise ShardError(
                f"'{out}' holds an unfinished run with other sources or settings "
                f"({(plan or {}).get('settings', 'unreadable plan')}); "
                "resume it with the same SRC and options, or pass --overwrite to start over"
            )
    atomic_write_text(plan_file, json.dumps({"fingerprint": fingerprint, "settings": settings}))
    _remove_own(out / STAGING, SHARD_FILE)  # half-written shards of an interrupted run
    (out / STAGING).mkdir(exist_ok=True)

    records = _run_jobs(all_jobs, workers)
    manifest = {
        "format": FORMAT,
        "source": source,
        "seed": seed,
        "shard_size": shard_size,
        "verify": verify,
        "max_pixels": max_pixels,
        "label_component": f"{LABEL_EXT} (int32 little-endian); cls (text)",
        "num_classes": len(classes),
        "splits": {},
    }
    if readable_names:
        manifest["readable_names"] = readable_names
    if val_from_train:
        manifest["val_from_train"] = val_from_train
    for split, split_jobs in jobs.items():
        manifest["splits"][split] = _split_summary(split_jobs, records, len(classes), (scan or {}).get(split, {}))
    if train_per_class is not None:
        manifest["train_per_class"] = train_per_class
        manifest["splits"][TRAIN_SPLIT]["drawn_from"] = drawn_from  # source images before the per-class subset
    _remove_own(out / STAGING, SHARD_FILE)
    atomic_write_text(out / CLASSES, json.dumps({str(i): c for i, c in enumerate(classes)}, indent=1))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    _remove_own(out / PROGRESS, re.compile(f"{RECORD.pattern}|{re.escape(PLAN)}"))
    return manifest
