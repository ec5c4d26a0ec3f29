"""ImageNet-sized JPEG stand-ins for the benchmarks: smooth colour fields plus texture, about 110 KB at quality 90."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_tree(dest: Path, count: int, classes: int = 10, split: str = "train", size=(500, 375)) -> Path:
    """``count`` JPEGs as ``dest/<split>/class<k>/NNNNN.jpg`` (500x375 by default), deterministic per index."""
    w, h = size
    for i in range(count):
        rng = np.random.default_rng(i if split == "train" else 10**7 + i)
        low = Image.fromarray(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        mid = Image.fromarray(rng.uniform(0, 255, (48, 64, 3)).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = 0.6 * np.asarray(low, float) + 0.4 * np.asarray(mid, float) + rng.normal(0, 22, (h, w, 3))
        folder = dest / split / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return dest
