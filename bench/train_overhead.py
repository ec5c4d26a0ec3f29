"""How much does classreg's training loop cost over a hand-written PyTorch loop?

Both sides train the same model (configs/cifar10_resnet18.yaml: ResNet-18, small stem) with the same SGD,
LR schedule, loss and data loader (ShardDataModule over CIFAR-10 shards) for the same number of steps:
  (a) classreg: launch.fit.fit(cfg) - Trainer + Classifier + ShardDataModule, with every callback;
  (b) plain:    the loop below, over ShardDataModule.train_dataloader().
Only the steps after --warmup are measured (Lightning's start-up and the final checkpoint are outside the
window). Two clocks: wall time, and CPU time (user + system of the process, all its threads, and its live
DataLoader workers, from /proc). On a shared machine wall time swings with the other load; CPU time per image
barely does. Many short runs are interleaved in pairs (the order alternates within each pair), and the
overhead is the geometric mean of the paired ratios classreg/plain with a 95% t-interval over the pairs.

    PYTHONPATH=$PWD python bench/train_overhead.py [--pairs 8] [--steps 14] [--arch resnet18]
    PYTHONPATH=$PWD python bench/train_overhead.py --smoke      # seconds: the code paths only (make test)

Data: CIFAR-10 shards cut from ../shared/data/cifar10-jpeg.tar.gz (CLASSREG_CIFAR10_TGZ), or with --smoke
the test fixture tests/data/cifar10.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cpu_clock import clocks  # noqa: E402

from datamodules.sources.image_tree import shard_image_tree  # noqa: E402
from datamodules.torchvision_backend.datamodule import ShardDataModule  # noqa: E402
from launch.config import load_config  # noqa: E402
from launch.fit import fit  # noqa: E402
from lightning_modules import weight_decay  # noqa: E402
from lightning_modules.augment import ImageTransforms  # noqa: E402
from lightning_modules.models import build_model  # noqa: E402
from lightning_modules.optim import scaled_lr, warmup_cosine  # noqa: E402

CIFAR_TGZ = Path(os.environ.get("CLASSREG_CIFAR10_TGZ", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))


def cifar_shards(work: Path, train_per_class: int, test_per_class: int) -> Path:
    """CIFAR-10 shards with the first N JPEGs of each class (cached in ``work``)."""
    out = work / f"shards-{train_per_class}-{test_per_class}"
    if (out / "manifest.json").is_file():
        return out
    if not CIFAR_TGZ.is_file():
        sys.exit(f"{CIFAR_TGZ} is missing; set CLASSREG_CIFAR10_TGZ to the CIFAR-10 JPEG tarball")
    limit = {"train": train_per_class, "test": test_per_class}
    tree, taken = work / "tree", {}
    with tarfile.open(CIFAR_TGZ) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in limit:
                continue
            if taken.setdefault(tuple(parts[:2]), 0) >= limit[parts[0]]:
                continue
            taken[tuple(parts[:2])] += 1
            (tree / member.name).parent.mkdir(parents=True, exist_ok=True)
            (tree / member.name).write_bytes(tar.extractfile(member).read())
    shard_image_tree(tree, out, shard_size=500, seed=0)
    return out


@dataclasses.dataclass
class Window:
    """The measured steps of one run: images, wall and CPU seconds."""

    images: int
    wall: float
    cpu: float

    @classmethod
    def between(cls, start, end, images: int) -> "Window":
        return cls(images, end[0] - start[0], end[1] - start[1])


class StepTimer(pl.Callback):
    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.start, self.end = warmup, steps, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = clocks()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.steps - 1:
            self.end = clocks()


def run_classreg(cfg, warmup: int, steps: int) -> Window:
    timer = StepTimer(warmup, steps)
    # A fresh run folder each time: fit resumes from a checkpoint it finds in its folder.
    cfg = dataclasses.replace(cfg, name=f"run-{time.time_ns()}")
    fit(cfg, extra_callbacks=[timer])
    return Window.between(timer.start, timer.end, (steps - warmup) * cfg.data.batch_size)


def run_plain(cfg, warmup: int, steps: int) -> Window:
    """The loop a researcher would write by hand: same model, optimizer, schedule, loss and loader."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(cfg.trainer.deterministic, warn_only=True)
    data = ShardDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data), seed=cfg.seed)
    data.setup()
    model = build_model(cfg.model.arch, data.num_classes, cfg.model.stem, cfg.data.image_size)
    lr, _ = scaled_lr(cfg.optim, cfg.data.batch_size, 1)
    o = cfg.optim
    optimizer = torch.optim.SGD(
        weight_decay.param_groups(model, cfg.wd), lr=lr, momentum=o.momentum, nesterov=o.nesterov
    )
    warmup_steps = int(round(o.warmup_epochs * steps / cfg.trainer.max_epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, steps, warmup_steps, o.warmup_start_factor, o.schedule)
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=o.label_smoothing)
    model.train()
    start = end = None
    for i, (images, labels) in enumerate(data.train_dataloader()):
        if i == warmup:
            start = clocks()
        loss = criterion(model(data.normalize(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if i == steps - 1:
            end = clocks()
            break
    if end is None:
        sys.exit(f"the loader gave only {i + 1} batches; lower --steps or raise --train-per-class")
    return Window.between(start, end, (steps - warmup) * cfg.data.batch_size)


def paired_ratio(classreg: list[float], plain: list[float]) -> tuple[float, float, float]:
    """Geometric mean of the paired ratios and its 95% t-interval (over the pairs, on the log scale)."""
    from scipy import stats

    logs = [math.log(a / b) for a, b in zip(classreg, plain)]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet20"])
    p.add_argument("--steps", type=int, default=14, help="training steps per run, including --warmup")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured first steps")
    p.add_argument("--pairs", type=int, default=8, help="interleaved (classreg, plain) pairs of runs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "classreg-bench"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the test fixture: the code paths only")
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.steps, args.warmup, args.pairs, args.batch_size = "resnet20", 3, 1, 2, 8
    if not 0 <= args.warmup < args.steps:
        p.error("--warmup must be in [0, --steps)")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    shards = fixture_shards(work) if args.smoke else cifar_shards(work, args.train_per_class, 10)
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = load_config(
        REPO / "configs" / "cifar10_resnet18.yaml",
        [
            f"data.root={shards}",
            f"out_dir={work / 'runs'}",
            f"model.arch={args.arch}",
            f"data.batch_size={args.batch_size}",
            f"data.num_workers={args.num_workers}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={args.steps}",
            "trainer.accelerator=cpu",
            "trainer.progress_bar=false",
            "logger.wandb=false",
        ],
    )
    print(
        f"{args.arch}, batch {args.batch_size}, {args.steps} steps ({args.warmup} unmeasured), "
        f"{args.num_workers} loader worker(s), {torch.get_num_threads()} torch threads, {args.pairs} pairs"
    )
    runs: dict[str, list[Window]] = {"classreg": [], "plain": []}
    for r in range(args.pairs):
        for which in ("classreg", "plain") if r % 2 == 0 else ("plain", "classreg"):
            w = (run_classreg if which == "classreg" else run_plain)(cfg, args.warmup, args.steps)
            runs[which].append(w)
            print(
                f"  pair {r + 1} {which:8s} {w.images / w.wall:8.1f} images/s wall, "
                f"{1000 * w.cpu / w.images:8.2f} CPU ms/image",
                flush=True,
            )
    print(f"\n{'loop':10s} {'wall images/s (median)':>24s} {'CPU ms/image (median)':>24s}")
    for k in ("plain", "classreg"):
        wall = statistics.median(w.images / w.wall for w in runs[k])
        cpu = statistics.median(1000 * w.cpu / w.images for w in runs[k])
        print(f"{k:10s} {wall:24.1f} {cpu:24.2f}")
    for name, per_image in (
        ("CPU time per image", lambda w: w.cpu / w.images),
        ("wall time per image", lambda w: w.wall / w.images),
    ):
        ratio, lo, hi = paired_ratio([per_image(w) for w in runs["classreg"]], [per_image(w) for w in runs["plain"]])
        print(
            f"classreg/plain, {name}: {ratio:.3f} (95% CI {lo:.3f}-{hi:.3f}, {args.pairs} pairs; target: at most 1.05)"
        )
    return 0


def fixture_shards(work: Path) -> Path:
    """Shards of the test fixture's 240 training images (tests/data/cifar10), for --smoke."""
    out = work / "fixture-shards"
    if not (out / "manifest.json").is_file():
        shard_image_tree(REPO / "tests" / "data" / "cifar10", out, shard_size=60, seed=0, workers=1)
    return out


if __name__ == "__main__":
    sys.exit(main())
