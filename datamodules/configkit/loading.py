"""Build a typed config: the dataclass defaults, then a YAML file, then ``key.path=value`` overrides.

Unknown keys and values of the wrong type are refused with the key, where it came from and the keys
allowed there; a schema may declare ``MOVED_KEYS`` ({old dotted key: new one}) for configs written
before a key moved. Every file and override is plain YAML (untrusted.py): no tags, no ``${...}``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import typing
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from datamodules.configkit.errors import ConfigError, did_you_mean
from datamodules.configkit.untrusted import check_yaml, refuse_interpolation
from datamodules.configkit.validation import validate


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


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
    """``OmegaConf.merge`` whose errors become ConfigErrors naming the key and ``source``; ``other`` may not
    hold ``${...}`` interpolations (they would be resolved when the config is built)."""
    refuse_interpolation(
        OmegaConf.to_container(other, resolve=False) if OmegaConf.is_config(other) else other,
        source,
        prefix.rstrip("."),
    )
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, str(e.full_key), source, prefix)) from None
    except ValidationError as e:
        raise ConfigError(
            f"bad value for config key '{prefix}{e.full_key}' (from {source}): {e.msg.splitlines()[0]}"
        ) from None
    except (OmegaConfBaseException, TypeError) as e:
        raise ConfigError(f"cannot apply {source}: {_one_line(e)}") from None


def parse_overrides(overrides: list[str]) -> list[str]:
    """Check that every override is ``key.path=value`` with a plain YAML value; returns them."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key.path=value (e.g. optim.lr=0.05)")
        check_yaml(item.partition("=")[2], f"override '{item}'", mapping=False)
    return overrides


def overrides_config(overrides: list[str]):
    """``key.path=value`` overrides as one OmegaConf tree."""
    try:
        return OmegaConf.from_dotlist(parse_overrides(list(overrides)))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot read the overrides {' '.join(overrides)!r}: {_one_line(e)}") from None


def read_yaml_file(path: Path, what: str = "config file"):
    """A user's YAML file as an OmegaConf tree: a mapping of plain values (ConfigError otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not UTF-8 text; give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} '{path}': {e.strerror}") from None
    check_yaml(text, f"{what} '{path}'")
    try:
        return OmegaConf.load(io.StringIO(text))
    except Exception as e:  # the loader's own limits (alias expansion, duplicate keys)
        raise ConfigError(f"{what} '{path}' cannot be read: {_one_line(e)}") from None


def _to_object(cfg):
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config is incomplete or invalid: {_one_line(e)}") from None


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
        cfg = merge(cfg, read_yaml_file(path), f"config file {path}", schema)
    if overrides:
        cfg = merge(cfg, overrides_config(list(overrides)), "command-line override", schema)
    obj = _to_object(cfg)
    validate(obj)
    return obj


def typed(schema: type, data: Any, source: str = "saved config"):
    """A plain container (e.g. one section of a saved config) as an instance of the dataclass ``schema``."""
    return _to_object(merge(OmegaConf.structured(schema), data, source, schema))
