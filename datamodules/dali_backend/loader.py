"""An iterable of exact epochs over one DALI pipeline (see datamodules/dali_backend/datamodule.py)."""

from __future__ import annotations

import math
import re

import torch

from datamodules.dali_backend.pipeline import OUTPUTS, READER, check_batch, decode_keys
from datamodules.shards.format import ShardError

_END = object()


def batches_per_epoch(num_samples: int, world_size: int, batch_size: int) -> int:
    """Batches every rank yields per epoch: those of the smallest DALI shard (floor(N / world) samples)."""
    return max(1, math.ceil((num_samples // world_size) / batch_size))


def _explain(error: RuntimeError, where: str = "the shards") -> Exception:
    """DALI's decode error names the sample as 'shard.tar:offset:key.ext': turn it into a clear message."""
    found = re.search(r"Failed to decode sample #\d+ : (\S+?):(\d+):(\S+)", str(error))
    if not found and "peek_image_shape" in str(error):
        return ShardError(
            f"{where} hold a sample whose image has no readable header (not an image): `classreg shard --check` "
            "names its shard; re-create the shards with `classreg shard`"
        )
    if not found:
        return error
    shard, offset, member = found.groups()
    return ShardError(
        f"cannot decode image '{member}' (byte {offset}) in shard '{shard}'. Re-create the shards with "
        "`classreg shard --verify` (it decodes every image, skips and lists corrupt ones), or train "
        "with data.backend=torchvision"
    )


class DaliLoader:
    """An iterable of (images, labels) batches over one DALI pipeline, ``len()`` batches per epoch.

    ``with_keys``: (images, labels, keys) batches, keys being the samples' WebDataset keys (the pipeline must be
    built ``with_keys`` too: its last output).

    It lives for the whole fit (Lightning asks for the loader every epoch; the pipeline and its shuffle state
    are kept). If Lightning stops early (``limit_*_batches``), a training epoch continues where it stopped the
    next time, and an evaluation epoch is finished first, so each validation starts at the first sample.
    """

    def __init__(
        self,
        pipe,
        steps: int,
        restart: bool,
        with_keys: bool = False,
        num_classes: int = 0,
        max_pixels: int = 0,
        where: str = "the shards",
    ):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        self.iterator = DALIGenericIterator(
            [pipe],
            [*OUTPUTS, *(["keys"] if with_keys else [])],
            reader_name=READER,
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=True,
            prepare_first_batch=False,
        )
        self.steps, self.restart, self.with_keys = steps, restart, with_keys
        self.num_classes, self.max_pixels, self.where = num_classes, max_pixels, where  # what check_batch refuses
        self._stream = self._epochs()
        self._mid_epoch = False

    def __len__(self) -> int:
        return self.steps

    def _dali_batches(self):
        try:
            for out in self.iterator:
                labels = out[0]["labels"].view(-1).long()
                check_batch(labels, out[0]["oversized"], self.num_classes, self.max_pixels, self.where)
                keys = (decode_keys(out[0]["keys"]),) if self.with_keys else ()
                yield (out[0]["images"], labels, *keys)
        except RuntimeError as e:
            raise _explain(e, self.where) from None

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
