"""The ``aug`` section of a run's config: the policy list, each built-in policy's parameters, the parameters
of user-defined policies, and class-conditional overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from datamodules.configkit import ConfigError, did_you_mean, merge, setting, validate
from lightning_modules.augment.builtin import ColorJitterParams, FlipParams, PadCropParams, RRCParams
from lightning_modules.augment.registry import check_policy_names


@dataclass
class AugConfig:
    """Training augmentation: ``policy`` names registered policies (lightning_modules/augment), applied in order."""

    policy: list[str] = setting(
        default_factory=lambda: ["rrc", "flip"], help="registered policies applied in order (docs/policies.md)"
    )
    rrc: RRCParams = dataclasses.field(default_factory=RRCParams)
    pad_crop: PadCropParams = dataclasses.field(default_factory=PadCropParams)
    flip: FlipParams = dataclasses.field(default_factory=FlipParams)
    color_jitter: ColorJitterParams = dataclasses.field(default_factory=ColorJitterParams)
    custom: dict[str, Any] = setting(
        default_factory=dict,
        help="parameters of policies registered outside lightning_modules/augment: `aug.custom.<policy>.<param>`",
    )
    class_overrides: dict[Any, Any] = setting(
        default_factory=dict,
        help="class-conditional augmentation: a class name from classes.json "
        "(or an index) -> the `aug` keys that differ for it",
    )

    def validate(self) -> None:
        check_policy_names(self, "aug")
        for key in self.class_overrides:
            self.for_class(key)

    def for_class(self, key) -> "AugConfig":
        """This section with the override for class ``key`` applied (typed and validated)."""
        where = f"aug.class_overrides.{key}"
        patch = self.class_overrides[key]
        if not isinstance(patch, dict) or "class_overrides" in patch:
            raise ConfigError(
                f"{where} must be a map of aug keys to change for that class, "
                f"e.g. {{rrc: {{min_scale: 1.0}}}} or {{policy: [flip]}}; got {patch!r}"
            )
        base = OmegaConf.structured(dataclasses.replace(self, class_overrides={}))
        obj = OmegaConf.to_object(merge(base, OmegaConf.create(patch), where, AugConfig, prefix="aug."))
        try:
            validate(obj, "aug.")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return obj


def class_index(key, class_names: list[str]) -> int:
    """A class_overrides key (a class name, or an index) -> the class index; ConfigError naming the valid ones."""
    text = str(key)
    if text in class_names:
        return class_names.index(text)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    msg = f"aug.class_overrides: '{text}' is not a class of these shards." + did_you_mean(text, class_names)
    shown = ", ".join(class_names[:50]) + (f", ... ({len(class_names)} in all)" if len(class_names) > 50 else "")
    raise ConfigError(
        f"{msg} Use a class name from classes.json or an index 0-{len(class_names) - 1}. Valid names: {shown}."
    )
