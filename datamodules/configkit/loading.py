"""Build a typed config: the dataclass defaults, then a YAML file, then ``key.path=value`` overrides.

Unknown keys and values of the wrong type are refused with the key, where it came from and the keys
allowed there; a schema may declare ``MOVED_KEYS`` ({old dotted key: new one}) for configs written
before a key moved.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from datamodules.configkit.errors import ConfigError, did_you_mean
from datamodules.configkit.validation import validate


def _keys_at(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass at ``dotted`` inside ``schema`` ([] if there is none)."""
    node = schema
    for part in [p for p in dotted.split(".") if p]:
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []


def _unknown_key_message(schema: type, full_key: str, source: str, prefix: str = "") -> str:
    parent, _, leaf = full_key.rpartition(".")
    allowed = _keys_at(schema, parent)
    parent, full_key = prefix + parent if parent else prefix.rstrip("."), prefix + full_key
    msg = f"unknown config key '{full_key}' (from {source})."
    moved = getattr(schema, "MOVED_KEYS", {})
    if full_key in moved:
        return msg + f" It moved to '{moved[full_key]}'."
    msg += did_you_mean(leaf, allowed, prefix=parent + "." if parent else "")
    if allowed:
        msg += f" Keys allowed under '{parent or '<top>'}': {', '.join(allowed)}."
    return msg


def merge(base, other, source: str, schema: type, prefix: str = ""):
    """``OmegaConf.merge`` whose errors become ConfigErrors naming the key and ``source``."""
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, str(e.full_key), source, prefix)) from None
    except ValidationError as e:
        raise ConfigError(
            f"bad value for config key '{prefix}{e.full_key}' (from {source}): {e.msg.splitlines()[0]}"
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot apply {source}: {e}") from None


def parse_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key.path=value (e.g. optim.lr=0.05)")
    return overrides


def _to_object(cfg):
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config is incomplete or invalid: {e}") from None


def load_config(
    path: Optional[str | os.PathLike],
    overrides: tuple[str, ...] | list[str],
    schema: type,
    where: str = "presets live in configs/",
):
    """Defaults <- YAML file <- dotted overrides; returns a validated instance of ``schema``."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist ({where})")
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:
            raise ConfigError(f"config file '{path}' is not valid YAML: {e}") from None
        cfg = merge(cfg, loaded, f"config file {path}", schema)
    if overrides:
        cfg = merge(cfg, OmegaConf.from_dotlist(parse_overrides(list(overrides))), "command-line override", schema)
    obj = _to_object(cfg)
    validate(obj)
    return obj


def typed(schema: type, data: Any, source: str = "saved config"):
    """A plain container (e.g. one section of a saved config) as an instance of the dataclass ``schema``."""
    return _to_object(merge(OmegaConf.structured(schema), data, source, schema))
