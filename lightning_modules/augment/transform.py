"""Compile an ``aug`` config section into the training transform, class-conditional when it has overrides."""

from __future__ import annotations

from typing import Callable

from torchvision.transforms import v2

from datamodules.configkit import ConfigError
from lightning_modules.augment.config import AugConfig, class_index
from lightning_modules.augment.evaluation import to_float_normalized
from lightning_modules.augment.registry import build_policies


def compile_augment(aug: AugConfig, image_size: int) -> v2.Compose:
    """The policies' v2 transforms: image (uint8 tensor (3, H, W), or PIL) -> image of image_size x image_size
    (uint8 for a uint8 input, whatever the policies: each of them keeps its input's type)."""
    policies = build_policies(aug, image_size)
    steps = (
        [] if any(p.sets_size for p in policies) else [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    )
    for policy in policies:
        steps += policy.torchvision()
    return v2.Compose(steps)


def compile_torchvision(aug: AugConfig, image_size: int, mean, std) -> v2.Compose:
    """Image (uint8 tensor (3, H, W), or PIL) -> normalized float tensor of shape (3, image_size, image_size)."""
    return v2.Compose([*compile_augment(aug, image_size).transforms, to_float_normalized(mean, std)])


class ClassConditionalTransform:
    """Per sample: the transform of the sample's class if it has an override, else the default one."""

    uses_label = True  # ShardStream calls it as transform(image, label)

    def __init__(self, default: Callable, per_class: dict[int, Callable]):
        self.default, self.per_class = default, per_class

    def __call__(self, image, label: int):
        return self.per_class.get(int(label), self.default)(image)


def build_train_transform(aug: AugConfig, class_names: list[str], image_size: int) -> Callable:
    """The loaders' training transform: image [, label] -> uint8 image (the label only with class overrides)."""
    augment = compile_augment(aug, image_size)
    if aug.class_overrides:
        per_class: dict[int, Callable] = {}
        for key in aug.class_overrides:
            index = class_index(key, class_names)
            if index in per_class:
                raise ConfigError(f"aug.class_overrides names class {index} ('{class_names[index]}') twice")
            per_class[index] = compile_augment(aug.for_class(key), image_size)
        augment = ClassConditionalTransform(augment, per_class)
    return augment
