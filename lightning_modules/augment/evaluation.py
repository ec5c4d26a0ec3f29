"""The evaluation transform, whatever the training policy, on both backends: resize the short side to
``eval_resize(image_size)``, centre-crop ``image_size`` (the datamodule normalizes the batches on the device);
and the normalization of one image, for per-image use."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

# Standard ImageNet evaluation: resize the short side to size/0.875, then centre-crop.
EVAL_CROP_RATIO = 0.875


def eval_resize(image_size: int) -> int:
    """Short side before the centre crop: image_size / 0.875, or image_size itself for small images (<= 64 px)."""
    return image_size if image_size <= 64 else int(round(image_size / EVAL_CROP_RATIO))


def to_float_normalized(mean, std) -> v2.Compose:
    """One image (uint8 tensor or PIL) -> normalized float32 tensor: the arithmetic the datamodules apply to their
    batches on the device (datamodules/normalize.py)."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_resize_crop(image_size: int) -> v2.Compose:
    """The evaluation transform of the loaders: image -> uint8 image of image_size x image_size."""
    return v2.Compose([v2.Resize(eval_resize(image_size), antialias=True), v2.CenterCrop(image_size)])


def eval_transform(image_size: int, mean, std) -> v2.Compose:
    """One image -> the normalized float tensor a model is evaluated on (the loaders' pixels, normalized)."""
    return v2.Compose([*eval_resize_crop(image_size).transforms, to_float_normalized(mean, std)])


def eval_dali(encoded, image_size: int, device: str):
    """``eval_resize_crop`` on DALI operators (inside a pipeline definition): uint8 CHW images."""
    from nvidia.dali import fn, types

    images = fn.decoders.image(encoded, device=device, output_type=types.RGB)
    images = fn.resize(images, resize_shorter=float(eval_resize(image_size)))
    return fn.crop_mirror_normalize(
        images,
        crop=(image_size, image_size),
        dtype=types.UINT8,
        output_layout="CHW",
    )
