"""The evaluation transform, whatever the training policy, on both backends: resize the short side to
``eval_resize(image_size)``, centre-crop ``image_size``, normalize; and the normalization both backends'
torchvision transforms end with."""

from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

# Standard ImageNet evaluation: resize the short side to size/0.875, then centre-crop.
EVAL_CROP_RATIO = 0.875


def eval_resize(image_size: int) -> int:
    """Short side before the centre crop: image_size / 0.875, or image_size itself for small images (<= 64 px)."""
    return image_size if image_size <= 64 else int(round(image_size / EVAL_CROP_RATIO))


class ToNormalizedFloat:
    """An image -> float32 ``(x - mean) / std`` with x in [0, 1], shape (C, H, W).

    Takes a uint8 tensor (computed as ``(x - 255 mean) / (255 std)``, DALI's ``crop_mirror_normalize``), a
    float tensor in [0, 1] (what a v2 transform that converts to float gives), or a PIL image. ``out=`` writes the
    result into an existing float32 tensor: the torchvision backend passes the sample's slot of its batch.
    """

    def __init__(self, mean, std):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        mean_t, std_t = torch.tensor(self.mean).view(-1, 1, 1), torch.tensor(self.std).view(-1, 1, 1)
        self._uint8 = (mean_t * 255, std_t * 255)
        self._unit = (mean_t, std_t)

    def __call__(self, image, out: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            image = v2.functional.pil_to_tensor(image)
        image = image.as_subclass(torch.Tensor)  # a tv_tensors.Image from a v2 transform: plain arithmetic
        if image.dtype == torch.uint8:
            mean, std = self._uint8
        else:
            if not image.is_floating_point():
                image = v2.functional.to_dtype(image, torch.float32, scale=True)
            mean, std = self._unit
        return torch.sub(image, mean, out=out).div_(std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class NormalizedTransform:
    """``normalize(augment(image))``: ``augment`` the v2 transforms of one sample (on a uint8 tensor (C, H, W) in
    the loaders; a PIL image works too), ``normalize`` a ``ToNormalizedFloat``. The torchvision backend calls
    the two parts itself, writing each sample's float pixels straight into its batch."""

    def __init__(self, augment: Callable, normalize: ToNormalizedFloat):
        self.augment, self.normalize = augment, normalize
        self.uses_label = getattr(augment, "uses_label", False)  # called as transform(image, label)

    def __call__(self, image, *label) -> torch.Tensor:
        return self.normalize(self.augment(image, *label))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.augment!r}, {self.normalize!r})"


def to_float_normalized(mean, std) -> ToNormalizedFloat:
    return ToNormalizedFloat(mean, std)


def eval_transform(image_size: int, mean, std) -> NormalizedTransform:
    resize_crop = v2.Compose([v2.Resize(eval_resize(image_size), antialias=True), v2.CenterCrop(image_size)])
    return NormalizedTransform(resize_crop, ToNormalizedFloat(mean, std))


def eval_dali(encoded, image_size: int, mean, std, device: str):
    """The same on DALI operators (inside a pipeline definition)."""
    from nvidia.dali import fn, types

    images = fn.decoders.image(encoded, device=device, output_type=types.RGB)
    images = fn.resize(images, resize_shorter=float(eval_resize(image_size)))
    return fn.crop_mirror_normalize(
        images,
        crop=(image_size, image_size),
        dtype=types.FLOAT,
        output_layout="CHW",
        mean=[255.0 * m for m in mean],
        std=[255.0 * s for s in std],
    )
