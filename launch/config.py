"""A run's config, assembled from the sections that live next to the code using them.

Defaults, then a YAML preset, then ``key.path=value`` overrides (datamodules/configkit), validated before any
work starts. The facts about every field (range, choices, help, the weaker end of a regularization) are its
metadata: ``python -m launch.config_reference`` writes them to docs/config.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from datamodules.config import DataConfig
from datamodules.configkit import ConfigError, bounded, field_facts, save_yaml, setting
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


# OmegaConf's grammar for a key path (its overrides and `select` read the same): dotted names, and `[...]` for a
# name that holds dots, slashes or spaces: `aug.class_overrides[T-shirt/top].policy`.
_KEY_HEAD = re.compile(r"[^.\[\]]*")
_KEY_NEXT = re.compile(r"\.([^.\[\]]+)|\[([^\]]+)\]")
_PLAIN_PART = re.compile(r"[^.\[\]]+")


def key_parts(dotted: str) -> list[str]:
    """``"aug.class_overrides[Ankle boot].rrc.min_scale"`` -> ``["aug", "class_overrides", "Ankle boot", "rrc",
    "min_scale"]``; ConfigError for a key that is not a path."""
    head = _KEY_HEAD.match(dotted)
    parts, pos = [head.group(0)], head.end()
    while parts[0] and pos < len(dotted) and (m := _KEY_NEXT.match(dotted, pos)):
        parts.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    if not parts[0] or pos != len(dotted):
        raise ConfigError(
            f"config key {dotted!r} is not a key path: write dotted names (optim.lr), and a name that holds dots, "
            "slashes or spaces in brackets (aug.class_overrides[T-shirt/top].policy)"
        )
    return parts


def join_key(parts: list[str]) -> str:
    """The inverse of ``key_parts``: names joined by dots, in brackets where they hold dots or spaces."""
    out = ""
    for i, part in enumerate(parts):
        if _PLAIN_PART.fullmatch(part) and " " not in part:
            out += ("." if i else "") + part
        else:
            out += f"[{part}]"
    return out


def canonical_key(dotted: str) -> str:
    """One spelling per key (``trainer[devices]`` is ``trainer.devices``), for comparing keys."""
    try:
        return join_key(key_parts(dotted))
    except ConfigError:
        return dotted


def run_key_facts(dotted: str) -> Optional[dict]:
    """The field metadata of a dotted run-config key, also inside class overrides and custom policies:
    ``aug.class_overrides.<class>.rrc.min_scale`` (or ``aug.class_overrides[<class>].rrc.min_scale``) has the
    facts of ``aug.rrc.min_scale``, and ``aug.custom.<policy>.<param>`` those of the policy's ``Params`` field."""
    try:
        parts = key_parts(dotted)
    except ConfigError:
        return None
    if parts[:2] == ["aug", "class_overrides"] and len(parts) > 3:
        return run_key_facts(join_key(["aug", *parts[3:]]))
    if parts[:2] == ["aug", "custom"] and len(parts) == 4 and parts[2] in POLICIES:
        return field_facts(POLICIES[parts[2]].Params, parts[3])
    return field_facts(RunConfig, ".".join(parts))
