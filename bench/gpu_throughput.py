"""ResNet-50 training throughput on one GPU: classreg against a plain loop on the same DALI pipeline, against
the model's own ceiling, and the torchvision backend.

    PYTHONPATH=$PWD python bench/gpu_throughput.py [--images 12800] [--batch-size 256] [--steps 200] --out r.json
    PYTHONPATH=$PWD python bench/gpu_throughput.py --smoke      # CPU, tiny sizes: the code paths only (make test)

It writes ImageNet-sized JPEG shards (500x375, about 110 KB; cached in --work-dir), then measures images/s of
training at --batch-size per GPU, bf16-mixed, channels_last, cudnn.benchmark:

  (a) dali-plain      the `data.backend=dali` training loader (nvJPEG decoding on the GPU) feeding a plain loop
  (b) dali-classreg   the same through `classreg fit` (Trainer, Classifier, every callback, CSV log)
  (c) synthetic       random tensors already on the GPU: the model's ceiling on this GPU
  (d) torchvision     the `data.backend=torchvision` training loader feeding the plain loop

and the ratios (b)/(a) (target >= 0.95) and (a)/(c) (target >= 0.90), the GPU's utilisation while each runs
(nvidia-smi), DALI's evaluation pipeline alone (images/s), and the cost of one validation's per-class counts
(update over the validation batches, then the one all-reduce and the copy to the host). Only the steps after
--warmup are timed. Published anchors: NVIDIA DeepLearningExamples ResNet-50 + DALI, 2,470 images/s on one A100
80GB with AMP; MLPerf Training v4.0, about 7,950 per H200 with fused kernels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthetic_images import synthetic_tree  # noqa: E402

from datamodules.normalize import normalize  # noqa: E402
from datamodules.sources.image_tree import shard_image_tree  # noqa: E402
from launch.config import load_config  # noqa: E402
from launch.fit import build_datamodule, fit  # noqa: E402
from lightning_modules.models import build_model  # noqa: E402


@dataclasses.dataclass
class Sizes:
    images: int
    val_images: int
    classes: int
    image_hw: tuple[int, int]
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    arch: str


FULL = Sizes(12800, 2560, 100, (500, 375), 224, 256, 200, 50, "resnet50")
SMOKE = Sizes(96, 40, 4, (64, 48), 32, 8, 4, 1, "resnet20")


class Utilisation:
    """GPU utilisation (%) sampled by nvidia-smi every 200 ms while the block runs; None without nvidia-smi."""

    def __enter__(self):
        self.samples, self._proc = [], None
        if torch.cuda.is_available() and shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            if line.strip().split(",")[0].isdigit():
                self.samples.append(int(line.strip().split(",")[0]))

    def __exit__(self, *exc):
        if self._proc:
            self._proc.terminate()
            self._proc.wait()

    @property
    def mean(self):
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def shards(work: Path, s: Sizes) -> Path:
    out = work / f"shards-{s.images}-{s.image_hw[0]}x{s.image_hw[1]}"
    if not (out / "manifest.json").is_file():
        tree = work / f"tree-{s.images}"
        synthetic_tree(tree, s.images, s.classes, "train", s.image_hw)
        synthetic_tree(tree, s.val_images, s.classes, "val", s.image_hw)
        shard_image_tree(tree, out, shard_size=max(64, s.images // 64), seed=0)
        shutil.rmtree(tree)
    return out


def run_config(root: Path, work: Path, s: Sizes, backend: str, workers: int):
    return load_config(
        REPO / "configs" / "imagenet_resnet50.yaml",
        [
            f"data.root={root}",
            f"data.backend={backend}",
            f"data.image_size={s.image_size}",
            f"data.batch_size={s.batch_size}",
            f"data.num_workers={workers}",
            f"model.arch={s.arch}",
            f"out_dir={work / 'runs'}",
            "trainer.devices=1",
            "trainer.accelerator=auto",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={s.steps}",
            "trainer.limit_val_batches=1",
            "trainer.progress_bar=false",
            "logger.wandb=false",
            "optim.lr_scaling=none",
        ],
    )


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_step_fn(cfg, num_classes: int):
    """A plain training step as a researcher would write it: bf16 autocast, channels_last, SGD."""
    dev = device()
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    model = build_model(cfg.model.arch, num_classes, cfg.model.stem, cfg.data.image_size).to(dev)
    memory = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()

    def step(images, labels):
        images = images.to(dev, non_blocking=True)
        if images.dtype == torch.uint8:  # a loader's batch: normalized on the device, as classreg does
            images = normalize(images, cfg.data.mean, cfg.data.std)
        images = images.contiguous(memory_format=memory)
        labels = labels.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(batches, step, s: Sizes) -> float:
    """images/s over the steps after the warm-up (the GPU synchronised at both ends)."""
    start = None
    for i, batch in enumerate(batches):
        if i == s.warmup:
            sync()
            start = time.perf_counter()
        step(batch[0], batch[1])
        if i == s.steps - 1:
            sync()
            return (s.steps - s.warmup) * s.batch_size / (time.perf_counter() - start)
    raise SystemExit(f"the loader gave only {i + 1} batches; raise --images or lower --steps")


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def repeat(loader_fn):
    """Batches from fresh epochs of ``loader_fn()`` for as long as the caller takes them."""
    while True:
        yield from loader_fn()


def synthetic(cfg, s: Sizes) -> float:
    dev = device()
    images = torch.randn(s.batch_size, 3, s.image_size, s.image_size, device=dev)
    labels = torch.randint(0, s.classes, (s.batch_size,), device=dev)
    return timed(((images, labels) for _ in iter(int, 1)), train_step_fn(cfg, s.classes), s)


def plain(cfg, s: Sizes) -> float:
    data = build_datamodule(cfg)
    data.setup()
    return timed(repeat(data.train_dataloader), train_step_fn(cfg, data.num_classes), s)


class StepTimer(pl.Callback):
    def __init__(self, s: Sizes):
        self.s, self.start, self.end = s, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.s.warmup:
            sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.s.steps - 1:
            sync()
            self.end = time.perf_counter()


def classreg(cfg, s: Sizes) -> float:
    timer = StepTimer(s)
    fit(dataclasses.replace(cfg, name=f"bench-{time.time_ns()}"), extra_callbacks=[timer])
    return (s.steps - s.warmup) * s.batch_size / (timer.end - timer.start)


def dali_eval(cfg, s: Sizes) -> float:
    data = build_datamodule(cfg)
    data.setup()
    loader = data.val_dataloader()
    sync()
    start, images = time.perf_counter(), 0
    for batch in loader:
        images += len(batch[1])
    sync()
    return images / (time.perf_counter() - start)


def per_class_counts_ms(classes: int = 1000, batches: int = 50, batch_size: int = 256) -> float:
    """Milliseconds of one validation's per-class counting: update per batch, one reduction, copy to the host."""
    from lightning_modules.metrics.per_class_metrics import PerClassCounts

    dev = device()
    counts = PerClassCounts(classes).to(dev)
    logits = torch.randn(batches, batch_size, classes, device=dev)
    labels = torch.randint(0, classes, (batches, batch_size), device=dev)
    sync()
    start = time.perf_counter()
    for b in range(batches):
        counts.update(logits[b], labels[b])
    counts.reduce(lambda t: t, [str(i) for i in range(classes)])  # one process: the identity all-reduce
    sync()
    return 1000 * (time.perf_counter() - start)


def environment() -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    try:
        import nvidia.dali

        info["dali"] = nvidia.dali.__version__
    except ImportError:
        info["dali"] = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        info["driver"] = out.stdout.strip() or None
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=FULL.images)
    p.add_argument("--batch-size", type=int, default=FULL.batch_size)
    p.add_argument("--steps", type=int, default=FULL.steps, help="training steps per measurement, with --warmup")
    p.add_argument("--warmup", type=int, default=FULL.warmup)
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, len(os.sched_getaffinity(0)) - 1),
        help="DALI threads and torchvision DataLoader workers",
    )
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "classreg-gpu-bench"))
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU is fine): the code paths only")
    args = p.parse_args(argv)
    s = (
        SMOKE
        if args.smoke
        else dataclasses.replace(
            FULL, images=args.images, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup
        )
    )
    os.environ.setdefault("WANDB_MODE", "disabled")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    root = shards(work, s)
    dali, tv = (run_config(root, work, s, backend, args.workers) for backend in ("dali", "torchvision"))
    results = {"environment": environment(), "sizes": dataclasses.asdict(s), "images_per_s": {}, "gpu_util": {}}
    for name, fn, cfg in (
        ("synthetic", synthetic, dali),
        ("dali-plain", plain, dali),
        ("dali-classreg", classreg, dali),
        ("torchvision", plain, tv),
    ):
        with Utilisation() as util:
            results["images_per_s"][name] = round(fn(cfg, s), 1)
        results["gpu_util"][name] = util.mean
        print(f"{name:14s} {results['images_per_s'][name]:10.1f} images/s   GPU {util.mean}%", flush=True)
    ips = results["images_per_s"]
    results["ratios"] = {
        "classreg/plain (target >= 0.95)": round(ips["dali-classreg"] / ips["dali-plain"], 3),
        "plain/synthetic (target >= 0.90)": round(ips["dali-plain"] / ips["synthetic"], 3),
    }
    results["dali_eval_images_per_s"] = round(dali_eval(dali, s), 1)
    results["per_class_counts_ms"] = round(per_class_counts_ms(batch_size=s.batch_size), 2)
    for k, v in results["ratios"].items():
        print(f"{k}: {v}")
    print(
        f"DALI evaluation pipeline: {results['dali_eval_images_per_s']} images/s; one validation's per-class "
        f"counts (1000 classes, 50 batches): {results['per_class_counts_ms']} ms"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
