"""The policy interface: one augmentation step, compiled per backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class NoParams:
    pass


class Policy:
    """One named augmentation step with typed parameters.

    Subclasses set ``Params`` (a dataclass; use ``datamodules.configkit.bounded``/``choice`` for checked fields) and
    implement ``torchvision()``. Registered with ``@register_policy("name")``; ``aug.policy`` lists names.
    A policy with ``sets_size = True`` outputs ``image_size`` x ``image_size`` images itself (at most one per
    policy list); without one, the images are resized and centre-cropped to ``image_size`` first.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    sets_size: ClassVar[bool] = False
    # Built-in policies keep their parameters in a typed section of `aug` (e.g. `aug.rrc`); others in
    # `aug.custom.<name>`.
    config_key: ClassVar[str | None] = None

    def __init__(self, params: Any, image_size: int):
        self.params, self.image_size = params, image_size

    def torchvision(self) -> list:
        """torchvision.transforms.v2 transforms applied to an image, in order: on the torchvision backend a uint8 RGB
        tensor (3, H, W) as decoded (a PIL image where a caller passes one); the normalization comes after them."""
        raise NotImplementedError(f"policy '{self.name}' does not implement torchvision()")

    def dali(self, images, labels):
        """DALI operators for the DALI backend (``data.backend=dali``, lightning_modules/augment/dali.py).

        Called inside a ``nvidia.dali.pipeline_def`` with ``images``: decoded HWC uint8 RGB DataNodes and
        ``labels``: int32 DataNodes; returns the augmented images DataNode (``image_size`` square when
        ``sets_size``). Randomness must come from DALI's seeded random operators. With class-conditional
        overrides, a parameter in ``self.params`` that differs between classes is a per-sample float DataNode
        (looked up from the label) instead of a number, so write the arithmetic to work on both
        (``lightning_modules/augment/dali_ops.py``). ``self.input_hw`` is the (height, width) of ``images``.
        """
        raise NotImplementedError(
            f"augmentation policy '{self.name}' has no DALI implementation yet; use data.backend=torchvision"
        )

    def dali_decode(self, encoded, labels, device: str):
        """Optional, for a policy that comes first and sets the size: decode and crop in one step (DALI decodes
        only the crop window). Returns the images, or None to let the backend decode the whole image."""
        return None

    @classmethod
    def dali_neutral(cls):
        """Parameters that make this policy do nothing beyond what an absent policy does, for class-conditional
        policy lists on the DALI backend; None if there are none."""
        return None
