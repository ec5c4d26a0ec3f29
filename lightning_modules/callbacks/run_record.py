"""Record every (re)start and end of a fit in the run folder's resume.json (lightning_modules/run_record.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl

from lightning_modules.run_record import append_event, slurm_job_id


class ResumeRecorder(pl.Callback):
    """Appends a start entry (what was restored) and an end entry (complete or not) to ``resume.json``."""

    def __init__(self, run_dir: str | os.PathLike, ckpt_path: Optional[str | os.PathLike]):
        self.run_dir = Path(run_dir)
        self.ckpt_path = str(ckpt_path) if ckpt_path else None

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.is_global_zero:
            append_event(
                self.run_dir,
                {
                    "event": "start",
                    "pid": os.getpid(),
                    "ckpt": self.ckpt_path,
                    "epoch": trainer.current_epoch,
                    "global_step": trainer.global_step,
                    "slurm_job_id": slurm_job_id(),
                    "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                },
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.is_global_zero:
            complete = trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs
            append_event(
                self.run_dir,
                {
                    "event": "end",
                    "epoch": trainer.current_epoch,
                    "global_step": trainer.global_step,
                    "complete": complete,
                },
            )
