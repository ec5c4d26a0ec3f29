"""W&B per validation: a per-class table and a histogram of per-class accuracy; at the end, the per-class files
as an artifact (the summary scalars come from the LightningModule's ``self.log``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from lightning_modules.metrics.per_class_metrics import PerClassResult


class WandbPerClassLogger(pl.Callback):
    """After each validation: a per-class wandb.Table and a histogram of per-class accuracy (the summary scalars
    come from the LightningModule's ``self.log``). At the end: per_class.csv and metrics.json as an artifact,
    ``wandb.finish()``, and for offline runs the ``wandb sync`` command."""

    def __init__(self, logger: WandbLogger, run_dir: str | Path):
        self.logger, self.run_dir = logger, Path(run_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        result: PerClassResult | None = pl_module.last_results
        if trainer.sanity_checking or not trainer.is_global_zero or result is None:
            return
        import wandb

        real = result.real_accuracy
        table = wandb.Table(
            columns=["class_index", "class_name", "correct", "total", "accuracy", "top5_accuracy", "real_accuracy"]
        )
        for i, name in enumerate(result.class_names):
            table.add_data(
                i,
                name,
                int(result.correct[i]),
                int(result.total[i]),
                _num(result.accuracy[i]),
                _num(result.top5_accuracy[i]),
                None if real is None else _num(real[i]),
            )
        logged = {"val/per_class": table}
        acc = result.accuracy[result.total > 0]
        if len(acc):
            logged["val/class_acc_hist"] = wandb.Histogram(acc.tolist())
        self.logger.log_metrics(logged, step=trainer.global_step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        import wandb

        run = self.logger.experiment
        metrics = self.run_dir / "metrics.json"
        artifact = wandb.Artifact(
            f"per_class-{run.id}",
            type="per_class_results",
            metadata=json.loads(metrics.read_text())["last"] if metrics.is_file() else None,
        )
        for name in ("per_class.csv", "metrics.json"):
            if (self.run_dir / name).is_file():
                artifact.add_file(str(self.run_dir / name))
        if (self.run_dir / "confusion_matrices").is_dir():
            artifact.add_dir(str(self.run_dir / "confusion_matrices"), name="confusion_matrices")
        run.log_artifact(artifact)
        offline = run.settings.mode in ("offline", "dryrun")
        sync_dir = run.settings.sync_dir
        wandb.finish()
        if offline:
            print(f"W&B run {run.id} was logged offline; upload it with:\n  wandb sync {sync_dir}")


def _num(x: float):
    return None if np.isnan(x) else float(x)
