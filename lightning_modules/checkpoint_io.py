"""Checkpoints written so that an interrupted save never replaces a good one.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: the checkpoint goes to a file in the
system's temporary folder, then ``shutil.move``s to the run folder. Where those are different filesystems (node-
local ``/tmp``, run folders on NFS or Lustre: the usual cluster) the move is a copy over the old file, so a job
killed during it (the time limit's SIGKILL while the requeue handler saves, Lightning #21406; the OOM killer)
leaves ``last.ckpt`` cut short and the previous good checkpoint gone. Here the checkpoint is written next to its
target (``.<name>.partial``), flushed to disk, then renamed over it: a restart sees the old checkpoint or the new
one, never half of one (launch/resume.py picks the restart checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from pytorch_lightning.plugins import TorchCheckpointIO


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(target)  # one name per target: a save killed earlier is overwritten, not piled up
        try:
            with open(partial, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash of the node
        finally:
            os.close(fd)
