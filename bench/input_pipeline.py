"""Input-pipeline throughput: the torchvision and DALI backends on the same shards, on 1 and 2 cores.

    PYTHONPATH=. .venv/bin/python bench/input_pipeline.py [--images 1000] [--repeats 3] [--cores 1,2]

Datasets: CIFAR-10 JPEGs (32x32, from ../shared/data/cifar10-jpeg.tar.gz) and synthesised ImageNet-sized
JPEGs (500x375, about 110 KB, quality 90), each written with `classreg shard`. For each core count the
process (and its DataLoader workers and DALI threads) is pinned to that many CPUs with sched_setaffinity;
torchvision uses that many DataLoader workers, DALI that many threads. Rows:

  decode only      PIL full decode of the shard's JPEG bytes (in memory), one process per core
  decode + crop    torchvision.io.decode_jpeg + RandomResizedCrop + flip on uint8 tensors, one process per core:
                   the ceiling of a training pipeline that decodes whole images
  torchvision      the `data.backend=torchvision` training / evaluation loaders (webdataset + PIL + v2)
  dali             the `data.backend=dali` training / evaluation loaders (DALI CPU pipelines)

Timings are interleaved (every configuration once per repeat) and the median images/s is reported; the
machine's speed drifts, and other processes on it add noise.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthetic_images import synthetic_tree  # noqa: E402

from datamodules.shards.format import read_manifest  # noqa: E402
from datamodules.sources.image_tree import shard_image_tree  # noqa: E402
from launch.config import load_config  # noqa: E402
from lightning_modules.augment import ImageTransforms  # noqa: E402


def cifar_tree(tgz: Path, dest: Path, count: int) -> Path:
    """The first ``count`` training JPEGs of CIFAR-10 (spread over the classes), as SRC/train/<class>/."""
    per_class, taken = max(1, count // 10), {}
    with tarfile.open(tgz) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == "train" and taken.get(parts[1], 0) < per_class:
                taken[parts[1]] = taken.get(parts[1], 0) + 1
                (dest / "train" / parts[1]).mkdir(parents=True, exist_ok=True)
                (dest / member.name).write_bytes(tar.extractfile(member).read())
    return dest


def jpeg_bytes(root: Path) -> list[bytes]:
    manifest, _ = read_manifest(root)
    data = []
    for shard in manifest["splits"]["train"]["shards"]:
        with tarfile.open(root / shard["file"]) as tar:
            data += [tar.extractfile(m).read() for m in tar if m.name.endswith(".jpg")]
    return data


def _decode_only(chunk: list[bytes]) -> int:
    for data in chunk:
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB")
    return len(chunk)


_CROP = None


def _decode_crop(chunk: list[bytes]) -> int:
    import torch
    from torchvision.io import decode_jpeg

    torch.set_num_threads(1)
    for data in chunk:
        _CROP(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)))
    return len(chunk)


def _init_crop(size: int):
    global _CROP
    from torchvision.transforms import v2

    _CROP = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def time_pool(fn, data: list[bytes], cores: int, size: int) -> float:
    chunks = [data[i::cores] for i in range(cores)]
    with mp.get_context("fork").Pool(cores, initializer=_init_crop, initargs=(size,)) as pool:
        pool.map(fn, [c[:8] for c in chunks])  # warm-up
        start = time.perf_counter()
        done = sum(pool.map(fn, chunks))
        return done / (time.perf_counter() - start)


def time_loader(loader, warmup_batches: int = 2) -> float:
    """Images/s over one epoch of ``loader`` (after a warm-up of its first batches, not counted)."""
    it = iter(loader)
    for _ in range(warmup_batches):
        next(it)
    count, start = 0, time.perf_counter()
    for batch in it:
        count += len(batch[1])
    return count / (time.perf_counter() - start)


def make_loader(backend: str, root: Path, train: bool, cores: int, size: int, batch: int):
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            f"data.backend={backend}",
            f"data.image_size={size}",
            f"data.batch_size={batch}",
            f"data.num_workers={cores}",
            "data.shuffle_buffer=256",
            "data.val_split=train",
        ],
    )
    if backend == "dali":
        from datamodules.dali_backend.datamodule import DaliDataModule

        dali = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))
        dali.setup()
        return dali.loader("train", train=train)
    from datamodules.torchvision_backend.datamodule import ShardDataModule

    dm = ShardDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))
    dm.setup()
    return dm.train_dataloader() if train else dm.val_dataloader()


def measure(name: str, root: Path, size: int, cores: int, batch: int) -> float:
    """One timing, in a fresh process (forking DataLoader workers after DALI started threads is unsafe)."""
    from concurrent.futures import ProcessPoolExecutor  # its workers may start DataLoader workers

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measure, name, root, size, cores, batch).result()


def _measure(name: str, root: Path, size: int, cores: int, batch: int) -> float:
    import torch

    os.sched_setaffinity(
        0, sorted(os.sched_getaffinity(0))[:cores] if cores <= len(os.sched_getaffinity(0)) else os.sched_getaffinity(0)
    )
    torch.set_num_threads(1)
    if name == "decode only":
        return time_pool(_decode_only, jpeg_bytes(root), cores, size)
    if name == "decode + crop":
        return time_pool(_decode_crop, jpeg_bytes(root), cores, size)
    backend, mode = name.split(" ")
    return time_loader(make_loader(backend, root, mode == "train", cores, size, batch))


ROWS = ["decode only", "decode + crop", "torchvision train", "dali train", "torchvision eval", "dali eval"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="ImageNet-sized images (default 1000)")
    parser.add_argument("--cifar-images", type=int, default=5000, help="CIFAR-10 images (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--cores", default="1,2", help="core counts (default 1,2)")
    parser.add_argument("--datasets", default="cifar10,imagenet-like")
    parser.add_argument("--cifar-tgz", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--workdir", default=None, help="where the shards go (default: a temporary folder)")
    args = parser.parse_args(argv)
    cores_list = [int(c) for c in args.cores.split(",")]
    all_cpus = sorted(os.sched_getaffinity(0))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="classreg-bench-"))

    datasets = {}
    for name in args.datasets.split(","):
        shards = work / f"{name}-shards"
        if not (shards / "manifest.json").exists():
            tree = work / f"{name}-src"
            if name == "cifar10":
                cifar_tree(Path(args.cifar_tgz), tree, args.cifar_images)
            else:
                synthetic_tree(tree, args.images)
            count = args.cifar_images if name == "cifar10" else args.images
            shard_image_tree(tree, shards, shard_size=max(1, count // 8), workers=len(all_cpus))
        size, batch = (32, 128) if name == "cifar10" else (224, 64)
        data = jpeg_bytes(shards)
        print(
            f"{name}: {len(data)} JPEGs, {np.mean([len(d) for d in data]) / 1000:.1f} KB average, "
            f"{size} px output, batch {batch}",
            flush=True,
        )
        datasets[name] = (shards, size, batch, data)

    results: dict[tuple, list[float]] = {}
    for repeat in range(args.repeats):
        for name, (shards, size, batch, _) in datasets.items():
            for cores in cores_list:
                for row in ROWS:
                    value = measure(row, shards, size, cores, batch)
                    results.setdefault((name, cores, row), []).append(value)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    for name in datasets:
        print(f"\n{name}: images/s (median of {args.repeats})")
        print("| path | " + " | ".join(f"{c} core{'s' if c > 1 else ''}" for c in cores_list) + " |")
        print("|---|" + "---|" * len(cores_list))
        med = {k: statistics.median(v) for k, v in results.items()}
        for row in ROWS:
            print(f"| {row} | " + " | ".join(f"{med[(name, c, row)]:.0f}" for c in cores_list) + " |")
        for label, a, b in (
            ("dali / torchvision, train", "dali train", "torchvision train"),
            ("dali / torchvision, eval", "dali eval", "torchvision eval"),
            ("dali train / decode + crop", "dali train", "decode + crop"),
            ("dali train / decode only", "dali train", "decode only"),
        ):
            print(
                f"| {label} | " + " | ".join(f"{med[(name, c, a)] / med[(name, c, b)]:.2f}x" for c in cores_list) + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
