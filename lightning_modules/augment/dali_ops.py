"""Small DALI helpers for policies whose parameters are either Python numbers or per-sample DataNodes."""

from __future__ import annotations

from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode


def is_node(x) -> bool:
    return isinstance(x, DataNode)


def uniform(shape=None):
    """One float per sample (or a ``shape`` array of them), uniform in [0, 1) (seeded by the pipeline seed)."""
    return fn.random.uniform(range=[0.0, 1.0], **({"shape": shape} if shape else {}))


def where(cond, a, b):
    """Per-sample ``a if cond else b``; ``cond`` a bool DataNode or a Python bool."""
    if not is_node(cond):
        return a if cond else b
    c = fn.cast(cond, dtype=types.FLOAT)
    return c * a + (1.0 - c) * b


def coin(p):
    """True with probability ``p`` (a number or a per-sample DataNode), per sample."""
    if not is_node(p) and p in (0.0, 1.0):
        return bool(p)
    return uniform() < p


def as_int(x):
    return fn.cast(x, dtype=types.INT32) if is_node(x) else int(x)
