"""A run's config, assembled from the sections that live next to the code using them.

Defaults, then a YAML preset, then ``key.path=value`` overrides (datamodules/configkit), validated before any
work starts. The facts about every field (range, choices, help, the weaker end of a regularization) are its
metadata: ``python -m launch.config_reference`` writes them to docs/config.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from datamodules.config import DataConfig
from datamodules.configkit import bounded, field_facts, save_yaml, setting
from datamodules.configkit import load_config as _load_config
from lightning_modules.augment import POLICIES, AugConfig
from lightning_modules.metrics.config import MetricsConfig
from lightning_modules.models import ModelConfig
from lightning_modules.optim import OptimConfig
from lightning_modules.trainer import TrainerConfig
from lightning_modules.wandb_logging import LoggerConfig
from lightning_modules.weight_decay import WeightDecayConfig


@dataclass
class RunConfig:
    # Keys that moved, for a clear message on old configs.
    MOVED_KEYS: ClassVar[dict[str, str]] = {"optim.weight_decay": "wd.value"}

    name: str = setting("run", help="results go to `out_dir/name/`")
    out_dir: str = setting("runs", help="the folder holding run folders")
    seed: int = bounded(0, 0, 2**32 - 1, help="seeds the model, the augmentation and the data order")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wd: WeightDecayConfig = field(default_factory=WeightDecayConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_config(
    path: Optional[str | os.PathLike] = None, overrides: tuple[str, ...] | list[str] = (), schema: type = RunConfig
):
    """Defaults <- YAML preset <- dotted overrides; a validated ``schema`` instance (``RunConfig`` by default)."""
    return _load_config(path, overrides, schema)


def save_resolved(cfg, path: str | os.PathLike) -> None:
    save_yaml(cfg, path)


def run_key_facts(dotted: str) -> Optional[dict]:
    """The field metadata of a dotted run-config key, also inside class overrides and custom policies:
    ``aug.class_overrides.<class>.rrc.min_scale`` has the facts of ``aug.rrc.min_scale``, and
    ``aug.custom.<policy>.<param>`` those of the policy's ``Params`` field."""
    parts = dotted.split(".")
    if parts[:2] == ["aug", "class_overrides"] and len(parts) > 3:
        return run_key_facts(".".join(["aug", *parts[3:]]))
    if parts[:2] == ["aug", "custom"] and len(parts) == 4 and parts[2] in POLICIES:
        return field_facts(POLICIES[parts[2]].Params, parts[3])
    return field_facts(RunConfig, dotted)
