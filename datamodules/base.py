"""What both datamodules share: the shard folder they read, its classes and splits, and the transforms
they are given.

The augmentation code lives above this package (lightning_modules/augment); a datamodule receives it as an
``ImageTransforms`` object and calls it in ``setup()``, once the class names are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Protocol

import pytorch_lightning as pl
import torch

from datamodules.config import DataConfig
from datamodules.normalize import normalize
from datamodules.shards.format import open_shards


class ImageTransforms(Protocol):
    """The training and evaluation transforms of a run, for either backend."""

    def train(self, class_names: list[str]) -> Callable:
        """torchvision backend: decoded image (a uint8 RGB tensor (3, H, W)), and label if the callable has
        ``uses_label``, -> uint8 image (3, image_size, image_size)."""

    def evaluation(self) -> Callable:
        """torchvision backend: decoded image -> uint8 image (as ``train``, without the label)."""

    def dali_train(self, class_names: list[str]) -> Callable:
        """DALI backend: ``(encoded, labels, device) -> uint8 CHW images`` inside a pipeline definition."""

    def dali_eval(self) -> Callable:
        """DALI backend: ``(encoded, device) -> uint8 CHW images`` inside a pipeline definition."""


class ShardsDataModule(pl.LightningDataModule):
    """A LightningDataModule over one `classreg shard` folder; subclasses build the loaders.

    The loaders yield uint8 images (B, 3, H, W): a quarter of float32's bytes to write, pass between processes
    and copy to the GPU. Lightning hands every batch, once on its device, to ``on_after_batch_transfer``, which
    normalizes it there with ``data.mean`` and ``data.std``; a loop of one's own calls ``normalize``.
    """

    def __init__(self, cfg: DataConfig, transforms: ImageTransforms, seed: int = 0):
        super().__init__()
        self.cfg, self.transforms, self.seed = cfg, transforms, seed
        self.root = Path(cfg.root)
        self.manifest: Optional[dict] = None
        self.class_names: list[str] = []
        self.val_split = ""

    def setup(self, stage: Optional[str] = None) -> None:
        """Read the manifest and classes (once); subclasses then check and build their transforms."""
        if self.manifest is None:
            self.manifest, self.class_names, self.val_split = open_shards(self.cfg)
            self.build_transforms()

    def build_transforms(self) -> None:
        raise NotImplementedError

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """A loader's uint8 images -> float32 ``(x / 255 - data.mean) / data.std``, on their device."""
        return normalize(images, self.cfg.mean, self.cfg.std)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, *rest = batch
        return (self.normalize(images), *rest)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def test_split(self) -> Optional[str]:
        """``test`` when the shards have a test split that is not the validation split (evaluated once, at the end
        of fit, by ``test_dataloader``), else None."""
        return "test" if "test" in self.manifest["splits"] and self.val_split != "test" else None

    def split_size(self, split: str) -> int:
        return self.manifest["splits"][split]["samples"]

    def split_info(self, split: str) -> dict:
        return self.manifest["splits"][split]

    def placement(self) -> tuple[int, int, int, int]:
        """(global rank, world size, local rank, epoch) of this process; (0, 1, 0, 0) without a trainer."""
        t = self.trainer
        return (t.global_rank, t.world_size, t.local_rank, t.current_epoch) if t else (0, 1, 0, 0)
