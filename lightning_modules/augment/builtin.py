"""The built-in policies: rrc, pad_crop, flip, color_jitter, none."""
from __future__ import annotations

from torchvision.transforms import v2

from launch.config import ColorJitterConfig, FlipConfig, PadCropConfig, RRCConfig
from lightning_modules.augment.policy import Policy
from lightning_modules.augment.registry import register_policy


@register_policy("rrc")
class RandomResizedCrop(Policy):
    Params, config_key, sets_size = RRCConfig, "rrc", True

    def torchvision(self):
        p, size = self.params, self.image_size
        if p.min_scale == 1.0:  # the "no augmentation" end of the sweep: the whole image, deterministic
            return [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        return [v2.RandomResizedCrop(size, scale=(p.min_scale, p.max_scale), ratio=tuple(p.ratio), antialias=True)]


@register_policy("pad_crop")
class PadCrop(Policy):
    Params, config_key, sets_size = PadCropConfig, "pad_crop", True

    def torchvision(self):
        p, size = self.params, self.image_size
        return [v2.Resize(size, antialias=True), v2.CenterCrop(size),
                v2.RandomCrop(size, padding=p.padding, padding_mode=p.padding_mode)]


@register_policy("flip")
class Flip(Policy):
    Params, config_key = FlipConfig, "flip"

    def torchvision(self):
        return [v2.RandomHorizontalFlip(self.params.p)]


@register_policy("color_jitter")
class ColorJitter(Policy):
    Params, config_key = ColorJitterConfig, "color_jitter"

    def torchvision(self):
        s = self.params.strength
        jitter = v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=self.params.hue)
        return [v2.RandomApply([jitter], p=self.params.p)]


@register_policy("none")
class NoAugmentation(Policy):
    def torchvision(self):
        return []
