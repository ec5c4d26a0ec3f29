"""Input-pipeline throughput: the torchvision and DALI backends on the same shards, on 1 and 2 cores.

    PYTHONPATH=. .venv/bin/python bench/input_pipeline.py [--images 3000] [--repeats 5] [--cores 1,2] [--smoke]
        [--datasets cifar10,imagenet-like] [--rows ROW,...] [--dali-variant 'name:key=value,...' ...]

Datasets: CIFAR-10 JPEGs (32x32, from ../shared/data/cifar10-jpeg.tar.gz) and synthesised ImageNet-sized
JPEGs (500x375, about 110 KB, quality 90), each written with `classreg shard`. For each core count the
process (and its DataLoader workers and DALI threads) is pinned to that many CPUs with sched_setaffinity;
torchvision uses that many DataLoader workers, DALI that many threads. Rows:

  decode only      PIL full decode of the shard's JPEG bytes (in memory), one process per core
  decode + crop    TorchCodec decode_jpeg + RandomResizedCrop + flip on uint8 tensors, one process per core
                   (the bytes inherited through fork, not sent): the ceiling of a pipeline that decodes whole
                   images
  torchvision      the `data.backend=torchvision` training / evaluation loaders
  dali             the `data.backend=dali` training / evaluation loaders (DALI CPU pipelines)

Both loaders yield uint8 batches; their normalization to float runs after the transfer to the training device
(datamodules/base.py), outside these timings, as it runs on the GPU in a GPU run.

``--dali-variant 'name:key=value,...'`` adds a row ``dali train name`` whose pipeline has those settings changed
(keys of datamodules/dali_backend/pipeline.py TUNING, e.g. ``prefetch_queue_depth=3``, ``read_ahead=true``,
``threads=3`` for DALI threads per core count), to measure one setting against the defaults.

Every configuration runs once per repeat, in a fresh process, in an interleaved order, and is timed on two
clocks: wall time, and CPU time (user + system of the process, its threads and its live workers). The machine's
speed drifts and other processes on it add noise, so each ratio to the decode + crop ceiling is taken within
one repeat (the two measured minutes apart at most) and the median and range of those paired ratios are
printed next to the median images/s.
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

from cpu_clock import clocks  # noqa: E402
from synthetic_images import synthetic_tree  # noqa: E402

from datamodules.shards.format import read_manifest  # noqa: E402
from datamodules.sources.image_tree import shard_image_tree  # noqa: E402
from launch.config import load_config  # noqa: E402
from lightning_modules.augment import ImageTransforms  # noqa: E402

ROWS = ["decode only", "decode + crop", "torchvision train", "dali train", "torchvision eval", "dali eval"]
CEILING = "decode + crop"


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


_DATA: list[bytes] = []  # the JPEGs, set before the pool forks: its processes inherit them instead of receiving copies
_CROP = None


def _decode_only(part: range) -> tuple[int, float]:
    start = time.process_time()
    for i in part:
        with Image.open(io.BytesIO(_DATA[i])) as im:
            im.convert("RGB")
    return len(part), time.process_time() - start


def _decode_crop(part: range) -> tuple[int, float]:
    import torch
    from torchcodec.decoders import decode_jpeg

    torch.set_num_threads(1)
    start = time.process_time()
    for i in part:
        _CROP(decode_jpeg(_DATA[i], mode="RGB"))
    return len(part), time.process_time() - start


def _init_crop(size: int):
    global _CROP
    from torchvision.transforms import v2

    _CROP = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def time_pool(fn, data: list[bytes], cores: int, size: int) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds) of ``fn`` over ``data`` split over ``cores`` processes."""
    global _DATA
    _DATA = data
    parts = [range(i, len(data), cores) for i in range(cores)]
    with mp.get_context("fork").Pool(cores, initializer=_init_crop, initargs=(size,)) as pool:
        pool.map(fn, [p[:8] for p in parts], chunksize=1)  # warm-up
        start = time.perf_counter()
        done = pool.map(fn, parts, chunksize=1)
        return sum(n for n, _ in done), time.perf_counter() - start, sum(cpu for _, cpu in done)


def time_loader(loader, edge_batches: int) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds) of one epoch of ``loader`` in its steady state: from its
    ``edge_batches``-th batch to its ``edge_batches``-th last.

    A loader's first batches come out of its start (workers starting, the shuffle buffer filling) and are then
    followed by batches its workers prefetched meanwhile, which arrive at once; the last ones were prefetched too.
    Either end would misstate the rate. The clocks are read after each batch, while the workers still run."""
    it, steps = iter(loader), len(loader)
    if steps < 3 * edge_batches:
        raise SystemExit(f"{steps} batches per epoch are too few to time; raise --images / --cifar-images")
    for _ in range(edge_batches):
        next(it)
    count, (wall0, cpu0) = 0, clocks()
    for _ in range(steps - 2 * edge_batches):
        count += len(next(it)[1])
    wall, cpu = clocks()
    for _ in it:
        pass
    return count, wall - wall0, cpu - cpu0


def make_loader(backend: str, root: Path, train: bool, cores: int, size: int, batch: int, tuning=None):
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

        dali = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data), tuning=tuning)
        dali.setup()
        return dali.loader("train", train=train)
    from datamodules.torchvision_backend.datamodule import ShardDataModule

    dm = ShardDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))
    dm.setup()
    return dm.train_dataloader() if train else dm.val_dataloader()


def measure(name: str, root: Path, size: int, cores: int, batch: int, tuning=None) -> tuple[int, float, float]:
    """One timing, in a fresh process (forking DataLoader workers after DALI started threads is unsafe)."""
    from concurrent.futures import ProcessPoolExecutor  # its workers may start DataLoader workers

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measure, name, root, size, cores, batch, tuning).result()


def _measure(name: str, root: Path, size: int, cores: int, batch: int, tuning) -> tuple[int, float, float]:
    import torch

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:cores] if cores <= len(cpus) else cpus)
    torch.set_num_threads(1)
    if name == "decode only":
        return time_pool(_decode_only, jpeg_bytes(root), cores, size)
    if name == CEILING:
        return time_pool(_decode_crop, jpeg_bytes(root), cores, size)
    backend, mode = name.split(" ")[:2]
    loader = make_loader(backend, root, mode == "train", cores, size, batch, tuning)
    # the batches each DataLoader worker (torchvision) or the DALI queue holds ahead, plus its first
    return time_loader(loader, edge_batches=2 * cores + 2)


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,...' -> ('dali train name', {key: value}); values are Python literals or words."""
    import ast

    label, _, settings = text.partition(":")
    tuning = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        try:
            tuning[key.strip()] = ast.literal_eval(value.strip().capitalize() if value in ("true", "false") else value)
        except (ValueError, SyntaxError):
            tuning[key.strip()] = value.strip()
    return f"dali train {label}", tuning


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def report(name: str, rows: list[str], cores_list: list[int], results: dict, repeats: int) -> None:
    """Images/s, and the ratios to the ceiling (wall and CPU time), paired within each repeat."""
    print(f"\n{name}: images/s, median [range] of {repeats} repeats")
    head = " | ".join(f"{c} core{'s' if c > 1 else ''}" for c in cores_list)
    print(f"| path | {head} | images per CPU-second, {cores_list[-1]} core{'s' if cores_list[-1] > 1 else ''} |")
    print("|---|" + "---|" * (len(cores_list) + 1))
    for row in rows:
        rates = [spread([n / w for n, w, _ in results[(name, c, row)]], ".0f") for c in cores_list]
        per_cpu = spread([n / cpu for n, _, cpu in results[(name, cores_list[-1], row)]], ".0f")
        print(f"| {row} | " + " | ".join(rates) + f" | {per_cpu} |")
    if CEILING not in rows:
        return
    print(f"\n{name}: ratio to '{CEILING}' (paired within each repeat), median [range]")
    print(f"| path | {head} | by CPU time, {cores_list[-1]} core{'s' if cores_list[-1] > 1 else ''} |")
    print("|---|" + "---|" * (len(cores_list) + 1))
    for row in rows:
        if row in (CEILING, "decode only"):
            continue
        cells = []
        for c in cores_list:
            pairs = zip(results[(name, c, row)], results[(name, c, CEILING)])
            cells.append(spread([(n / w) / (cn / cw) for (n, w, _), (cn, cw, _) in pairs], ".2f"))
        pairs = zip(results[(name, cores_list[-1], row)], results[(name, cores_list[-1], CEILING)])
        by_cpu = spread([(n / cpu) / (cn / ccpu) for (n, _, cpu), (cn, _, ccpu) in pairs], ".2f")
        print(f"| {row} | " + " | ".join(cells) + f" | {by_cpu} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="ImageNet-sized images (default 3000)")
    parser.add_argument("--cifar-images", type=int, default=5000, help="CIFAR-10 images (default 5000)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; medians are reported")
    parser.add_argument("--cores", default="1,2", help="core counts (default 1,2)")
    parser.add_argument("--datasets", default="cifar10,imagenet-like")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure (default: all of {ROWS})")
    parser.add_argument(
        "--dali-variant",
        action="append",
        default=[],
        help="'name:key=value,...': an extra 'dali train name' row with those pipeline settings (repeatable)",
    )
    parser.add_argument("--cifar-tgz", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument(
        "--work-dir", "--workdir", dest="workdir", default=None, help="where the shards go (default: a temporary dir)"
    )
    parser.add_argument("--smoke", action="store_true", help="every row once on tiny sizes (its test in make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.datasets, args.cores, args.repeats = 120, "imagenet-like", "1", 1
    cores_list = [int(c) for c in args.cores.split(",")]
    all_cpus = sorted(os.sched_getaffinity(0))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="classreg-bench-"))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {ROWS}")
    variants = dict(parse_variant(v) for v in args.dali_variant)
    rows += list(variants)

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
        size, batch = (32, 128) if name == "cifar10" else (64, 8) if args.smoke else (224, 64)
        data = jpeg_bytes(shards)
        print(
            f"{name}: {len(data)} JPEGs, {np.mean([len(d) for d in data]) / 1000:.1f} KB average, "
            f"{size} px output, batch {batch}",
            flush=True,
        )
        datasets[name] = (shards, size, batch)

    results: dict[tuple, list[tuple[int, float, float]]] = {}
    for repeat in range(args.repeats):
        order = rows if repeat % 2 == 0 else rows[::-1]  # alternate, so that no row always follows another
        for name, (shards, size, batch) in datasets.items():
            for cores in cores_list:
                for row in order:
                    value = measure(row, shards, size, cores, batch, variants.get(row))
                    results.setdefault((name, cores, row), []).append(value)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    for name in datasets:
        report(name, rows, cores_list, results, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
