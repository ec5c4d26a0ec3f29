"""Write a shard folder (datamodules/shards/format.py) from labelled images.

Samples are shuffled once (seeded), then cut into shards of ``shard_size`` planned inputs, so every shard is
an independent job: shards are written in parallel processes, each staged in OUT/.partial/ and moved into
place with its index, then recorded in OUT/.progress/. A run that is interrupted continues where it stopped
(finished shards are not rewritten) and produces the same bytes as an uninterrupted one. ``train_per_class``
keeps a fixed, seeded subset of N training images per class (small-data experiments). The sources
(image trees, Fashion-MNIST) are in datamodules/sources/.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import struct
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from datamodules.configkit import atomic_write_text
from datamodules.shards.format import CLASSES, FORMAT, INDEX_VERSION, LABEL_EXT, MANIFEST, ShardError

STAGING, PROGRESS = ".partial", ".progress"
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


def write_index(tar_path: Path, idx_path: Path) -> None:
    """DALI's index of a WebDataset shard: ``v1.2 N`` then per sample ``ext offset size name`` per component."""
    samples: list[list[str]] = []
    last = None
    with tarfile.open(tar_path) as tar:
        for m in tar:
            if not m.isreg():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, ext = m.name[: m.name.rfind("/") + 1 + base.find(".")], base[base.find(".") + 1 :]
            if key != last:
                samples.append([])
                last = key
            samples[-1].append(f"{ext} {m.offset_data} {m.size} {m.name}")
    lines = [f"{INDEX_VERSION} {len(samples)}", *(" ".join(s) for s in samples)]
    idx_path.write_text("\n".join(lines) + "\n")


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


def write_shard(job: ShardJob) -> dict:
    """Encode and write one shard (tar + idx) through the staging folder; return its manifest record."""
    staging = job.out / STAGING
    tar_tmp, idx_tmp = staging / f"{job.name}.tar", staging / f"{job.name}.idx"
    record = {
        "file": f"{job.name}.tar",
        "index": f"{job.name}.idx",
        "samples": 0,
        "per_class": [0] * job.num_classes,
        "skipped": [],
    }
    with tarfile.open(tar_tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for item in job.items:
            try:
                ext, data = job.encode(item.payload)
            except Exception as e:  # reported per file in the manifest; never written to a shard
                record["skipped"].append({"source": item.source, "error": f"{type(e).__name__}: {e}"})
                continue
            _add(tar, f"{item.key}.{ext}", data)
            _add(tar, f"{item.key}.cls", str(item.label).encode())
            _add(tar, f"{item.key}.{LABEL_EXT}", struct.pack("<i", item.label))
            record["samples"] += 1
            record["per_class"][item.label] += 1
    if record["samples"]:
        write_index(tar_tmp, idx_tmp)
        with open(tar_tmp, "rb") as fh:
            record["sha256"] = hashlib.file_digest(fh, "sha256").hexdigest()
        record["bytes"] = tar_tmp.stat().st_size
        os.replace(idx_tmp, job.out / record["index"])
        os.replace(tar_tmp, job.out / record["file"])
    else:
        tar_tmp.unlink()
    atomic_write_text(job.out / PROGRESS / f"{job.name}.json", json.dumps(record))
    return record


def _finished(job: ShardJob) -> Optional[dict]:
    """The record of a shard an earlier run finished (its tar still has the recorded size), else None."""
    path = job.out / PROGRESS / f"{job.name}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
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


def _split_summary(jobs: list[ShardJob], records: dict[str, dict], num_classes: int, excluded: list[str]) -> dict:
    shards, skipped, per_class = [], [], [0] * num_classes
    for job in jobs:
        record = records[job.name]
        skipped += record["skipped"]
        if record["samples"]:
            shards.append({k: record[k] for k in ("file", "index", "samples", "per_class", "bytes", "sha256")})
            per_class = [a + b for a, b in zip(per_class, record["per_class"])]
    summary = {"samples": sum(per_class), "per_class": per_class, "shards": shards, "skipped": skipped}
    if excluded:
        summary["excluded_not_in_train_classes"] = len(excluded)
    return summary


def write_dataset(
    out: str | os.PathLike,
    classes: list[str],
    items_by_split: dict[str, list[Item]],
    encode: Callable[..., tuple[str, bytes]],
    source: str,
    shard_size: int = 1000,
    seed: int = 0,
    workers: Optional[int] = None,
    overwrite: bool = False,
    verify: bool = False,
    excluded: Optional[dict[str, list[str]]] = None,
    readable_names: Optional[list[str]] = None,
    train_per_class: Optional[int] = None,
) -> dict:
    """Shard ``items_by_split`` into ``out``; ``train_per_class``: keep only that many training images of every
    class (a fixed, seeded subset, see ``keep_per_class``), the other splits whole."""
    out = Path(out)
    if (out / MANIFEST).exists() and not overwrite:
        raise ShardError(f"'{out}' already holds finished shards ({MANIFEST} exists); pass --overwrite to rewrite them")
    if shard_size < 1:
        raise ShardError(f"--shard-size must be >= 1, got {shard_size}")
    workers = workers or default_workers()
    encode = functools.partial(encode, verify=verify)
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
        "classes": classes,
        "train_per_class": train_per_class,
    }
    fingerprint = _plan_fingerprint(jobs, settings)
    plan_file = out / PROGRESS / "plan.json"
    if overwrite:
        (out / MANIFEST).unlink(missing_ok=True)
        for old in [*out.glob("*.tar"), *out.glob("*.idx")]:
            old.unlink()
        shutil.rmtree(out / PROGRESS, ignore_errors=True)
    elif plan_file.is_file() and json.loads(plan_file.read_text())["fingerprint"] != fingerprint:
        raise ShardError(
            f"'{out}' holds an unfinished run with other sources or settings "
            f"({json.loads(plan_file.read_text())['settings']}); "
            "resume it with the same SRC and options, or pass --overwrite to start over"
        )
    shutil.rmtree(out / STAGING, ignore_errors=True)  # half-written shards of an interrupted run
    (out / STAGING).mkdir(parents=True)
    atomic_write_text(plan_file, json.dumps({"fingerprint": fingerprint, "settings": settings}))

    records = _run_jobs([j for split_jobs in jobs.values() for j in split_jobs], workers)
    manifest = {
        "format": FORMAT,
        "source": source,
        "seed": seed,
        "shard_size": shard_size,
        "verify": verify,
        "label_component": f"{LABEL_EXT} (int32 little-endian); cls (text)",
        "num_classes": len(classes),
        "splits": {},
    }
    if readable_names:
        manifest["readable_names"] = readable_names
    if train_per_class is not None:
        manifest["train_per_class"] = train_per_class
    for split, split_jobs in jobs.items():
        manifest["splits"][split] = _split_summary(split_jobs, records, len(classes), (excluded or {}).get(split, []))
    if drawn_from is not None:
        manifest["splits"][TRAIN_SPLIT]["drawn_from"] = drawn_from  # source images before the per-class subset
    (out / STAGING).rmdir()
    atomic_write_text(out / CLASSES, json.dumps({str(i): c for i, c in enumerate(classes)}, indent=1))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    shutil.rmtree(out / PROGRESS)
    return manifest
