"""Reading checkpoints without running code in them, and writing them so that a failure loses nothing.

A torch checkpoint is a pickle, and unpickling runs whatever functions the file names: a ``last.ckpt``
planted in a shared run folder would run its code in the process that resumes or probes it. classreg loads
every checkpoint with ``torch.load(weights_only=True)``, which rebuilds only tensors and plain values;
classreg's own checkpoints hold nothing else (the Classifier saves its config as plain containers). A
checkpoint that needs more is refused, naming the file and the objects it asks for; ``--trust-checkpoints``
(``classreg fit``, ``classreg transfer``; never a config key, which a shared preset could set) loads it
with full unpickling for a user who trusts whoever wrote it.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: the checkpoint goes to a file in the
system's temporary folder, then ``shutil.move``s to the run folder. Where those are different filesystems (node-
local ``/tmp``, run folders on NFS or Lustre: the usual cluster) the move is a copy over the old file, so a job
killed during it (the time limit's SIGKILL while the requeue handler saves, Lightning #21406; the OOM killer)
or a full disk leaves ``last.ckpt`` cut short and the previous good checkpoint gone. Here the checkpoint is
written next to its target under one fixed name (``.<name>.partial``: a save killed earlier is overwritten, not
piled up, and the name does not read as one of Lightning's ``hpc_ckpt_<n>`` versions), flushed to disk, then
renamed over it: a restart sees the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from datamodules.configkit import ClassregError, atomic_write

TRUST_FLAG = "--trust-checkpoints"


class CheckpointError(ClassregError):
    """A checkpoint cannot be read safely; the message names it and the fix."""


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    atomic_write(path, lambda fh: torch.save(checkpoint, fh), tmp=partial_path(path))


def _needs_unpickling(path, found: list[str]) -> CheckpointError:
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return CheckpointError(
        f"checkpoint {path} holds Python objects that only unpickling can rebuild ({shown or 'not tensors'}), and "
        "unpickling runs whatever code the file names, so classreg does not do it. Delete or move the file if you "
        f"did not write it; if you trust whoever wrote it, rerun with {TRUST_FLAG}"
    )


def _unreadable(path, e: Exception) -> CheckpointError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return CheckpointError(f"checkpoint {path} cannot be read ({first[:160]}): it is damaged or not a torch checkpoint")


def check_checkpoint(path: str | os.PathLike, trust: bool = False) -> None:
    """Raise CheckpointError when ``path`` needs more than tensors and plain values (unless ``trust``).

    Scans the pickle's global names without loading any tensor: cheap enough to run before any work starts."""
    if trust:
        return
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise _unreadable(path, e) from None
    if found:
        raise _needs_unpickling(path, found)


def load_checkpoint(
    path: str | os.PathLike, trust: bool = False, map_location: Optional[Callable | str] = "cpu"
) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=not trust``; errors become CheckpointErrors naming ``path``."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError:
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            found = []
        raise _needs_unpickling(path, found) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise _unreadable(path, e) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    return checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, loading with ``weights_only=True`` whatever the caller asks (unless ``trust``),
    saving atomically in place.

    Lightning loads a resume checkpoint (``Trainer.fit(ckpt_path=...)``) through the strategy's CheckpointIO,
    also on the paths that do not pass ``weights_only`` on."""

    def __init__(self, trust: bool = False):
        super().__init__()
        self.trust = trust

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, self.trust, map_location)
