"""Where the DALI CPU training pipeline spends its time: CPU milliseconds per image on one thread.

    PYTHONPATH=. .venv/bin/python bench/dali_stages.py [--images 640] [--repeats 3] [--work-dir DIR] [--smoke]

On ImageNet-sized JPEGs (500x375, about 110 KB; the shards bench/input_pipeline.py writes, reused from
--work-dir), pinned to one CPU:

  whole pipeline       the `data.backend=dali` training pipeline (rrc + flip), reader to uint8 CHW batch
  decode windows       the same pipeline up to decoders.image_slice: each image's crop window, decoded alone
  dali resize          DALI's fn.resize, as the pipeline calls it, of those decoded windows (external source)
  torchvision resize   torchvision's antialiased bilinear resize of the same windows (uint8 CHW tensors), the
                       resize inside the decode + crop ceiling of bench/input_pipeline.py

Each stage runs once per repeat, interleaved; medians and ranges are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthetic_images import synthetic_tree  # noqa: E402

from datamodules.dali_backend.pipeline import build_pipeline, shard_files  # noqa: E402
from datamodules.shards.format import read_manifest  # noqa: E402
from datamodules.sources.image_tree import shard_image_tree  # noqa: E402
from lightning_modules.augment import ImageTransforms  # noqa: E402
from lightning_modules.augment.config import AugConfig  # noqa: E402
from lightning_modules.augment.dali import build_dali_policies  # noqa: E402


def shards(work: Path, images: int) -> Path:
    root = work / "imagenet-like-shards"
    if not (root / "manifest.json").exists():
        tree = synthetic_tree(work / "imagenet-like-src", images)
        shard_image_tree(tree, root, shard_size=max(1, images // 8), workers=len(os.sched_getaffinity(0)))
    return root


def pipeline(root: Path, graph, batch: int):
    manifest, _ = read_manifest(root)
    paths, index_paths = shard_files(root, manifest["splits"]["train"], "train")
    return build_pipeline(
        paths,
        index_paths,
        train=True,
        batch_size=batch,
        num_threads=1,
        device="cpu",
        device_id=None,
        shard_id=0,
        num_shards=1,
        seed=0,
        graph=graph,
        shuffle_buffer=256,
    )


def resize_pipeline(rrc, windows: list[list[np.ndarray]]):
    from nvidia.dali import fn, pipeline_def

    batches = iter(windows * 1000)

    @pipeline_def(batch_size=len(windows[0]), num_threads=1, device_id=None, prefetch_queue_depth=1)
    def resize():
        return rrc.resize(fn.external_source(source=lambda: next(batches), batch=True, layout="HWC"))

    pipe = resize()
    pipe.build()
    return pipe


def cpu_ms(step, images: int) -> float:
    start = time.process_time()
    step()
    return (time.process_time() - start) / images * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=640, help="ImageNet-sized images to shard (default 640)")
    parser.add_argument("--batches", type=int, default=8, help="batches of 64 timed per stage (default 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", "--workdir", dest="workdir", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the code paths only (make test)")
    args = parser.parse_args(argv)
    size, batch = (64, 8) if args.smoke else (224, 64)
    if args.smoke:
        args.images, args.batches, args.repeats = 64, 2, 1
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
    torch.set_num_threads(1)
    root = shards(Path(args.workdir or tempfile.mkdtemp(prefix="classreg-bench-")), args.images)
    aug, names = AugConfig(), [f"class{i}" for i in range(10)]
    rrc_of = {}

    def windows_graph(encoded, labels, device):
        rrc_of["rrc"] = build_dali_policies(aug, names, size, labels)[0]
        return rrc_of["rrc"].decode_window(encoded, device)

    whole = pipeline(root, ImageTransforms(aug, size).dali_train(names), batch)
    decode = pipeline(root, windows_graph, batch)
    windows = [[np.array(w) for w in decode.run()[0]] for _ in range(args.batches)]
    resize = resize_pipeline(rrc_of["rrc"], windows)
    tensors = [torch.from_numpy(w).permute(2, 0, 1).contiguous() for b in windows for w in b]
    from torchvision.transforms.v2.functional import resize as tv_resize

    images = args.batches * batch
    stages = {
        "whole pipeline": lambda: [whole.run() for _ in range(args.batches)],
        "decode windows": lambda: [decode.run() for _ in range(args.batches)],
        "dali resize": lambda: [resize.run() for _ in range(args.batches)],
        "torchvision resize": lambda: [tv_resize(t, [size, size], antialias=True) for t in tensors],
    }
    for step in stages.values():  # warm-up
        step()
    results: dict[str, list[float]] = {name: [] for name in stages}
    for repeat in range(args.repeats):
        for name in stages if repeat % 2 == 0 else list(stages)[::-1]:
            results[name].append(cpu_ms(stages[name], images))
    area = np.mean([w.shape[0] * w.shape[1] for b in windows for w in b])
    print(f"{images} images a stage, {size} px output, crop windows {area:,.0f} pixels on average, one CPU")
    print(f"\nCPU ms per image, median [range] of {args.repeats} repeats")
    print("| stage | CPU ms/image |\n|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
