"""An IterableDataset over WebDataset shards: seeded shuffling, exact rank/worker splitting, batching."""

from __future__ import annotations

import math
import random
from typing import Callable, Iterator

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from datamodules.torchvision_backend.batch import BatchWriter
from datamodules.torchvision_backend.decode import CorruptSampleError, decode_sample

__all__ = ["CorruptSampleError", "ShardStream", "decode_sample"]


def _raise_with_shard(exn: Exception):
    raise RuntimeError(
        f"cannot read shard: {exn}. The shard may be truncated; re-create it with `classreg shard`."
    ) from exn


class ShardStream(IterableDataset):
    """Yields (images, labels) batches.

    Every (rank, worker) consumer gets a disjoint part of the data. Training splits by shard when there
    are at least as many shards as consumers (cheap: each shard is read once), else by sample; evaluation
    always splits by sample so that every sample is seen exactly once across ranks.
    Shuffling is seeded by (seed, epoch) only, never by process RNG state, so every rank and worker agrees
    on the shard order, runs are reproducible, and each epoch is ordered differently.
    """

    def __init__(
        self,
        urls: list[str],
        num_samples: int,
        transform: Callable,
        batch_size: int,
        train: bool,
        shuffle_buffer: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        epoch: int = 0,
        keys: bool = False,
    ):
        self.keys = keys  # also yield each batch's sample keys (a list of str), third
        self.urls, self.num_samples, self.transform = list(urls), num_samples, transform
        self.batch_size, self.train, self.shuffle_buffer = batch_size, train, shuffle_buffer
        self.rank, self.world_size, self.num_workers = rank, world_size, max(1, num_workers)
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        per_rank = math.ceil(self.num_samples / self.world_size)
        per_worker = math.ceil(per_rank / self.num_workers)
        return self.num_workers * math.ceil(per_worker / self.batch_size)

    def _samples(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        consumer, consumers = self.rank * workers + worker, self.world_size * workers
        urls = list(self.urls)
        if self.train:
            random.Random(f"{self.seed}-{self.epoch}").shuffle(urls)  # same order in every consumer, then split
        by_shard = self.train and len(urls) >= consumers
        if by_shard:
            urls = urls[consumer::consumers]
        stream = tarfile_samples(({"url": u} for u in urls), handler=_raise_with_shard)
        if not by_shard:
            stream = (s for i, s in enumerate(stream) if i % consumers == consumer)
        if self.train and self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}-{self.epoch}-{consumer}")
            stream = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(stream)
        return stream

    def __iter__(self):
        batch = BatchWriter(self.transform, self.batch_size)
        for sample in self._samples():
            image, label = decode_sample(sample)
            batch.add(image, label, sample["__key__"])
            if len(batch) == self.batch_size:
                yield self._batch(*batch.take())
        if len(batch):
            yield self._batch(*batch.take())

    def _batch(self, images, labels, keys):
        return (images, labels, keys) if self.keys else (images, labels)
