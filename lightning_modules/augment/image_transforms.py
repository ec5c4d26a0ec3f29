"""A run's training and evaluation transforms for the datamodules (datamodules/base.py ``ImageTransforms``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lightning_modules.augment.config import AugConfig
from lightning_modules.augment.evaluation import eval_dali, eval_transform
from lightning_modules.augment.transform import build_train_transform, class_index


@dataclass
class ImageTransforms:
    aug: AugConfig
    image_size: int
    mean: list[float]
    std: list[float]

    @classmethod
    def of(cls, aug: AugConfig, data) -> "ImageTransforms":
        """The transforms for ``aug`` at the resolution and normalization of a ``DataConfig``."""
        return cls(aug, data.image_size, list(data.mean), list(data.std))

    def train(self, class_names: list[str]) -> Callable:
        return build_train_transform(self.aug, class_names, self.image_size, self.mean, self.std)

    def evaluation(self) -> Callable:
        return eval_transform(self.image_size, self.mean, self.std)

    def dali_train(self, class_names: list[str]) -> Callable:
        from lightning_modules.augment.dali import check_dali_support, compile_dali

        check_dali_support(self.aug)
        for key in self.aug.class_overrides:  # class names are checked before any work, as on torchvision
            class_index(key, class_names)

        def graph(encoded, labels, device):
            return compile_dali(encoded, labels, self.aug, class_names, self.image_size, self.mean, self.std, device)

        return graph

    def dali_eval(self) -> Callable:
        def graph(encoded, device):
            return eval_dali(encoded, self.image_size, self.mean, self.std, device)

        return graph
