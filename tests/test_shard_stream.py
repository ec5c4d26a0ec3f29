"""Which samples each rank and worker sees: every sample exactly once per epoch."""

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.config import DataConfig
from datamodules.shards.format import read_manifest
from datamodules.torchvision_backend.datamodule import ShardDataModule
from datamodules.torchvision_backend.shard_stream import ShardStream
from lightning_modules.augment import AugConfig, ImageTransforms


def stream_of(root, split, train, rank, world, workers, epoch=0, seed=0, batch=8, cls=ShardStream, **kw):
    manifest, classes = read_manifest(root)
    info = manifest["splits"][split]
    return cls(
        [str(root / s["file"]) for s in info["shards"]],
        [s["samples"] for s in info["shards"]],
        kw.pop("transform", None),
        batch,
        train=train,
        num_classes=len(classes),
        shuffle_buffer=16 if train else 0,
        rank=rank,
        world_size=world,
        num_workers=workers,
        seed=seed,
        epoch=epoch,
        **kw,
    )


class KeyStream(ShardStream):
    def __iter__(self):
        for sample in self._samples():
            yield sample["__key__"]


def keys_seen(root, split, train, rank, world, workers, epoch=0, seed=0):
    """The sample keys one (rank, worker set) reads in one epoch, in order."""
    stream = stream_of(root, split, train, rank, world, workers, epoch, seed, cls=KeyStream)
    return list(DataLoader(stream, batch_size=None, num_workers=workers))


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
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8  # normalized on the device
        counts += torch.bincount(labels, minlength=10)
    assert counts.tolist() == [7] * 10


@pytest.fixture(scope="module")
def uneven_shards(cifar_tree, tmp_path_factory):
    """239 training images (one removed: odd) in shards of 70, 70, 70 and 29; 70 test images in one shard."""
    import shutil

    from datamodules.sources.image_tree import shard_image_tree

    tree = tmp_path_factory.mktemp("uneven") / "tree"
    shutil.copytree(cifar_tree, tree)
    next(iter(sorted((tree / "train" / "cat").iterdir()))).unlink()
    out = tmp_path_factory.mktemp("uneven_shards")
    shard_image_tree(tree, out, shard_size=70, seed=0, workers=1)
    return out


def constant(image):
    return torch.zeros(1)


@pytest.mark.parametrize("world,workers,batch", [(2, 2, 16), (3, 0, 8), (4, 3, 5), (7, 2, 16)])
def test_training_ranks_take_the_same_steps_over_the_same_number_of_samples(uneven_shards, world, workers, batch):
    manifest, _ = read_manifest(uneven_shards)
    sizes = [s["samples"] for s in manifest["splits"]["train"]["shards"]]
    assert sizes == [70, 70, 70, 29]
    for epoch in (0, 1):
        seen, steps = [], set()
        for rank in range(world):
            stream = stream_of(
                uneven_shards, "train", True, rank, world, workers, epoch, batch=batch, transform=constant, keys=True
            )
            batches = list(DataLoader(stream, batch_size=None, num_workers=workers))
            assert len(batches) == len(stream)  # Lightning's epoch length is the real one
            steps.add(len(batches))
            keys = [k for _, _, batch_keys in batches for k in batch_keys]
            assert len(keys) == 239 // world  # every rank the same number of samples
            seen += keys
        assert len(steps) == 1  # every rank the same number of steps: DDP's all-reduces line up
        assert len(set(seen)) == len(seen)  # nothing twice in an epoch
        assert 239 - len(seen) == 239 % world <= world - 1  # at most world_size - 1 sit the epoch out


@pytest.mark.parametrize("world,workers", [(2, 2), (3, 1), (4, 3)])
def test_evaluation_batches_are_exactly_len_and_cover_every_sample(uneven_shards, world, workers):
    seen = []
    for rank in range(world):
        stream = stream_of(uneven_shards, "test", False, rank, world, workers, batch=8, transform=constant, keys=True)
        batches = list(DataLoader(stream, batch_size=None, num_workers=workers))
        assert len(batches) == len(stream)
        seen += [k for _, _, batch_keys in batches for k in batch_keys]
    assert len(seen) == len(set(seen)) == 70


def test_the_paper_grid_gives_every_rank_the_same_steps():
    """ImageNet (1,281,167 images, 1,000-image shards), 8 ranks x 8 workers, batch 128: split by shard, ranks
    used to get 1272, 1256 (x6) and 1249 batches against len() = 1256."""
    from datamodules.torchvision_backend.shard_stream import consumer_range

    n = 1_281_167
    lengths = {
        sum(-(-len(consumer_range(n, 8, rank, 8, worker, train=True)) // 128) for worker in range(8))
        for rank in range(8)
    }
    assert lengths == {1256}
    covered = [len(consumer_range(n, 8, r, 8, w, train=True)) for r in range(8) for w in range(8)]
    assert sum(covered) == n - n % 8 and max(covered) - min(covered) <= 1
