"""What both datamodules share: the shard folder they read, its classes and splits, and the transforms
they are given.

The augmentation code lives above this package (lightning_modules/augment); a datamodule receives it as an
``ImageTransforms`` object and calls it in ``setup()``, once the class names are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Protocol

import pytorch_lightning as pl

from datamodules.config import DataConfig
from datamodules.shards.format import open_shards


class ImageTransforms(Protocol):
    """The training and evaluation transforms of a run, for either backend."""

    def train(self, class_names: list[str]) -> Callable:
        """torchvision backend: decoded image (a uint8 RGB tensor (3, H, W)), and label if the callable has
        ``uses_label``, -> tensor. With ``augment`` and ``normalize(image, out=)`` parts, the loader calls them
        separately (torchvision_backend/batch.py)."""

    def evaluation(self) -> Callable:
        """torchvision backend: decoded image -> tensor (as ``train``, without the label)."""

    def dali_train(self, class_names: list[str]) -> Callable:
        """DALI backend: ``(encoded, labels, device) -> images`` inside a pipeline definition."""

    def dali_eval(self) -> Callable:
        """DALI backend: ``(encoded, device) -> images`` inside a pipeline definition."""


class ShardsDataModule(pl.LightningDataModule):
    """A LightningDataModule over one `classreg shard` folder; subclasses build the loaders."""

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
