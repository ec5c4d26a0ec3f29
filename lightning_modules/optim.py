"""The ``optim`` section (SGD), its learning-rate schedule, and the linear scaling rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from datamodules.configkit import bounded, choice, setting


@dataclass
class OptimConfig:
    lr: float = bounded(0.1, 0.0, None, low_inclusive=False, help="SGD learning rate (before `lr_scaling`)")
    momentum: float = bounded(0.9, 0.0, 1.0, high_inclusive=False, help="SGD momentum")
    nesterov: bool = setting(False, help="Nesterov momentum")
    label_smoothing: float = bounded(
        0.0, 0.0, 1.0, high_inclusive=False, weaker="low", help="cross-entropy label smoothing"
    )
    warmup_epochs: float = bounded(0.0, 0.0, help="linear warm-up, per step, over this many epochs")
    warmup_start_factor: float = bounded(0.1, 0.0, 1.0, help="the warm-up starts at lr x this factor")
    schedule: str = choice(
        "cosine", ["cosine", "constant"], help="after warm-up: `cosine` (to 0 at the end) or `constant`"
    )
    lr_scaling: str = choice(
        "none",
        ["none", "linear"],
        help="`linear`: the lr used is `optim.lr` x global batch / `lr_reference_batch` (Goyal "
        "et al. 2017), global batch = `data.batch_size` x `trainer.devices` x "
        "`trainer.num_nodes`; `none`: `optim.lr` as given",
    )
    lr_reference_batch: int = bounded(256, 1, help="the batch size `optim.lr` is meant for, with linear scaling")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start_factor: float, schedule: str) -> float:
    """LR multiplier: linear warm-up from ``start_factor`` to 1, then cosine to 0 (or constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scaled_lr(optim: OptimConfig, batch_size: int, world_size: int) -> tuple[float, int]:
    """(effective lr, global batch): ``optim.lr`` x global batch / ``optim.lr_reference_batch`` when linear."""
    global_batch = batch_size * world_size
    if optim.lr_scaling == "linear":
        return optim.lr * global_batch / optim.lr_reference_batch, global_batch
    return optim.lr, global_batch
