"""Global rank 0 holds the run folder's lock for the whole fit; every rank learns whether rank 0 may go on.

Lightning's own launcher (``trainer.devices > 1`` outside SLURM and torchrun) starts the other ranks inside
``Trainer.fit``: a refused rank 0 simply stops before they exist. Ranks that srun or torchrun start next to
rank 0 are already running, and would wait at the first collective for a rank 0 that stopped; so there a
refused rank 0 joins the process group without its loggers and tells them in ``setup`` (after the process
group is up, before any checkpoint is restored or any file written), and all ranks stop together.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import pytorch_lightning as pl

from datamodules.configkit import ClassregError
from lightning_modules.run_folder_lock import RunFolderLock


def _other_ranks_running(trainer: pl.Trainer) -> bool:
    env = getattr(trainer.strategy, "cluster_environment", None)
    return trainer.world_size > 1 and env is not None and env.creates_processes_externally


class RunFolderGate(pl.Callback):
    def __init__(self, run_dir: str | os.PathLike):
        self.lock = RunFolderLock(run_dir)
        self.refusal: Optional[str] = None

    def open(self, trainer: pl.Trainer, start: Callable[[], None]) -> None:
        """On global rank 0: take the lock, then ``start()`` (the checks and writes that need it).

        A refusal (RunFolderBusy, or any ClassregError from ``start``) is raised at once when no other rank is
        running yet; otherwise it is kept for ``setup``."""
        if not trainer.is_global_zero:
            return
        try:
            self.lock.acquire()
            start()
        except ClassregError as e:
            self.lock.release()
            if not _other_ranks_running(trainer):
                raise
            self.refusal = str(e)
            trainer.loggers = []  # the CSV logger would empty logs/metrics.csv of the run that holds the folder

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        refusal = trainer.strategy.broadcast(self.refusal, src=0)
        if refusal:
            raise ClassregError(refusal)

    def close(self) -> None:
        self.lock.release()
