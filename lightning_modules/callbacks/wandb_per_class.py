"""W&B per validation: a per-class table, a histogram of per-class accuracy and per-class accuracy scalars; at
the end, the per-class files as an artifact (the summary scalars come from the LightningModule's ``self.log``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from lightning_modules.metrics.per_class_metrics import PerClassResult


class WandbPerClassLogger(pl.Callback):
    """After each validation: a per-class wandb.Table, a histogram of per-class accuracy and the
    ``val/class_acc/<class>`` scalars of up to ``class_scalars`` classes (``class_scalar_items``). At the end:
    per_class.csv and metrics.json as an artifact, ``wandb.finish()``, and for offline runs the ``wandb sync``
    command."""

    def __init__(self, logger: WandbLogger, run_dir: str | Path, class_scalars: int = 100):
        self.logger, self.run_dir, self.class_scalars = logger, Path(run_dir), class_scalars
        self._keys: tuple[list[str], list[str]] | None = None  # (class names, their W&B key parts)

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
        if self._keys is None or self._keys[0] != list(result.class_names):
            self._keys = (list(result.class_names), class_keys(result.class_names))
        logged.update(class_scalar_items(result.accuracy, self._keys[1], self.class_scalars))
        logged["epoch"] = trainer.current_epoch
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


def class_keys(names: list[str]) -> list[str]:
    """One W&B key part per class name: no ``/`` or ``.`` (W&B would nest them), no spaces, never empty, unique
    (a clash gets the class index appended)."""
    keys = [re.sub(r"[^\w-]+", "_", str(n)).strip("_") or f"class_{i}" for i, n in enumerate(names)]
    taken: dict[str, int] = {}
    for k in keys:
        taken[k] = taken.get(k, 0) + 1
    out, used = [], set()
    for i, k in enumerate(keys):
        if taken[k] > 1 or k in used:
            k = f"{k}_{i}"
            while k in used:
                k += "_"
        used.add(k)
        out.append(k)
    return out


def class_scalar_items(accuracy: np.ndarray, keys: list[str], budget: int) -> dict[str, float]:
    """``val/class_acc/<key>``: every class evaluated when there are at most ``budget``; else the ceil(budget/2)
    worst and budget//2 best of this validation (classes without validation images are left out)."""
    evaluated = [i for i in range(len(keys)) if not np.isnan(accuracy[i])]
    if len(evaluated) > budget:
        ranked = sorted(evaluated, key=lambda i: (accuracy[i], i))
        worst, best = budget - budget // 2, budget // 2
        evaluated = sorted(ranked[:worst] + (ranked[-best:] if best else []))
    return {f"val/class_acc/{keys[i]}": float(accuracy[i]) for i in evaluated}


def _num(x: float):
    return None if np.isnan(x) else float(x)
