"""The evaluation transform, whatever the training policy, on both backends: resize the short side to
``eval_resize(image_size)``, centre-crop ``image_size`` (the datamodule normalizes the batches on the device);
and the normalization of one image, for per-image use."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from datamodules.normalize import normalize

# Standard ImageNet evaluation: resize the short side to size/0.875, then centre-crop.
EVAL_CROP_RATIO = 0.875


def eval_resize(image_size: int) -> int:
    """Short side before the centre crop: image_size / 0.875, or image_size itself for small images (<= 64 px)."""
    return image_size if image_size <= 64 else int(round(image_size / EVAL_CROP_RATIO))


class ToNormalizedFloat:
    """One image -> float32 ``(x / 255 - mean) / std``, shape (C, H, W): a uint8 tensor (normalized as the
    datamodules normalize their batches, datamodules/normalize.py), a float tensor in [0, 1], or a PIL image."""

    def __init__(self, mean, std):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def __call__(self, image) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            image = v2.functional.pil_to_tensor(image)
        image = image.as_subclass(torch.Tensor)  # a tv_tensors.Image from a v2 transform: plain arithmetic
        if image.dtype == torch.uint8:
            return normalize(image, self.mean, self.std)
        image = v2.functional.to_dtype(image, torch.float32, scale=True)
        return v2.functional.normalize(image, self.mean, self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def to_float_normalized(mean, std) -> ToNormalizedFloat:
    return ToNormalizedFloat(mean, std)


def eval_resize_crop(image_size: int) -> v2.Compose:
    """The evaluation transform of the loaders: image -> uint8 image of image_size x image_size."""
    return v2.Compose([v2.Resize(eval_resize(image_size), antialias=True), v2.CenterCrop(image_size)])


def eval_transform(image_size: int, mean, std) -> v2.Compose:
    """One image -> the normalized float tensor a model is evaluated on (the loaders' pixels, normalized)."""
    return v2.Compose([*eval_resize_crop(image_size).transforms, ToNormalizedFloat(mean, std)])


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
