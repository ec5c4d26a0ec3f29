"""The built-in policies: rrc, center_crop, pad_crop, flip, color_jitter, none (torchvision and DALI), with their
parameters.

torchvision and DALI are imported inside the methods that use them, so that reading a config stays light."""

from __future__ import annotations

import math
from dataclasses import dataclass

from datamodules.configkit import ConfigError, bounded, choice, setting
from lightning_modules.augment.policy import Policy
from lightning_modules.augment.registry import register_policy


@dataclass
class RRCParams:
    """Random-resized-crop, torchvision's ``RandomResizedCrop(scale=(min_scale, max_scale), ratio=ratio)``."""

    min_scale: float = bounded(
        0.08,
        0.0,
        1.0,
        low_inclusive=False,
        weaker="high",
        help="smallest crop area, as a fraction of the image; `1.0` (with `max_scale` 1): the whole image, "
        "resized to the square, when its aspect ratio is within `ratio` (else its centred crop of the nearest "
        "allowed ratio: torchvision's fallback); policy `center_crop` is resize + centre crop",
    )
    max_scale: float = bounded(
        1.0, 0.0, 1.0, low_inclusive=False, weaker="high", help="largest crop area, as a fraction of the image"
    )
    ratio: list[float] = setting(
        default_factory=lambda: [3 / 4, 4 / 3], help="aspect-ratio range [low, high] of the crop"
    )

    def validate(self) -> None:
        if self.min_scale > self.max_scale:
            raise ConfigError(f"aug.rrc.min_scale={self.min_scale} is above aug.rrc.max_scale={self.max_scale}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(
                f"aug.rrc.ratio={self.ratio} must be [low, high] with 0 < low <= high (e.g. [0.75, 1.333])"
            )


ATTEMPTS = 10  # torchvision's RandomResizedCrop draws at most 10 windows before its fallback


def _round(x):
    """Nearest integer (halves up), of a number or per sample."""
    from nvidia.dali import math as dmath

    from lightning_modules.augment.dali_ops import is_node

    return dmath.floor(x + 0.5) if is_node(x) else float(math.floor(x + 0.5))


@register_policy("rrc")
class RandomResizedCrop(Policy):
    Params, config_key, sets_size = RRCParams, "rrc", True

    def torchvision(self):
        from torchvision.transforms import v2

        p, size = self.params, self.image_size
        return [v2.RandomResizedCrop(size, scale=(p.min_scale, p.max_scale), ratio=tuple(p.ratio), antialias=True)]

    @classmethod
    def dali_neutral(cls):
        # torchvision's sampler at area 1 and aspect 1 fits only a square image, else falls back to the centred
        # square: exactly resize + centre crop, what a class whose policy list has no crop gets
        return RRCParams(min_scale=1.0, max_scale=1.0, ratio=[1.0, 1.0])

    def dali_decode(self, encoded, labels, device):
        return self.resize(self.decode_window(encoded, device))

    def decode_window(self, encoded, device):
        """Each image's crop window, decoded alone (the rest of the image is not decoded)."""
        from nvidia.dali import fn, types

        shape = fn.peek_image_shape(encoded)
        anchor, window = self.window(fn.cast(shape[0], dtype=types.FLOAT), fn.cast(shape[1], dtype=types.FLOAT))
        return fn.decoders.image_slice(
            encoded,
            anchor,
            window,
            device=device,
            output_type=types.RGB,
            axis_names="WH",
            normalized_anchor=False,
            normalized_shape=False,
        )

    def resize(self, windows):
        """The crop windows resized to data.image_size square (DALI's default: linear, antialiased when shrinking)."""
        from nvidia.dali import fn

        return fn.resize(windows, size=[float(self.image_size)] * 2)

    def dali(self, images, labels):
        from nvidia.dali import fn

        anchor, window = self.window(*self.input_hw)
        return self.resize(
            fn.slice(images, anchor, window, axis_names="WH", normalized_anchor=False, normalized_shape=False)
        )

    def window(self, height, width):
        """Per sample, the crop (x, y), (w, h) of torchvision's ``RandomResizedCrop.make_params``: ATTEMPTS draws
        of area ~ U(min_scale, max_scale) x image area and log aspect ratio ~ U(log ratio), the first whose rounded
        w x h fits in the image, placed uniformly; if none fits, the whole image, or (aspect ratio outside
        ``ratio``) its centred crop at the nearest allowed ratio. Parameters may be per-sample DataNodes."""
        import numpy as np
        import nvidia.dali.math as dmath
        from nvidia.dali import fn, types

        from lightning_modules.augment.dali_ops import is_node, uniform, where

        p = self.params
        low, high = p.ratio
        log_low, log_high = (dmath.log(r) if is_node(r) else math.log(r) for r in p.ratio)
        area = height * width * (p.min_scale + uniform([ATTEMPTS]) * (p.max_scale - p.min_scale))
        aspect = dmath.exp(log_low + uniform([ATTEMPTS]) * (log_high - log_low))
        w, h = _round(dmath.sqrt(area * aspect)), _round(dmath.sqrt(area / aspect))
        fits = fn.cast((w >= 1.0) & (w <= width) & (h >= 1.0) & (h <= height), dtype=types.FLOAT)
        rank = fits * types.Constant(np.arange(ATTEMPTS, 0, -1, dtype=np.float32))  # earlier attempts rank higher
        best = fn.reductions.max(rank)
        first = fits * fn.cast(rank == best, dtype=types.FLOAT)  # one-hot on the first attempt that fits
        found = best > 0.0
        image_ratio = width / height
        narrow, wide = image_ratio < low, image_ratio > high
        fallback_w = where(wide, _round(height * high), width)
        fallback_h = where(narrow, _round(width / low), height)
        w = where(found, fn.reductions.sum(first * w), fallback_w)
        h = where(found, fn.reductions.sum(first * h), fallback_h)
        x = where(found, dmath.floor(uniform() * (width - w + 1.0)), dmath.floor((width - w) * 0.5))
        y = where(found, dmath.floor(uniform() * (height - h + 1.0)), dmath.floor((height - h) * 0.5))
        return fn.stack(x, y), fn.stack(w, h)


@register_policy("center_crop")
class CenterCrop(Policy):
    """Resize the short side to data.image_size and take the centred square (no randomness)."""

    sets_size = True

    def torchvision(self):
        from torchvision.transforms import v2

        return [v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size)]

    def dali(self, images, labels):
        from nvidia.dali import fn

        size = float(self.image_size)
        return fn.crop(fn.resize(images, resize_shorter=size), crop=(size, size))


@dataclass
class PadCropParams:
    """Resize to data.image_size, pad every side, random crop back (CIFAR-style)."""

    padding: int = bounded(4, 0, weaker="low", help="pixels of padding on every side before the random crop")
    padding_mode: str = choice(
        "constant",
        ["constant", "edge", "reflect", "symmetric"],
        help="how the padding is filled (torchvision's `RandomCrop(padding_mode=)`)",
    )


@register_policy("pad_crop")
class PadCrop(Policy):
    Params, config_key, sets_size = PadCropParams, "pad_crop", True

    def torchvision(self):
        from torchvision.transforms import v2

        p, size = self.params, self.image_size
        return [
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.RandomCrop(size, padding=p.padding, padding_mode=p.padding_mode),
        ]

    @classmethod
    def dali_neutral(cls):
        return PadCropParams(padding=0)

    def dali(self, images, labels):
        import numpy as np
        import nvidia.dali.math as dmath
        from nvidia.dali import fn, types

        from lightning_modules.augment.dali_ops import uniform

        p, size = self.params, float(self.image_size)
        if p.padding_mode != "constant":
            raise ConfigError(
                f"aug.pad_crop.padding_mode={p.padding_mode!r}: the DALI backend pads with zeros only "
                "(padding_mode=constant); use data.backend=torchvision for other modes"
            )
        images = fn.crop(fn.resize(images, resize_shorter=size), crop=(size, size))
        if not isinstance(p.padding, (int, float)) or p.padding > 0:
            # a random size x size window of the image padded by `padding`: offsets in [-padding, padding]
            dx, dy = (dmath.floor(uniform() * (2 * p.padding + 1)) - p.padding for _ in range(2))
            images = fn.slice(
                images,
                fn.stack(dx, dy),
                types.Constant(np.array([size, size], np.float32)),
                axis_names="WH",
                normalized_anchor=False,
                normalized_shape=False,
                out_of_bounds_policy="pad",
                fill_values=0,
            )
        return images


@dataclass
class FlipParams:
    p: float = bounded(0.5, 0.0, 1.0, weaker="low", help="horizontal flip probability")


@register_policy("flip")
class Flip(Policy):
    Params, config_key = FlipParams, "flip"

    def torchvision(self):
        from torchvision.transforms import v2

        return [v2.RandomHorizontalFlip(self.params.p)]

    @classmethod
    def dali_neutral(cls):
        return FlipParams(p=0.0)

    def dali(self, images, labels):
        from nvidia.dali import fn

        from lightning_modules.augment.dali_ops import as_int, coin

        flip = coin(self.params.p)
        if flip is False:
            return images
        return fn.flip(images, horizontal=as_int(flip))


@dataclass
class ColorJitterParams:
    """Brightness, contrast and saturation jitter of +-strength (timm's color_jitter), applied with probability p."""

    strength: float = bounded(0.4, 0.0, weaker="low", help="brightness, contrast and saturation jitter of +-strength")
    hue: float = bounded(0.0, 0.0, 0.5, weaker="low", help="hue jitter of +-hue (a fraction of the colour circle)")
    p: float = bounded(1.0, 0.0, 1.0, weaker="low", help="probability that an image is jittered")


@register_policy("color_jitter")
class ColorJitter(Policy):
    Params, config_key = ColorJitterParams, "color_jitter"

    def torchvision(self):
        from torchvision.transforms import v2

        s = self.params.strength
        jitter = v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=self.params.hue)
        return [v2.RandomApply([jitter], p=self.params.p)]

    @classmethod
    def dali_neutral(cls):
        return ColorJitterParams(p=0.0)

    def dali(self, images, labels):
        import nvidia.dali.math as dmath
        from nvidia.dali import fn

        from lightning_modules.augment.dali_ops import coin, uniform, where

        p = self.params
        apply = coin(p.p)
        if apply is False:
            return images

        def factor():  # U(1 - strength, 1 + strength), not below 0, as torchvision's ColorJitter
            return dmath.max(1.0 + p.strength * (2.0 * uniform() - 1.0), 0.0)

        return fn.color_twist(
            images,
            brightness=where(apply, factor(), 1.0),
            contrast=where(apply, factor(), 1.0),
            saturation=where(apply, factor(), 1.0),
            hue=where(apply, 360.0 * p.hue * (2.0 * uniform() - 1.0), 0.0),
        )


@register_policy("none")
class NoAugmentation(Policy):
    def torchvision(self):
        return []

    @classmethod
    def dali_neutral(cls):
        return cls.Params()

    def dali(self, images, labels):
        return images
