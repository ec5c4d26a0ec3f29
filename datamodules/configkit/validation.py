"""Check every field of a config dataclass against its declared facts (choices, range, length), recursively."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from datamodules.configkit.errors import ConfigError, did_you_mean


def _check_number(key: str, value: Any, facts: dict) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"bad value for config key '{key}': {value!r} is not a number.")
    if not math.isfinite(value):
        raise ConfigError(f"bad value for config key '{key}': {value!r}. Give a finite number.")
    low, high, low_inc, high_inc = facts["range"]
    too_low = low is not None and (value < low if low_inc else value <= low)
    too_high = high is not None and (value > high if high_inc else value >= high)
    if too_low or too_high:
        lo = "(-inf" if low is None else ("[" if low_inc else "(") + str(low)
        hi = "inf)" if high is None else str(high) + ("]" if high_inc else ")")
        raise ConfigError(f"bad value for config key '{key}': {value!r}. Allowed range: {lo}, {hi}.")


def _check_field(key: str, value: Any, facts: dict) -> None:
    if "retired" in facts and value in facts["retired"]:
        raise ConfigError(f"bad value for config key '{key}': {value!r} was retired: {facts['retired'][value]}")
    if "choices" in facts and value not in facts["choices"]:
        allowed = facts["choices"]
        raise ConfigError(
            f"bad value for config key '{key}': {value!r}. Allowed: {', '.join(map(str, allowed))}."
            + did_you_mean(value, allowed)
        )
    if "range" not in facts:
        return
    if "length" in facts:
        if not isinstance(value, (list, tuple)) or len(value) != facts["length"]:
            raise ConfigError(f"bad value for config key '{key}': {value!r}. Give a list of {facts['length']} numbers.")
        for i, item in enumerate(value):
            _check_number(f"{key}[{i}]", item, facts)
    else:
        _check_number(key, value, facts)


def _check_finite(key: str, value: Any) -> None:
    """NaN and infinity compare false with every bound: refuse them anywhere, also inside lists and maps."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"bad value for config key '{key}': {value!r}. Give a finite number.")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(f"{key}[{i}]", item)
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_finite(f"{key}.{k}", item)


def validate(obj: Any, prefix: str = "") -> None:
    """Raise ConfigError naming the first field whose value breaks its facts; then run ``obj.validate()``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        _check_field(key, value, f.metadata)
        _check_finite(key, value)
    post = getattr(obj, "validate", None)
    if callable(post):
        post()
