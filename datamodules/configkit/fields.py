"""Dataclass fields that carry the facts about a setting: its range or choices, help text, and which end of
it is the weaker regularization. Validation (``validation.py``), the generated config reference
(``docs/config.md``) and the report's ordering of settings all read these facts from the field metadata.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, field
from typing import Any, Optional

WEAKER_ENDS = ("low", "high")


def _meta(help: str, weaker: Optional[str], **facts) -> dict:
    if weaker is not None and weaker not in WEAKER_ENDS:
        raise ValueError(f"weaker must be one of {WEAKER_ENDS}, got {weaker!r}")
    return {"help": help, **({"weaker": weaker} if weaker else {}), **facts}


def _field(default, default_factory, metadata):
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=default, metadata=metadata)


def setting(default=MISSING, *, default_factory=MISSING, help: str = "", weaker: Optional[str] = None):
    """A field without a declared range: ``help`` and, for regularization strengths, the ``weaker`` end."""
    return _field(default, default_factory, _meta(help, weaker))


def choice(default, choices, help: str = "", weaker: Optional[str] = None, retired: Optional[dict] = None):
    """A field whose value must be one of ``choices``; ``retired``: {former value: why it went and what to say
    instead}, for configs written before a value was retired."""
    facts = {"choices": list(choices), **({"retired": dict(retired)} if retired else {})}
    return _field(default, MISSING, _meta(help, weaker, **facts))


def bounded(
    default,
    low=None,
    high=None,
    low_inclusive=True,
    high_inclusive=True,
    help: str = "",
    weaker: Optional[str] = None,
    length: Optional[int] = None,
):
    """A number (or, with ``length``, a list of that many numbers) within [low, high]; None bounds are open.

    ``weaker``: "low" when a smaller value regularizes less (weight decay), "high" when a larger one does
    (the crop scale of random-resized-crop)."""
    facts = {"range": (low, high, low_inclusive, high_inclusive)}
    if length is not None:
        facts["length"] = length
    return _field(default, MISSING, _meta(help, weaker, **facts))


def field_facts(schema: type, dotted: str) -> Optional[dict]:
    """The metadata of the field at ``dotted`` (``"aug.rrc.min_scale"``) in the dataclass ``schema``, or None."""
    node: Any = schema
    meta = None
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return None
        meta = dict(fields[part].metadata)
        node = typing.get_type_hints(node).get(part)
    return meta
