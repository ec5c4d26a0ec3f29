"""A shard sample -> (image, label) for the torchvision backend: the image a uint8 RGB tensor (3, H, W).

The label is checked against the classes and the image's header against ``data.max_pixels`` before any pixel
is decoded. TorchCodec decodes JPEG, PNG, WebP and GIF (libjpeg-turbo for JPEG; torchvision.io's decoders are
deprecated since torchvision 0.29 in its favour); PIL decodes what TorchCodec cannot (BMP, TIFF, a file it
rejects). Every image comes out with three channels, as PIL's ``convert("RGB")`` gives them: grayscale
replicated, CMYK converted, palettes expanded, alpha dropped; 16-bit PNGs are scaled to 8 bits, an animated
image gives its first frame, and the EXIF orientation is applied, as DALI's decoders do.
"""

from __future__ import annotations

import functools
import struct
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from PIL import Image, ImageOps

from datamodules.shards.format import IMAGE_KEYS, LABEL_EXT, MAX_IMAGE_PIXELS, ImageTooLargeError, ShardError
from datamodules.shards.images import open_image


class CorruptSampleError(RuntimeError):
    pass


class SampleError(ShardError):
    """A sample a run must not use (a label outside the classes, an image above ``data.max_pixels``).

    Raised in a DataLoader worker, torch raises it again in the main process as ``SampleError("Caught SampleError
    in DataLoader worker process 0. Original Traceback ... SampleError: <message>")``: only the message is kept,
    so that the command line still prints one line."""

    def __init__(self, message: str):
        super().__init__(message.rsplit(f"{SampleError.__name__}: ", 1)[-1].strip())


def sample_label(sample: dict, num_classes: int) -> int:
    """The sample's class index; SampleError unless its text and int32 labels agree and lie in the classes."""
    where = f"sample '{sample.get('__key__')}' in shard '{sample.get('__url__')}'"
    fix = f"`classreg shard --check {Path(str(sample.get('__url__'))).parent}` lists the bad shards"
    try:
        label = int(sample["cls"])
    except (KeyError, ValueError):
        raise SampleError(
            f"{where} has no integer label (cls): the shard was not written by `classreg shard`; {fix}"
        ) from None
    if LABEL_EXT in sample and sample[LABEL_EXT] != struct.pack("<i", label):
        raise SampleError(f"{where}: its cls label {label} and its {LABEL_EXT} label disagree; {fix}")
    if not 0 <= label < num_classes:
        raise SampleError(
            f"{where} has label {label}, outside the {num_classes} classes of classes.json (0..{num_classes - 1}); "
            + fix
        )
    return label


def decode_sample(sample: dict, num_classes: int, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[torch.Tensor, int]:
    """The sample's image and label: SampleError for a label or size a run must not use, CorruptSampleError
    (naming the sample and its shard) for an image that does not decode."""
    label = sample_label(sample, num_classes)
    try:
        key = next(k for k in IMAGE_KEYS if k in sample)
        return decode_image(sample[key], max_pixels), label
    except ImageTooLargeError as e:
        raise SampleError(
            f"sample '{sample.get('__key__')}' in shard '{sample.get('__url__')}': {e} (data.max_pixels); raise "
            "data.max_pixels if you trust these shards"
        ) from None
    except Exception as e:
        raise CorruptSampleError(
            f"cannot decode sample '{sample.get('__key__')}' in shard '{sample.get('__url__')}': "
            f"{type(e).__name__}: {e}. Re-create the shards with `classreg shard` (it skips and lists corrupt images)."
        ) from None


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Encoded image bytes -> uint8 RGB tensor (3, H, W); ImageTooLargeError above ``max_pixels``."""
    with open_image(data, max_pixels, "the image") as im:  # the header only
        decode = _torchcodec()
        if decode is not None:
            try:
                image = decode(data, mode="RGB")
                return image[0] if image.ndim == 4 else image  # animated GIF/WebP: (frames, 3, H, W)
            except (RuntimeError, ValueError):
                pass  # a format TorchCodec does not read, or a file it refuses: PIL decides (and names the error)
        return _pil_to_rgb_tensor(im)


def _pil_to_rgb_tensor(im: Image.Image) -> torch.Tensor:
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(ImageOps.exif_transpose(im).convert("RGB"))


@functools.cache
def _torchcodec() -> Optional[Callable]:
    """TorchCodec's ``decode_image``, or None (with a warning) where it cannot be loaded: a TorchCodec built for
    another torch release fails at import, and the backend then decodes everything with PIL."""
    try:
        from torchcodec.decoders import decode_image as decode
    except Exception as e:  # ImportError, or RuntimeError/OSError from its compiled libraries
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        warnings.warn(
            f"TorchCodec cannot be loaded ({type(e).__name__}: {reason}); the torchvision backend decodes images "
            f"with PIL instead, which is slower. Install the TorchCodec release built for torch {torch.__version__} "
            "(its compatibility table is in TorchCodec's README), or use data.backend=dali",
            stacklevel=2,
        )
        return None
    return decode
