"""The ``data`` section of a run's config: which shards, how they are decoded, batched and normalized."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import bounded, choice, setting

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# Images above this many pixels are refused by the writer (`classreg shard --max-pixels`) and by both loaders
# (`data.max_pixels`), before they are decoded: a PNG of a few kilobytes can decode to gigabytes. Pillow's own
# warning threshold: about 9459 x 9459, 268 MB decoded as RGB.
MAX_IMAGE_PIXELS = 89_478_485


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
    max_pixels: int = bounded(
        MAX_IMAGE_PIXELS,
        1,
        help="refuse images with more pixels (width x height), before decoding them, on both backends: a tiny PNG "
        "can decode to gigabytes. The default is Pillow's warning threshold (about 9459 x 9459)",
    )
    mean: list[float] = bounded(list(IMAGENET_MEAN), length=3, help="per-channel (RGB) normalization mean")
    std: list[float] = bounded(
        list(IMAGENET_STD), 0.0, None, low_inclusive=False, length=3, help="per-channel (RGB) normalization std"
    )
