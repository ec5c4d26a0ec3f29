"""The policy interface: one augmentation step, compiled per backend."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class NoParams:
    pass


class Policy:
    """One named augmentation step with typed parameters.

    Subclasses set ``Params`` (a dataclass; use ``launch.config.bounded``/``choice`` for checked fields) and
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
        """torchvision.transforms.v2 transforms applied to a PIL image, in order."""
        raise NotImplementedError(f"policy '{self.name}' does not implement torchvision()")

    def dali(self, images, labels):
        """DALI operators for the DALI backend (``data.backend=dali``, not implemented yet).

        Called inside a ``nvidia.dali.pipeline_def`` with ``images``: decoded HWC uint8 RGB DataNodes and
        ``labels``: int DataNodes; returns the augmented images DataNode (``image_size`` square when
        ``sets_size``). Randomness must come from DALI's seeded random operators.
        """
        raise NotImplementedError(
            f"augmentation policy '{self.name}' has no DALI implementation yet; use data.backend=torchvision"
        )
