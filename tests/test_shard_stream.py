"""Which samples each rank and worker sees: every sample exactly once per epoch."""

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.config import DataConfig
from datamodules.shards.format import read_manifest
from datamodules.torchvision_backend.datamodule import ShardDataModule
from datamodules.torchvision_backend.shard_stream import ShardStream
from lightning_modules.augment import AugConfig, ImageTransforms


def keys_seen(root, split, train, rank, world, workers, epoch=0, seed=0):
    """The sample keys one (rank, worker set) reads in one epoch, in order."""
    manifest, _ = read_manifest(root)
    info = manifest["splits"][split]
    urls = [str(root / s["file"]) for s in info["shards"]]
    seen = []

    class KeyStream(ShardStream):
        def __iter__(self):
            for sample in self._samples():
                yield sample["__key__"]

    stream = KeyStream(
        urls,
        info["samples"],
        None,
        8,
        train=train,
        shuffle_buffer=16 if train else 0,
        rank=rank,
        world_size=world,
        num_workers=workers,
        seed=seed,
        epoch=epoch,
    )
    for key in DataLoader(stream, batch_size=None, num_workers=workers):
        seen.append(key)
    return seen


@pytest.mark.parametrize("split,train", [("train", True), ("test", False)])
@pytest.mark.parametrize("world,workers", [(1, 0), (1, 2), (2, 2), (3, 1)])
def test_every_sample_exactly_once_across_ranks_and_workers(cifar_shards, split, train, world, workers):
    manifest, _ = read_manifest(cifar_shards)
    per_rank = [keys_seen(cifar_shards, split, train, r, world, workers) for r in range(world)]
    everything = [k for keys in per_rank for k in keys]
    assert len(everything) == manifest["splits"][split]["samples"]
    assert len(set(everything)) == len(everything)


def test_training_order_is_seeded_and_changes_between_epochs(cifar_shards):
    epoch0 = keys_seen(cifar_shards, "train", True, 0, 1, 2, epoch=0)
    assert keys_seen(cifar_shards, "train", True, 0, 1, 2, epoch=0) == epoch0
    assert keys_seen(cifar_shards, "train", True, 0, 1, 2, epoch=1) != epoch0
    assert keys_seen(cifar_shards, "train", True, 0, 1, 2, epoch=0, seed=1) != epoch0


def test_datamodule_batches_and_labels(cifar_shards):
    cfg = DataConfig(
        root=str(cifar_shards), image_size=32, batch_size=16, num_workers=0, mean=[0.5] * 3, std=[0.25] * 3
    )
    dm = ShardDataModule(cfg, ImageTransforms.of(AugConfig(), cfg))
    dm.setup()
    assert dm.val_split == "test" and dm.num_classes == 10
    counts = torch.zeros(10, dtype=torch.long)
    for images, labels in dm.val_dataloader():
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
        counts += torch.bincount(labels, minlength=10)
    assert counts.tolist() == [7] * 10
