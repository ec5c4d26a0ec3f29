"""LightningDataModule over `classreg shard` output, decoded with torchvision, augmented by the `aug` policy."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from datamodules.shard_stream import ShardStream
from datamodules.shard_writer import open_shards
from datamodules.transforms import eval_transform
from launch.config import AugConfig, DataConfig
from lightning_modules.augment import build_train_transform


class ShardDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DataConfig, seed: int = 0, train_transform: Optional[Callable] = None,
                 aug: Optional[AugConfig] = None, eval_keys: bool = False,
                 pin_memory: bool = False):
        super().__init__()
        self.pin_memory = pin_memory  # page-locked batches for faster host-to-GPU copies (CUDA runs only)
        self.cfg, self.seed = cfg, seed
        self.eval_keys = eval_keys  # evaluation batches also carry the sample keys (for ImageNet ReaL labels)
        self.root = Path(cfg.root)
        self.manifest, self.class_names, self.val_split = open_shards(cfg)
        # The training policy (lightning_modules/augment); class overrides are checked against class_names here.
        self.train_transform = train_transform or build_train_transform(
            aug or AugConfig(), self.class_names, cfg.image_size, cfg.mean, cfg.std)
        self.eval_transform = eval_transform(cfg.image_size, cfg.mean, cfg.std)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_size(self, split: str) -> int:
        return self.manifest["splits"][split]["samples"]

    def _loader(self, split: str, train: bool) -> DataLoader:
        info = self.manifest["splits"][split]
        urls = [str(self.root / s["file"]) for s in info["shards"]]
        # The trainer reloads the train loader every epoch (reload_dataloaders_every_n_epochs=1) so that
        # the shuffle seed can include the epoch.
        rank, world, epoch = ((self.trainer.global_rank, self.trainer.world_size, self.trainer.current_epoch)
                              if self.trainer else (0, 1, 0))
        stream = ShardStream(
            urls, info["samples"], self.train_transform if train else self.eval_transform,
            self.cfg.batch_size, train=train, shuffle_buffer=self.cfg.shuffle_buffer if train else 0,
            rank=rank, world_size=world, num_workers=self.cfg.num_workers, seed=self.seed, epoch=epoch,
            keys=self.eval_keys and not train,
        )
        return DataLoader(stream, batch_size=None, num_workers=self.cfg.num_workers,
                          persistent_workers=False, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.train_split, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, train=False)
