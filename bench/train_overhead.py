"""How much does classreg's training loop cost over a hand-written PyTorch loop?

Both sides train the same model (configs/cifar10_resnet18.yaml: ResNet-18, small stem) with the same SGD,
LR schedule, loss and data loader (ShardDataModule over CIFAR-10 shards cut from
../shared/data/cifar10-jpeg.tar.gz) for the same number of steps:
  (a) classreg: launch.fit.fit(cfg) - Trainer + Classifier + ShardDataModule, with every callback;
  (b) plain:    the loop below, over ShardDataModule.train_dataloader().
Repeats are interleaved (a b, b a, a b, ...). Throughput counts the steps after --warmup, from the start of the
first timed step to the end of the last (Lightning's start-up and the final checkpoint are outside the window).

    PYTHONPATH=$PWD python bench/train_overhead.py [--steps 20] [--repeats 3] [--arch resnet18]
"""

from __future__ import annotations

import argparse
import dataclasses
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


class StepTimer(pl.Callback):
    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.start, self.end = warmup, steps, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.steps - 1:
            self.end = time.perf_counter()


def run_classreg(cfg, warmup: int, steps: int) -> float:
    timer = StepTimer(warmup, steps)
    # A fresh run folder each time: fit resumes from a checkpoint it finds in its folder.
    cfg = dataclasses.replace(cfg, name=f"run-{time.time_ns()}")
    fit(cfg, extra_callbacks=[timer])
    return (steps - warmup) * cfg.data.batch_size / (timer.end - timer.start)


def run_plain(cfg, warmup: int, steps: int) -> float:
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
            start = time.perf_counter()
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if i == steps - 1:
            end = time.perf_counter()
            break
    if end is None:
        sys.exit(f"the loader gave only {i + 1} batches; lower --steps or raise --train-per-class")
    return (steps - warmup) * cfg.data.batch_size / (end - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet20"])
    p.add_argument("--steps", type=int, default=20, help="training steps per run, including --warmup")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "classreg-bench"))
    args = p.parse_args(argv)
    if not 0 <= args.warmup < args.steps:
        p.error("--warmup must be in [0, --steps)")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    shards = cifar_shards(work, args.train_per_class, 10)
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
        f"{args.arch}, batch {args.batch_size}, {args.steps} steps ({args.warmup} untimed), "
        f"{args.num_workers} loader worker(s), {torch.get_num_threads()} torch threads, {args.repeats} repeats"
    )
    results = {"classreg": [], "plain": []}
    for r in range(args.repeats):
        order = ("classreg", "plain") if r % 2 == 0 else ("plain", "classreg")
        for which in order:
            runner = run_classreg if which == "classreg" else run_plain
            results[which].append(runner(cfg, args.warmup, args.steps))
            print(f"  repeat {r + 1} {which:8s} {results[which][-1]:8.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{'loop':10s} {'median images/s':>16s} {'all repeats':>30s}")
    for k in ("plain", "classreg"):
        print(f"{k:10s} {med[k]:16.1f} {', '.join(f'{v:.1f}' for v in results[k]):>30s}")
    ratio = med["classreg"] / med["plain"]
    print(f"ratio classreg/plain: {ratio:.3f} ({(1 - ratio) * 100:+.1f}% overhead; target within 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
