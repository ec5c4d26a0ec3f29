"""LightningDataModule for ``data.backend=dali``: DALI decodes and augments `classreg shard` output.

Epochs are exact under DDP: rank r reads DALI shard r of world_size (every sample once per epoch across
ranks, for training and validation), the reader pads each rank's part to whole batches and the iterator
drops that padding (``reader_name`` + ``LastBatchPolicy.PARTIAL``), and every rank yields the same number
of batches (a rank with one more sample puts it into its last batch), so DDP collectives stay in step.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from datamodules.dali_pipeline import READER, build_pipeline, decode_device, shard_files
from datamodules.shard_writer import ShardError, open_shards
from launch.config import AugConfig, DataConfig
from lightning_modules.augment.dali import check_dali_support
from lightning_modules.augment.transform import class_index

_END = object()


def batches_per_epoch(num_samples: int, world_size: int, batch_size: int) -> int:
    """Batches every rank yields per epoch: those of the smallest DALI shard (floor(N / world) samples)."""
    return max(1, math.ceil((num_samples // world_size) / batch_size))


def _explain(error: RuntimeError) -> Exception:
    """DALI's decode error names the sample as 'shard.tar:offset:key.ext': turn it into a clear message."""
    found = re.search(r"Failed to decode sample #\d+ : (\S+?):(\d+):(\S+)", str(error))
    if not found:
        return error
    shard, offset, member = found.groups()
    return ShardError(f"cannot decode image '{member}' (byte {offset}) in shard '{shard}'. Re-create the shards with "
                      "`classreg shard --verify` (it decodes every image, skips and lists corrupt ones), or train "
                      "with data.backend=torchvision")


def _keyed_iterator_class():
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    class KeyedIterator(DALIGenericIterator):
        """Also keeps the sample keys of the latest batch, from DALI's source info ('shard.tar:offset:key.lbl')."""

        last_keys: list[str] = []

        def _get_outputs(self):
            outputs = super()._get_outputs()
            labels = outputs[0][1]
            self.last_keys = [labels[i].source_info().rsplit(":", 2)[2].rsplit(".", 1)[0] for i in range(len(labels))]
            return outputs

    return KeyedIterator


class DaliLoader:
    """An iterable of (images, labels) batches over one DALI pipeline, ``len()`` batches per epoch.

    ``with_keys``: (images, labels, keys) batches, keys being the samples' WebDataset keys.

    It lives for the whole fit (Lightning asks for the loader every epoch; the pipeline and its shuffle state
    are kept). If Lightning stops early (``limit_*_batches``), a training epoch continues where it stopped the
    next time, and an evaluation epoch is finished first, so each validation starts at the first sample.
    """

    def __init__(self, pipe, steps: int, restart: bool, with_keys: bool = False):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        iterator_class = _keyed_iterator_class() if with_keys else DALIGenericIterator
        self.iterator = iterator_class([pipe], ["images", "labels"], reader_name=READER,
                                       last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True,
                                       prepare_first_batch=False)
        self.steps, self.restart, self.with_keys = steps, restart, with_keys
        self._stream = self._epochs()
        self._mid_epoch = False

    def __len__(self) -> int:
        return self.steps

    def _dali_batches(self):
        try:
            for out in self.iterator:
                labels = out[0]["labels"].view(-1).long()
                keys = (self.iterator.last_keys[: len(labels)],) if self.with_keys else ()
                yield (out[0]["images"], labels, *keys)
        except RuntimeError as e:
            raise _explain(e) from None

    def _epochs(self):
        while True:
            produced, tail = 0, []
            for batch in self._dali_batches():
                if not len(batch[1]):
                    continue  # a batch of padding only
                if produced < self.steps - 1:
                    produced += 1
                    yield batch
                else:  # the last batch, plus the one extra sample a larger DALI shard may have
                    tail.append(tuple(x.clone() if torch.is_tensor(x) else x for x in batch))
            if tail:
                yield tuple(torch.cat(part) if torch.is_tensor(part[0]) else sum(part, []) for part in zip(*tail))
            yield _END

    def __iter__(self):
        if self._mid_epoch and self.restart:
            for batch in self._stream:
                if batch is _END:
                    break
        self._mid_epoch = True
        produced = 0
        for batch in self._stream:
            if batch is _END:  # (only if a rank had fewer batches than len(); cannot happen, see batches_per_epoch)
                break
            produced += 1
            if produced == self.steps:  # Lightning stops after len() batches: close the epoch before yielding
                if next(self._stream) is not _END:
                    raise RuntimeError("DaliLoader: a rank produced more batches than len(); please report this")
                self._mid_epoch = False
                yield batch
                return
            yield batch
        self._mid_epoch = False


class DaliDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DataConfig, seed: int = 0, aug: Optional[AugConfig] = None):
        super().__init__()
        self.cfg, self.seed, self.aug = cfg, seed, aug or AugConfig()
        self.root = Path(cfg.root)
        self.manifest, self.class_names, self.val_split = open_shards(cfg)
        check_dali_support(self.aug)
        for key in self.aug.class_overrides:  # class names are checked before any work, as on torchvision
            class_index(key, self.class_names)
        self.device = decode_device(cfg.decode_device)
        self._loaders: dict[tuple[str, bool], DaliLoader] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_size(self, split: str) -> int:
        return self.manifest["splits"][split]["samples"]

    def loader(self, split: str, train: bool, rank: int = 0, world_size: int = 1, local_rank: int = 0,
               with_keys: bool = False) -> DaliLoader:
        info = self.manifest["splits"][split]
        paths, index_paths = shard_files(self.root, info, split)
        if info["samples"] < world_size:
            raise ShardError(f"the {split} split has {info['samples']} samples, fewer than the {world_size} processes")
        threads = max(1, self.cfg.num_workers)
        rank_zero_info(f"DALI {split} pipeline: decoding on {self.device}"
                       f"{' (GPU nvJPEG)' if self.device == 'mixed' else ' (no CUDA device)' if self.device == 'cpu' else ''}"
                       f", {threads} threads per process, {world_size} process(es)")
        pipe = build_pipeline(
            paths, index_paths, train=train, batch_size=self.cfg.batch_size, num_threads=threads,
            device=self.device, device_id=local_rank if self.device == "mixed" else None, shard_id=rank,
            num_shards=world_size, seed=(self.seed * 1_000_003 + rank * 7919 + (0 if train else 1)) % 2**31,
            image_size=self.cfg.image_size, mean=self.cfg.mean, std=self.cfg.std, aug=self.aug,
            class_names=self.class_names, shuffle_buffer=self.cfg.shuffle_buffer if train else 0)
        return DaliLoader(pipe, batches_per_epoch(info["samples"], world_size, self.cfg.batch_size), restart=not train,
                          with_keys=with_keys)

    def _cached(self, split: str, train: bool) -> DaliLoader:
        if (split, train) not in self._loaders:
            t = self.trainer
            rank, world, local = (t.global_rank, t.world_size, t.local_rank) if t else (0, 1, 0)
            self._loaders[split, train] = self.loader(split, train, rank, world, local)
        return self._loaders[split, train]

    def train_dataloader(self) -> DaliLoader:
        return self._cached(self.cfg.train_split, train=True)

    def val_dataloader(self) -> DaliLoader:
        return self._cached(self.val_split, train=False)
