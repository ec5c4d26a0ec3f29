"""An IterableDataset over WebDataset shards: seeded shuffling, exact rank/worker splitting, batching."""

from __future__ import annotations

import io
import math
import random
from typing import Callable, Iterator

import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from datamodules.shards.format import IMAGE_KEYS


class CorruptSampleError(RuntimeError):
    pass


def decode_sample(sample: dict) -> tuple[Image.Image, int]:
    try:
        key = next(k for k in IMAGE_KEYS if k in sample)
        with Image.open(io.BytesIO(sample[key])) as im:
            image = im.convert("RGB")
        return image, int(sample["cls"])
    except Exception as e:
        raise CorruptSampleError(
            f"cannot decode sample '{sample.get('__key__')}' in shard '{sample.get('__url__')}': "
            f"{type(e).__name__}: {e}. Re-create the shards with `classreg shard` (it skips and lists corrupt images)."
        ) from None


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

    def _batch(self, images, labels, keys):
        return (
            (torch.stack(images), torch.tensor(labels), keys)
            if self.keys
            else (torch.stack(images), torch.tensor(labels))
        )

    def __iter__(self):
        images, labels, keys = [], [], []
        with_label = getattr(self.transform, "uses_label", False)  # class-conditional augmentation
        for sample in self._samples():
            image, label = decode_sample(sample)
            images.append(self.transform(image, label) if with_label else self.transform(image))
            labels.append(label)
            keys.append(sample["__key__"])
            if len(images) == self.batch_size:
                yield self._batch(images, labels, keys)
                images, labels, keys = [], [], []
        if images:
            yield self._batch(images, labels, keys)
