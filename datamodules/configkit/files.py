"""Files that must never be seen half-written: atomic replace, and the one YAML writer."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

import yaml

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter when PyYAML has libyaml


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], Any],
    durable: bool = True,
    tmp: Optional[Path] = None,
) -> None:
    """Write a whole file with ``write(binary file)`` so that readers see either the old or the new content.

    The temporary file (``tmp``, by default ``.<name>.tmp<pid>``) sits next to ``path`` (a rename within one
    filesystem is atomic) and is removed when anything fails, a full disk included; the old file is then
    untouched. ``durable``: fsync the file and its folder, so that the new content survives a crash of the
    machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """``atomic_write`` of UTF-8 text."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data), durable=durable)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump_yaml(obj: Any) -> str:
    """A config dataclass (or plain containers) as YAML, in field order; PyYAML's safe C emitter."""
    return yaml.dump(_plain(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_yaml(obj: Any, path: str | os.PathLike, durable: bool = True) -> None:
    atomic_write_text(path, dump_yaml(obj), durable=durable)
