"""A shard sample -> (image, label) for the torchvision backend: the image a uint8 RGB tensor (3, H, W).

TorchCodec decodes JPEG, PNG, WebP, GIF, AVIF and HEIC (libjpeg-turbo for JPEG, the code torchvision.io's
decoders had: those are deprecated since torchvision 0.29); PIL decodes what TorchCodec cannot (BMP, TIFF, a
file it rejects). Every image comes out with three channels, as PIL's ``convert("RGB")`` gave them: grayscale
replicated, CMYK converted, palettes expanded, alpha dropped; 16-bit PNGs are scaled to 8 bits (PIL clipped
them at 255), an animated image gives its first frame, and the EXIF orientation is applied, as DALI's decoders
do.
"""

from __future__ import annotations

import functools
import io
import warnings
from typing import Callable, Optional

import torch
from PIL import Image, ImageOps

from datamodules.shards.format import IMAGE_KEYS


class CorruptSampleError(RuntimeError):
    pass


def decode_sample(sample: dict) -> tuple[torch.Tensor, int]:
    """The sample's image and label; a ``CorruptSampleError`` naming the sample and its shard if either is bad.

    Checks of the label or of the image's header belong in ``sample_label`` and ``decode_image``."""
    try:
        key = next(k for k in IMAGE_KEYS if k in sample)
        label = sample_label(sample)
        return decode_image(sample[key]), label
    except Exception as e:
        raise CorruptSampleError(
            f"cannot decode sample '{sample.get('__key__')}' in shard '{sample.get('__url__')}': "
            f"{type(e).__name__}: {e}. Re-create the shards with `classreg shard` (it skips and lists corrupt images)."
        ) from None


def sample_label(sample: dict) -> int:
    return int(sample["cls"])


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> uint8 RGB tensor (3, H, W)."""
    decode = _torchcodec()
    if decode is not None:
        try:
            image = decode(data, mode="RGB")
            return image[0] if image.ndim == 4 else image  # animated GIF/WebP: (frames, 3, H, W)
        except (RuntimeError, ValueError):
            pass  # a format TorchCodec does not read, or a file it refuses: PIL decides (and names the error)
    return _decode_with_pil(data)


def _decode_with_pil(data: bytes) -> torch.Tensor:
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(io.BytesIO(data)) as im:
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
