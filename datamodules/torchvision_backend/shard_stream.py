"""An IterableDataset over WebDataset shards: seeded shuffling, exact rank/worker splitting, batching."""

from __future__ import annotations

import itertools
import math
import random
from typing import Callable, Iterator, Optional

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from datamodules.shards.format import MAX_IMAGE_PIXELS
from datamodules.torchvision_backend.batch import BatchWriter
from datamodules.torchvision_backend.decode import decode_sample
from datamodules.torchvision_backend.indexed_tar import indexed_samples


def _raise_with_shard(exn: Exception):
    raise RuntimeError(
        f"cannot read shard: {exn}. The shard may be truncated; re-create it with `classreg shard`."
    ) from exn


def consumer_range(num_samples: int, world_size: int, rank: int, workers: int, worker: int, train: bool) -> range:
    """The positions (in the epoch's shard order) that one (rank, loader worker) reads.

    Each rank gets a contiguous block and splits it between its workers as evenly as possible. Training gives
    every rank floor(N / world_size) samples (the last N mod world_size, at most world_size - 1, sit out the
    epoch), so that all ranks take the same number of steps; evaluation gives every sample to exactly one rank.
    """
    if train:
        per_rank = num_samples // world_size
        first, size = rank * per_rank, per_rank
    else:
        base, extra = divmod(num_samples, world_size)
        first, size = rank * base + min(rank, extra), base + (rank < extra)
    base, extra = divmod(size, workers)
    return range(first + worker * base + min(worker, extra), first + (worker + 1) * base + min(worker + 1, extra))


class ShardStream(IterableDataset):
    """Yields (images, labels) batches.

    Every (rank, worker) consumer reads a disjoint contiguous part of the split (``consumer_range``), skipping the
    shards outside it, so each shard is read about once per epoch. Training ranks all get the same number of
    samples, split the same way between their workers, so every rank yields ``len()`` batches and DDP's gradient
    all-reduces stay in step. Shuffling is seeded by (seed, epoch) only, never by process RNG state, so every
    rank and worker agrees on the shard order, runs are reproducible, and each epoch is ordered differently.
    """

    def __init__(
        self,
        urls: list[str],
        shard_sizes: list[int],
        transform: Callable,
        batch_size: int,
        train: bool,
        num_classes: int,
        shuffle_buffer: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        epoch: int = 0,
        keys: bool = False,
        max_pixels: int = MAX_IMAGE_PIXELS,
        index_paths: Optional[list[Optional[str]]] = None,
    ):
        self.num_classes, self.max_pixels = num_classes, max_pixels  # every label and image is checked against them
        self.keys = keys  # also yield each batch's sample keys (a list of str), third
        # a shard with an index file is read through it (indexed_tar.py), one without by walking the tar
        self.shards = list(zip(urls, shard_sizes, index_paths or [None] * len(urls), strict=True))
        self.transform = transform
        self.num_samples = sum(shard_sizes)
        self.batch_size, self.train, self.shuffle_buffer = batch_size, train, shuffle_buffer
        self.rank, self.world_size, self.num_workers = rank, world_size, max(1, num_workers)
        self.seed, self.epoch = seed, epoch

    def _range(self, worker: int) -> range:
        return consumer_range(self.num_samples, self.world_size, self.rank, self.num_workers, worker, self.train)

    def __len__(self) -> int:
        return sum(math.ceil(len(self._range(w)) / self.batch_size) for w in range(self.num_workers))

    def _read(self, part: range) -> Iterator[dict]:
        shards = list(self.shards)
        if self.train:
            random.Random(f"{self.seed}-{self.epoch}").shuffle(shards)  # same order in every consumer
        offset = 0
        for url, size, index in shards:
            lo, hi = max(part.start, offset) - offset, min(part.stop, offset + size) - offset
            offset += size
            if lo >= hi:
                continue
            if index:
                samples = indexed_samples(url, index, size, lo, hi)
            else:
                samples = tarfile_samples([{"url": url}], handler=_raise_with_shard)
            read = lo
            try:
                for sample in samples if index else itertools.islice(samples, lo, hi):
                    read += 1
                    yield sample
            finally:
                samples.close()
            if read < hi:
                raise RuntimeError(
                    f"shard '{url}' ends before the {size} samples manifest.json records: it is truncated or was "
                    "changed. Re-create the shards with `classreg shard`."
                )

    def _samples(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != self.num_workers:
            raise RuntimeError(f"a ShardStream split for {self.num_workers} DataLoader workers is read by {workers}")
        stream = self._read(self._range(worker))
        if self.train and self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank * self.num_workers + worker}")
            stream = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(stream)
        return stream

    def __iter__(self):
        batch = BatchWriter(self.transform, self.batch_size)
        for sample in self._samples():
            image, label = decode_sample(sample, self.num_classes, self.max_pixels)
            batch.add(image, label, sample["__key__"])
            if len(batch) == self.batch_size:
                yield self._batch(*batch.take())
        if len(batch):
            yield self._batch(*batch.take())

    def _batch(self, images, labels, keys):
        return (images, labels, keys) if self.keys else (images, labels)
