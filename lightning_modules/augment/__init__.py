"""Pluggable training augmentation: policies registered by name, compiled from the ``aug`` config section."""
from lightning_modules.augment.policy import Policy
from lightning_modules.augment.registry import POLICIES, check_policy_names, register_policy
from lightning_modules.augment import builtin  # noqa: F401  (registers rrc, pad_crop, flip, color_jitter, none)
from lightning_modules.augment.transform import build_train_transform, compile_torchvision

__all__ = ["POLICIES", "Policy", "register_policy", "check_policy_names", "build_train_transform", "compile_torchvision"]
