"""DALI pipelines over `classreg shard` output: readers.webdataset with the shards' index files, rank-sharded.

Nothing the shards hold reaches a decoder or the model unchecked: an image whose header says it has more than
``max_pixels`` pixels is replaced by a tiny placeholder before decoding and flagged (``oversized``), and the
loader refuses a batch with a flagged image or a label outside the classes (``check_batch``).
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Callable, Optional

from datamodules.configkit import ConfigError
from datamodules.shards.format import IMAGE_KEYS, LABEL_EXT, MAX_IMAGE_PIXELS, ShardError

READER = "shards"  # the reader's name: the iterator reads epoch sizes and shard splits from it
# Performance settings of every pipeline (measured with bench/input_pipeline.py --dali-variant; figures in
# docs/development.md). ``threads``: DALI threads per process, None for data.num_workers.
TUNING = {"threads": None, "prefetch_queue_depth": 2, "read_ahead": False, "dont_use_mmap": False}
IMAGE_EXTS = ";".join(IMAGE_KEYS)
OUTPUTS = ["images", "labels", "oversized"]
DALI_EXTRAS = (
    'pip install "classreg[dali-cuda12]" (CUDA 12 drivers) or "classreg[dali-cuda13]" (CUDA 13), '
    'from a clone pip install ".[dali-cuda12]"'
)


def require_dali() -> None:
    """A ConfigError saying which extra to install when NVIDIA DALI cannot be imported."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"data.backend=dali needs NVIDIA DALI, which cannot be imported here ({e}): {DALI_EXTRAS}; "
            "or use data.backend=torchvision"
        ) from None


@functools.cache
def _placeholder():
    """An 8 x 8 PNG decoded in place of a refused image (the batch is refused before the model sees it)."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _refuse_oversized(encoded, max_pixels: int):
    """(encoded, oversized): an image whose header has more than ``max_pixels`` pixels is replaced by the
    placeholder, before any decoder sees it (per sample: the encoded bytes, cut to none or all of them, then the
    placeholder, cut to all or none of it)."""
    from nvidia.dali import fn, types

    shape = fn.peek_image_shape(encoded, dtype=types.INT64)
    oversized = shape[0] * shape[1] > max_pixels
    keep = fn.reshape(fn.cast(oversized == 0, dtype=types.FLOAT), shape=[1])
    placeholder = types.Constant(_placeholder(), dtype=types.UINT8)
    kept = fn.slice(encoded, rel_start=[0.0], rel_shape=keep, axes=[0])
    instead = fn.slice(placeholder, rel_start=[0.0], rel_shape=1.0 - keep, axes=[0])
    return fn.cat(kept, instead, axis=0), oversized


def check_batch(labels, oversized, num_classes: int, max_pixels: int, where: str) -> None:
    """ShardError if a batch holds a label outside ``0 .. num_classes - 1`` or an image above ``max_pixels``
    (``labels`` and ``oversized``: CPU tensors, from the pipeline's outputs)."""
    if not len(labels):
        return
    fix = "`classreg shard --check` lists the bad shards"
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ShardError(
            f"{where} hold the label {low if low < 0 else high}, outside the {num_classes} classes of classes.json "
            f"(0..{num_classes - 1}): they were changed or not written by `classreg shard`; {fix}"
        )
    if bool(oversized.any()):
        raise ShardError(
            f"{where} hold an image of more than data.max_pixels={max_pixels:,} pixels (refused before decoding); "
            f"raise data.max_pixels if you trust them; {fix}"
        )


def decode_device(requested: str = "auto") -> str:
    """``mixed`` (nvJPEG on the GPU) when CUDA is present, else ``cpu``; ``requested`` forces one."""
    if requested != "auto":
        return requested
    import torch

    return "mixed" if torch.cuda.is_available() else "cpu"


def shard_files(root: Path, split_info: dict, split: str) -> tuple[list[str], list[str]]:
    """Paths of a split's shards and of their index files, in manifest order; a missing, truncated or
    unindexed shard is a ShardError naming it (checked by size against the manifest, before DALI reads it)."""
    paths, index_paths = [], []
    for shard in split_info["shards"]:
        tar = root / shard["file"]
        if "index" not in shard:
            raise ShardError(
                f"the {split} shards in '{root}' have no DALI index files (written by an older "
                "`classreg shard`); re-create them with `classreg shard SRC OUT --overwrite`, or use "
                "data.backend=torchvision"
            )
        if not tar.is_file():
            raise ShardError(f"shard '{tar}' listed in {root / 'manifest.json'} is missing")
        size = tar.stat().st_size
        if size != shard["bytes"]:
            raise ShardError(
                f"shard '{tar}' is {size} bytes but manifest.json records {shard['bytes']}: it is "
                "truncated or was changed. Re-create the shards with `classreg shard`"
            )
        if not (root / shard["index"]).is_file():
            raise ShardError(
                f"index file '{root / shard['index']}' of shard '{tar}' is missing; re-create it with "
                f"`wds2idx {tar} {root / shard['index']}`"
            )
        paths.append(str(tar))
        index_paths.append(str(root / shard["index"]))
    return paths, index_paths


def decode_keys(keys) -> list[str]:
    """The WebDataset keys of a batch's ``keys`` output (uint8 rows of ``shard.tar:offset:key.cls``, zero-padded)."""
    infos = (bytes(row).rstrip(b"\0").decode() for row in keys.tolist())
    return [info.rsplit(":", 2)[2].rsplit(".", 1)[0] for info in infos]


def build_pipeline(
    paths: list[str],
    index_paths: list[str],
    *,
    train: bool,
    batch_size: int,
    num_threads: int,
    device: str,
    device_id: Optional[int],
    shard_id: int,
    num_shards: int,
    seed: int,
    graph: Callable,
    shuffle_buffer: int = 0,
    with_keys: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
    tuning: Optional[dict] = None,
):
    """The training (augmented, shuffled) or evaluation pipeline of one rank.

    ``graph`` builds the decoding and augmentation operators: ``graph(encoded, labels, device)`` for training,
    ``graph(encoded, device)`` for evaluation (lightning_modules/augment/image_transforms.py provides both).

    Outputs ``images`` (float CHW, normalized), ``labels`` (int32, shape (1,)) and ``oversized`` (bool: the image
    had more than ``max_pixels`` pixels and was not decoded; see ``check_batch``); ``with_keys`` adds ``keys``:
    each sample's DALI source info (``shard.tar:offset:key.cls``, the public ``source_info`` property) as uint8,
    zero-padded to the longest in the batch (see ``decode_keys``). Every rank reads the
    contiguous part ``shard_id`` of ``num_shards`` of the samples (training moves on to the next part every
    epoch, evaluation keeps its part); with ``pad_last_batch`` the reader pads it to whole batches, and the
    iterator (``LastBatchPolicy.PARTIAL``) drops the padding again. ``tuning`` overrides entries of ``TUNING``
    (the benchmark's variants).
    """
    from nvidia.dali import fn, pipeline_def, types

    # DALI versions that read it refuse larger decoded images themselves (bytes of the RGB output)
    os.environ.setdefault("DALI_MAX_IMAGE_SIZE", str(3 * max_pixels))

    settings = {**TUNING, **(tuning or {})}
    unknown = sorted(set(settings) - set(TUNING))
    if unknown:
        raise ValueError(f"unknown DALI tuning settings {unknown}; known: {sorted(TUNING)}")

    @pipeline_def(
        batch_size=batch_size,
        num_threads=settings["threads"] or num_threads,
        device_id=device_id,
        seed=seed,
        prefetch_queue_depth=settings["prefetch_queue_depth"],
    )
    def pipeline():
        encoded, labels = fn.readers.webdataset(
            paths=paths,
            index_paths=index_paths,
            ext=[IMAGE_EXTS, LABEL_EXT],
            dtypes=[types.UINT8, types.INT32],
            missing_component_behavior="error",
            shard_id=shard_id,
            num_shards=num_shards,
            random_shuffle=train and shuffle_buffer > 1,
            initial_fill=max(shuffle_buffer, 1),
            pad_last_batch=True,
            stick_to_shard=not train,
            read_ahead=settings["read_ahead"],
            dont_use_mmap=settings["dont_use_mmap"],
            name=READER,
        )
        encoded, oversized = _refuse_oversized(encoded, max_pixels)
        images = graph(encoded, labels, device) if train else graph(encoded, device)
        if not with_keys:
            return images, labels, oversized
        return images, labels, oversized, fn.pad(fn.get_property(labels, key="source_info"), fill_value=0)

    pipe = pipeline()
    pipe.build()
    return pipe
