"""Stop a run whose training loss is no longer finite, and record where in metrics.json.

Every step checks the loss on the device (no host synchronisation); every
``trainer.log_every_n_steps`` steps, before each validation and at the end of each training epoch (so before a
checkpoint is written), the ranks gather the first non-finite step any of them saw, and all of them stop
together: ``TrainingDiverged`` ("training diverged at epoch E step S ..."). Rank 0 first adds
``"diverged": {"epoch": E, "step": S, "loss": "nan"}`` to metrics.json, which `classreg sweep` reads as the
point's failure reason and the report uses to leave the setting out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules.configkit import ClassregError, atomic_write_text

NOT_YET = -1


class TrainingDiverged(ClassregError):
    """The training loss became NaN or infinite; the message says where and what to change."""


def record_divergence(run_dir: Path, epoch: int, step: int, loss: float) -> None:
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["diverged"] = {"epoch": epoch, "step": step, "loss": str(loss)}  # "nan", "inf": not JSON numbers
    atomic_write_text(path, json.dumps(metrics, indent=1))


class DivergenceGuard(pl.Callback):
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def on_train_start(self, trainer, pl_module):
        # (epoch, global step) of the current batch, and of the first batch with a non-finite loss on this rank
        self.now = torch.zeros(2, dtype=torch.long, device=pl_module.device)
        self.first = torch.full((2,), NOT_YET, dtype=torch.long, device=pl_module.device)
        self.first_loss = torch.zeros((), dtype=torch.float64, device=pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.now[0].fill_(trainer.current_epoch)  # kernels with the values as arguments: no host sync
        self.now[1].fill_(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
        new = ~torch.isfinite(loss) & (self.first[1] == NOT_YET)
        self.first = torch.where(new, self.now, self.first)
        self.first_loss = torch.where(new, loss.double(), self.first_loss)
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module):
        self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self.check(trainer)

    def check(self, trainer) -> None:
        """On every rank at the same step: stop all of them if any rank saw a non-finite loss."""
        if not hasattr(self, "first"):
            return
        seen = trainer.strategy.all_gather(torch.cat([self.first.double(), self.first_loss[None]])).view(-1, 3)
        seen = seen[seen[:, 1] != NOT_YET]
        if not len(seen):
            return
        epoch, step, loss = seen[seen[:, 1].argmin()].tolist()
        epoch, step = int(epoch), int(step)
        if trainer.is_global_zero:
            record_divergence(self.run_dir, epoch, step, loss)
        raise TrainingDiverged(
            f"training diverged at epoch {epoch} step {step}: the training loss is {loss} "
            f"(recorded in {self.run_dir / 'metrics.json'}; no checkpoint holds the diverged model). "
            "Lower optim.lr or wd.value, or train with trainer.precision=bf16-mixed rather than 16-mixed"
        )
