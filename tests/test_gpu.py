"""The GPU path for real: DALI nvJPEG decoding, bf16 AMP, channels_last, cudnn.benchmark, torch.compile, NCCL.

`pytest -m gpu` on a CUDA machine (bench/gpu_run.sh runs it there with the benchmark); on a machine without
CUDA every test here is skipped with the reason, and their CPU twins run elsewhere (tests/test_runtime.py,
tests/test_dali.py, tests/test_bench_smoke.py).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.sources.image_tree import shard_image_tree
from launch.config import load_config
from launch.fit import build_datamodule, fit

REPO = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run `pytest -m gpu` on one)")]
RED = (230, 20, 20)


def framed_tree(root: Path, per_class: int, classes: int = 4, size=(500, 375)) -> Path:
    """ImageNet-sized JPEGs: noise inside a 40-px red frame, so that a whole-image crop has red corners."""
    w, h = size
    for split, count in (("train", per_class), ("val", max(8, per_class // 4))):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng(hash((split, c, i)) % 2**32)
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[:, :, c % 3] //= 2  # a class signal the model can learn
                pixels[:40], pixels[-40:], pixels[:, :40], pixels[:, -40:] = RED, RED, RED, RED
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def imagenet_sized_shards(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("gpu")
    out = base / "shards"
    shard_image_tree(framed_tree(base / "tree", per_class=64), out, shard_size=64, seed=0)
    return out


def gpu_config(root: Path, out: Path, *extra: str):
    return load_config(
        REPO / "configs" / "imagenet_resnet50.yaml",
        [
            f"data.root={root}",
            "data.backend=dali",
            "data.decode_device=mixed",
            "data.batch_size=32",
            "data.num_workers=4",
            "model.arch=resnet18",
            f"out_dir={out}",
            "name=gpu",
            "trainer.devices=1",
            "trainer.max_epochs=1",
            "trainer.progress_bar=false",
            "logger.wandb=false",
            "optim.lr_scaling=none",
            "optim.warmup_epochs=0",
            *extra,
        ],
    )


def last_counts(run: Path) -> dict[str, int]:
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    last = max(int(r["epoch"]) for r in rows)
    return {r["class_name"]: int(r["correct"]) for r in rows if int(r["epoch"]) == last}


def test_dali_gpu_bf16_channels_last_epoch_counts_match_an_fp32_evaluation(imagenet_sized_shards, tmp_path):
    cfg = gpu_config(imagenet_sized_shards, tmp_path, "trainer.precision=bf16-mixed", "trainer.deterministic=false")
    fit(cfg)
    runtime = json.loads((cfg.run_dir / "runtime.json").read_text())
    assert runtime["cuda"] and runtime["precision"] == "bf16-mixed"
    assert runtime["channels_last"] and runtime["cudnn_benchmark"] and runtime["pin_memory"]

    # The same checkpoint in fp32, on the same DALI evaluation pipeline, image by image.
    from lightning_modules.classifier import Classifier

    model = Classifier.load_from_checkpoint(cfg.run_dir / "checkpoints" / "last.ckpt").cuda().eval()
    data = build_datamodule(cfg)
    data.setup()
    fp32, bf16, labels = [], [], []
    with torch.no_grad():
        for images, target in data.val_dataloader():
            images = data.normalize(images.cuda()).contiguous(memory_format=torch.channels_last)
            fp32.append(model(images).float())
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16.append(model(images).float())
            labels.append(target.cuda())
    fp32, bf16, labels = torch.cat(fp32), torch.cat(bf16), torch.cat(labels)
    # The documented bf16 tie rule: predictions may differ only where fp32's top-2 margin is within bf16's
    # resolution (8 significant bits) of the logits' scale.
    top2 = fp32.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) <= fp32.abs().amax(1) * 2.0**-7
    flips = fp32.argmax(1) != bf16.argmax(1)
    assert not (flips & ~near_tie).any()
    written = last_counts(cfg.run_dir)
    for c, name in enumerate(data.class_names):
        in_class = labels == c
        exact = int((fp32.argmax(1)[in_class] == c).sum())
        assert abs(written[name] - exact) <= int((near_tie & in_class).sum()), name


def test_class_overridden_to_whole_images_on_the_gpu_pipeline_keeps_its_frame(imagenet_sized_shards, tmp_path):
    cfg = gpu_config(
        imagenet_sized_shards,
        tmp_path,
        "data.image_size=128",
        "data.mean=[0,0,0]",
        "data.std=[1,1,1]",
        "aug.rrc.min_scale=0.08",
        "aug.class_overrides.class1.rrc.min_scale=1.0",
        "aug.class_overrides.class1.rrc.max_scale=1.0",
    )
    data = build_datamodule(cfg)
    data.setup()
    framed = {0: [], 1: []}
    last = -1
    rows, cols = [0, 0, -1, -1, 0, -1, 64, 64], [0, -1, 0, -1, 64, 64, 0, last]  # corners and edge midpoints
    for images, labels in data.train_dataloader():
        red = images[:, 0, rows, cols].cpu() > 0.8 * 255  # uint8 pixels
        for c in (0, 1):
            framed[c] += red[labels.cpu() == c].all(1).tolist()
    # every image of class1 is whole (not centre-cropped either: the left and right edges keep the frame)
    assert len(framed[1]) == 64 and all(framed[1])
    assert sum(framed[0]) < 0.5 * len(framed[0])  # random-resized crops of class0 mostly cut the frame away


def test_torch_compile_on_cuda(imagenet_sized_shards, tmp_path):
    cfg = gpu_config(imagenet_sized_shards, tmp_path, "trainer.compile=true", "trainer.limit_train_batches=4")
    fit(cfg)
    assert json.loads((cfg.run_dir / "runtime.json").read_text())["compile"] is True
    assert sum(last_counts(cfg.run_dir).values()) >= 0 and (cfg.run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason=f"NCCL DDP needs 2 CUDA GPUs; this machine has {torch.cuda.device_count()}"
)
def test_ddp_with_nccl_counts_every_validation_image_once(imagenet_sized_shards, tmp_path):
    overrides = [
        f"data.root={imagenet_sized_shards}",
        "data.backend=dali",
        "data.batch_size=16",
        "model.arch=resnet18",
        f"out_dir={tmp_path}",
        "name=nccl",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "logger.wandb=false",
        "optim.lr_scaling=none",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "launch.cli", "fit", "-c", str(REPO / "configs" / "imagenet_resnet50.yaml"), *overrides],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runtime = json.loads((tmp_path / "nccl" / "runtime.json").read_text())
    assert runtime["distributed_backend"] == "nccl" and runtime["world_size"] == 2
    rows = list(csv.DictReader(open(tmp_path / "nccl" / "per_class.csv")))
    assert sum(int(r["total"]) for r in rows) == 4 * 16  # every validation image counted once across the ranks
