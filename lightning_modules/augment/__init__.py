"""Pluggable training augmentation: policies registered by name, compiled from the ``aug`` config section.

Importing this package registers the built-in policies and gives the config section; the transforms
(torchvision) are imported on first use.
"""

from lightning_modules.augment import builtin  # noqa: F401  (registers rrc, center_crop, pad_crop, flip, ...)
from lightning_modules.augment.config import AugConfig
from lightning_modules.augment.policy import Policy
from lightning_modules.augment.registry import POLICIES, check_policy_names, register_policy

__all__ = [
    "POLICIES",
    "AugConfig",
    "ImageTransforms",
    "Policy",
    "register_policy",
    "check_policy_names",
    "build_train_transform",
    "compile_torchvision",
]


def __getattr__(name):
    if name == "ImageTransforms":
        from lightning_modules.augment.image_transforms import ImageTransforms

        return ImageTransforms
    if name in ("build_train_transform", "compile_torchvision"):
        from lightning_modules.augment import transform

        return getattr(transform, name)
    raise AttributeError(name)
