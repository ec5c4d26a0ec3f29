"""A run's training and evaluation transforms for the datamodules (datamodules/base.py ``ImageTransforms``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lightning_modules.augment.config import AugConfig
from lightning_modules.augment.evaluation import eval_dali, eval_resize_crop
from lightning_modules.augment.transform import build_train_transform, class_index


@dataclass
class ImageTransforms:
    """uint8 in, uint8 out: the datamodule normalizes each batch on its device (datamodules/base.py)."""

    aug: AugConfig
    image_size: int

    @classmethod
    def of(cls, aug: AugConfig, data) -> "ImageTransforms":
        """The transforms for ``aug`` at the resolution of a ``DataConfig``."""
        return cls(aug, data.image_size)

    def train(self, class_names: list[str]) -> Callable:
        return build_train_transform(self.aug, class_names, self.image_size)

    def evaluation(self) -> Callable:
        return eval_resize_crop(self.image_size)

    def dali_train(self, class_names: list[str]) -> Callable:
        from lightning_modules.augment.dali import check_dali_support, compile_dali

        check_dali_support(self.aug)
        for key in self.aug.class_overrides:  # class names are checked before any work, as on torchvision
            class_index(key, class_names)

        def graph(encoded, labels, device):
            return compile_dali(encoded, labels, self.aug, class_names, self.image_size, device)

        return graph

    def dali_eval(self) -> Callable:
        def graph(encoded, device):
            return eval_dali(encoded, self.image_size, device)

        return graph
