"""``data.backend=dali``: NVIDIA DALI decodes and augments `classreg shard` output.

Epochs are exact under DDP: rank r reads DALI shard r of world_size (every sample once per epoch across
ranks, for training and validation), the reader pads each rank's part to whole batches and the iterator
drops that padding (``reader_name`` + ``LastBatchPolicy.PARTIAL``), and every rank yields the same number
of batches (a rank with one more sample puts it into its last batch), so DDP collectives stay in step.
"""

from __future__ import annotations

from pytorch_lightning.utilities import rank_zero_info

from datamodules.base import ShardsDataModule
from datamodules.dali_backend.loader import DaliLoader, batches_per_epoch
from datamodules.dali_backend.pipeline import build_pipeline, decode_device, require_dali, shard_files
from datamodules.shards.format import ShardError


class DaliDataModule(ShardsDataModule):
    def __init__(self, cfg, transforms, seed: int = 0, eval_keys: bool = False, tuning: dict | None = None):
        super().__init__(cfg, transforms, seed)
        require_dali()  # which extra to install, before any work
        self.tuning = tuning  # overrides of the pipelines' performance settings (pipeline.TUNING), for benchmarks
        self.device = decode_device(cfg.decode_device)
        self.eval_keys = eval_keys  # evaluation batches also carry the sample keys (for ImageNet ReaL labels)
        self._loaders: dict[tuple[str, bool], DaliLoader] = {}

    def build_transforms(self) -> None:
        # policies without a DALI implementation and unknown class names fail here, before any work
        self.train_graph = self.transforms.dali_train(self.class_names)
        self.eval_graph = self.transforms.dali_eval()

    def loader(
        self, split: str, train: bool, rank: int = 0, world_size: int = 1, local_rank: int = 0, with_keys: bool = False
    ) -> DaliLoader:
        info = self.split_info(split)
        paths, index_paths = shard_files(self.root, info, split)
        if info["samples"] < world_size:
            raise ShardError(f"the {split} split has {info['samples']} samples, fewer than the {world_size} processes")
        threads = max(1, self.cfg.num_workers)
        rank_zero_info(
            f"DALI {split} pipeline: decoding on {self.device}"
            f"{' (GPU nvJPEG)' if self.device == 'mixed' else ' (no CUDA device)' if self.device == 'cpu' else ''}"
            f", {threads} threads per process, {world_size} process(es)"
        )
        pipe = build_pipeline(
            paths,
            index_paths,
            train=train,
            batch_size=self.cfg.batch_size,
            num_threads=threads,
            device=self.device,
            device_id=local_rank if self.device == "mixed" else None,
            shard_id=rank,
            num_shards=world_size,
            seed=(self.seed * 1_000_003 + rank * 7919 + (0 if train else 1)) % 2**31,
            graph=self.train_graph if train else self.eval_graph,
            shuffle_buffer=self.cfg.shuffle_buffer if train else 0,
            with_keys=with_keys,
            max_pixels=self.cfg.max_pixels,
            tuning=self.tuning,
        )
        return DaliLoader(
            pipe,
            batches_per_epoch(info["samples"], world_size, self.cfg.batch_size),
            restart=not train,
            with_keys=with_keys,
            num_classes=self.num_classes,
            max_pixels=self.cfg.max_pixels,
            where=f"the {split} shards in '{self.root}'",
        )

    def _cached(self, split: str, train: bool) -> DaliLoader:
        if (split, train) not in self._loaders:
            rank, world, local, _ = self.placement()
            keys = self.eval_keys and not train
            self._loaders[split, train] = self.loader(split, train, rank, world, local, with_keys=keys)
        return self._loaders[split, train]

    def train_dataloader(self) -> DaliLoader:
        return self._cached(self.cfg.train_split, train=True)

    def val_dataloader(self) -> DaliLoader:
        return self._cached(self.val_split, train=False)

    def test_dataloader(self) -> DaliLoader:
        return self._cached(self.test_split, train=False)
