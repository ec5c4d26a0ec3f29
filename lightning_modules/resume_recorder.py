"""Record every (re)start and end of a fit in the run folder's resume.json (read by launch.resume)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl

from launch.config import atomic_write_text
from launch.resume import RECORD, read_record


class ResumeRecorder(pl.Callback):
    """Appends a start entry (what was restored) and an end entry (complete or not) to ``resume.json``."""

    def __init__(self, run_dir: str | os.PathLike, ckpt_path: Optional[str | os.PathLike]):
        self.run_dir = Path(run_dir)
        self.ckpt_path = str(ckpt_path) if ckpt_path else None

    def _append(self, trainer: pl.Trainer, entry: dict) -> None:
        if trainer.is_global_zero:
            record = read_record(self.run_dir) + [{"time": time.time(), **entry}]
            atomic_write_text(self.run_dir / RECORD, json.dumps(record, indent=1))

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._append(trainer, {
            "event": "start", "pid": os.getpid(), "ckpt": self.ckpt_path, "epoch": trainer.current_epoch,
            "global_step": trainer.global_step, "slurm_job_id": _slurm_job_id(),
            "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        })

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        complete = trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs
        self._append(trainer, {"event": "end", "epoch": trainer.current_epoch,
                               "global_step": trainer.global_step, "complete": complete})


def _slurm_job_id() -> Optional[str]:
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")
