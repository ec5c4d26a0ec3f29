"""Fixed transforms shared by every training policy: decoding to RGB and evaluation resizing."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

# Standard ImageNet evaluation: resize the short side to size/0.875, then centre-crop.
EVAL_CROP_RATIO = 0.875


def to_float_normalized(mean, std) -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_transform(image_size: int, mean, std) -> v2.Compose:
    resize = image_size if image_size <= 64 else int(round(image_size / EVAL_CROP_RATIO))
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size), to_float_normalized(mean, std)])

