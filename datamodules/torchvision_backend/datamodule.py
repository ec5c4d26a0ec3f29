"""``data.backend=torchvision``: webdataset shards decoded and augmented in DataLoader workers."""

from __future__ import annotations

from torch.utils.data import DataLoader

from datamodules.base import ShardsDataModule
from datamodules.torchvision_backend.shard_stream import ShardStream


class ShardDataModule(ShardsDataModule):
    def __init__(self, cfg, transforms, seed: int = 0, eval_keys: bool = False, pin_memory: bool = False):
        super().__init__(cfg, transforms, seed)
        self.pin_memory = pin_memory  # page-locked batches for faster host-to-GPU copies (CUDA runs only)
        self.eval_keys = eval_keys  # evaluation batches also carry the sample keys (for ImageNet ReaL labels)

    def build_transforms(self) -> None:
        # class-conditional overrides are checked against the class names here, before any training
        self.train_transform = self.transforms.train(self.class_names)
        self.eval_transform = self.transforms.evaluation()

    def _loader(self, split: str, train: bool) -> DataLoader:
        info = self.split_info(split)
        urls = [str(self.root / s["file"]) for s in info["shards"]]
        # The trainer reloads the train loader every epoch (reload_dataloaders_every_n_epochs=1) so that
        # the shuffle seed can include the epoch.
        rank, world, _, epoch = self.placement()
        stream = ShardStream(
            urls,
            [s["samples"] for s in info["shards"]],
            self.train_transform if train else self.eval_transform,
            self.cfg.batch_size,
            train=train,
            shuffle_buffer=self.cfg.shuffle_buffer if train else 0,
            rank=rank,
            world_size=world,
            num_workers=self.cfg.num_workers,
            seed=self.seed,
            epoch=epoch,
            keys=self.eval_keys and not train,
            num_classes=self.num_classes,
            max_pixels=self.cfg.max_pixels,
            index_paths=[str(self.root / s["index"]) if "index" in s else None for s in info["shards"]],
        )
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.train_split, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, train=False)
