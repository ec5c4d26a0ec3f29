"""Resuming a run from its own folder: which checkpoint to restart from.

A run restarts from the newest checkpoint in its folder: Lightning's ``hpc_ckpt_<n>.ckpt`` (written by
``SLURMEnvironment``'s SIGUSR1 handler before a requeue, into the run folder) or ``checkpoints/last.ckpt``
(written after every epoch; what is left after a crash or a kill). The path is always given to Lightning
explicitly: ``ckpt_path="hpc"`` fails on a first run that has no hpc checkpoint (Lightning #20347).

Every start and end of a fit is recorded in the run folder's ``resume.json`` (lightning_modules/run_record.py).
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Optional

_HPC = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")


def hpc_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Lightning's hpc checkpoints in ``run_dir``, oldest version first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt") if (m := _HPC.search(p.name))]
    return [p for _, p in sorted(found)]


def intact(path: Path) -> bool:
    """A torch checkpoint is a zip archive; one cut short (killed while saving) has no central directory."""
    return path.is_file() and zipfile.is_zipfile(path)


def find_resume_checkpoint(run_dir: str | os.PathLike) -> Optional[Path]:
    """The newest (by modification time) intact one of the highest hpc checkpoint and checkpoints/last.ckpt.

    After SIGUSR1 Lightning writes the hpc checkpoint, requeues, and ignores the SIGTERM that follows, so
    training may go on (and write last.ckpt) until SIGKILL: the newer file has more progress, unless the
    kill cut it short, hence the check."""
    run_dir = Path(run_dir)
    candidates = [p for p in (*hpc_checkpoints(run_dir)[-1:], run_dir / "checkpoints" / "last.ckpt") if intact(p)]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def keep_previous_log(run_dir: str | os.PathLike) -> Optional[Path]:
    """Move logs/metrics.csv aside (to logs/metrics.<n>.csv) before a resumed fit: Lightning's CSVLogger
    deletes an existing metrics.csv when it starts. Returns the new path, or None if there was none."""
    log = Path(run_dir) / "logs" / "metrics.csv"
    if not log.is_file():
        return None
    n = 1
    while (kept := log.with_name(f"metrics.{n}.csv")).exists():
        n += 1
    os.replace(log, kept)
    return kept
