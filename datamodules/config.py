"""The ``data`` section of a run's config: which shards, how they are decoded, batched and normalized."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import bounded, choice, setting

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class DataConfig:
    root: str = setting("", help="a folder written by `classreg shard` (holds classes.json and manifest.json)")
    backend: str = choice(
        "torchvision",
        ["torchvision", "dali"],
        help="`torchvision`: webdataset + torchvision transforms in DataLoader workers; "
        "`dali`: NVIDIA DALI pipelines (docs/data.md)",
    )
    decode_device: str = choice(
        "auto",
        ["auto", "cpu", "mixed"],
        help="`dali` only: `auto` decodes on the GPU (`mixed`, nvJPEG) when CUDA is present, else on the `cpu`",
    )
    train_split: str = setting("train", help="the shards' split to train on")
    val_split: str = setting(
        "auto",
        help="the split validated after every epoch (it picks the best checkpoint); `auto`: `val` if the shards "
        "have it (`classreg shard --val-fraction`), else `test`. A `test` split other than it is evaluated once, "
        "on the final model (per_class_test.csv)",
    )
    image_size: int = bounded(224, 8, 1024, help="training and evaluation resolution (pixels, square)")
    batch_size: int = bounded(256, 1, help="images per batch and process")
    num_workers: int = bounded(2, 0, help="DataLoader workers per process (DALI's `num_threads` on `dali`)")
    shuffle_buffer: int = bounded(2000, 0, help="samples in the training shuffle buffer")
    mean: list[float] = setting(default_factory=lambda: list(IMAGENET_MEAN), help="per-channel normalization mean")
    std: list[float] = setting(default_factory=lambda: list(IMAGENET_STD), help="per-channel normalization std")
