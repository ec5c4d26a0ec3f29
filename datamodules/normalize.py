"""Normalization of uint8 images, ``(x - 255 mean) / (255 std)`` in float32: what both backends' loaders leave
to the device (ShardsDataModule.on_after_batch_transfer), and what a per-image transform ends with."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], out: Optional[torch.Tensor] = None):
    """uint8 images (..., 3, H, W) -> float32 normalized, on their device (``out``: write there instead)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    scale = torch.tensor([255.0 * s for s in std], device=images.device).view(-1, 1, 1)
    shift = torch.tensor([255.0 * m for m in mean], device=images.device).view(-1, 1, 1)
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device) if out is None else out
    return torch.sub(out.copy_(images), shift, out=out).div_(scale)
