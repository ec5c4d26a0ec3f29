"""One `classreg fit` at a time per run folder: a non-blocking file lock, and a note of who holds it.

A second fit into a folder that a live fit is training would resume from its half-finished ``last.ckpt``,
move its ``logs/metrics.csv`` aside and write ``per_class.csv`` beside it. ``fit.lock`` is a `filelock` lock
(``flock``; the kernel releases it when the holder dies, so a killed or preempted run leaves nothing to clean
up); ``fit.lock.json`` says which process holds it. On a filesystem without ``flock`` the fit goes on unlocked,
with a warning: a lock file there would outlive a preempted holder on another node and block its requeued
run. This module imports no torch.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout

from datamodules.configkit import ClassregError, atomic_write_text
from lightning_modules.run_record import slurm_job_id

LOCK = "fit.lock"
HOLDER = "fit.lock.json"


class RunFolderBusy(ClassregError):
    """Another live `classreg fit` holds the run folder; the message names it and the fix."""


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return f"a process that has not written {HOLDER} yet"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {since}{job})"


class RunFolderLock:
    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self._lock = FileLock(self.run_dir / LOCK, blocking=False, thread_local=False, fallback_to_soft=False)

    def holder(self) -> Optional[dict]:
        try:
            return json.loads((self.run_dir / HOLDER).read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock, or raise RunFolderBusy naming the holder's pid and host."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            raise RunFolderBusy(
                f"run folder {self.run_dir} is in use by another `classreg fit`: {_describe(self.holder())}. "
                "Wait for it to finish (or stop it), or train into another folder (name=... or out_dir=...)"
            ) from None
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise ClassregError(
                    f"cannot lock run folder {self.run_dir} ({e.strerror}): train into a folder you can write "
                    "(name=... or out_dir=...)"
                ) from None
            warnings.warn(
                f"the filesystem of {self.run_dir} has no file locks (flock): a second `classreg fit` into this "
                "folder at the same time is not detected",
                stacklevel=2,
            )
            return
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "slurm_job": slurm_job_id(),
            "command": " ".join(sys.argv)[:500],
        }
        atomic_write_text(self.run_dir / HOLDER, json.dumps(note, indent=1), durable=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            (self.run_dir / HOLDER).unlink(missing_ok=True)
            self._lock.release()
