"""Batches written in place: each transformed sample goes straight into its slot of the batch tensor.

Inside a DataLoader worker the batch tensor is allocated in shared memory, as torch's ``default_collate``
does, so the worker hands it to the main process without copying it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils.data import get_worker_info


def empty_batch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized tensor, in shared memory when called in a DataLoader worker."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(nbytes)  # what default_collate allocates its batches with
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


class BatchWriter:
    """Collects up to ``size`` transformed samples: ``add`` them, then ``take`` (images, labels, keys)."""

    def __init__(self, transform: Callable, size: int):
        self.transform, self.size = transform, size
        self.uses_label = getattr(transform, "uses_label", False)  # class-conditional augmentation
        self.images = None
        self.labels: list[int] = []
        self.keys: list[str] = []

    def add(self, image, label: int, key: str) -> None:
        out = self.transform(image, label) if self.uses_label else self.transform(image)
        if self.images is None:
            self.images = empty_batch((self.size, *out.shape), out.dtype)
        self.images[len(self.labels)].copy_(out)
        self.labels.append(label)
        self.keys.append(key)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        images, labels, keys = self.images[: len(self.labels)], torch.tensor(self.labels), self.keys
        self.images, self.labels, self.keys = None, [], []
        return images, labels, keys
