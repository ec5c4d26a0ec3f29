"""Normalization of uint8 images to float32 ``(x / 255 - mean) / std``: what both backends' loaders leave to the
device (ShardsDataModule.on_after_batch_transfer), and what a per-image transform ends with.

The arithmetic is torchvision's ``ToDtype(torch.float32, scale=True)`` then ``Normalize(mean, std)``, operation
for operation, so that runs keep the exact inputs (and so the exact results) they had when the torchvision
backend normalized each image with those transforms."""

from __future__ import annotations

from typing import Sequence

import torch


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 normalized, on their device."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return images.to(torch.float32).mul_(1.0 / 255).sub_(mean_t).div_(std_t)
