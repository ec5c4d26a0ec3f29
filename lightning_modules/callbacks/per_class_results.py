"""Write per-class validation results next to the run: per_class.csv (history, appended), metrics.json and,
when asked for, confusion_matrices/epoch_NNN.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl

from datamodules.configkit import atomic_write_text
from lightning_modules.metrics.per_class_metrics import PerClassResult
from lightning_modules.metrics.results_files import append_per_class_rows, confusion_csv, per_class_rows


class PerClassResultsWriter(pl.Callback):
    """After each validation (rank 0 only), append to per_class.csv and rewrite metrics.json atomically.

    per_class.csv is never read here: a validation costs the same whatever the number of epochs before it."""

    def __init__(self, run_dir: str | Path, class_names: list[str], worst_fraction: float = 0.1):
        self.run_dir = Path(run_dir)
        self.class_names = class_names
        self.worst_fraction = worst_fraction

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or pl_module.last_results is None:
            return
        self.write(pl_module.last_results, trainer.current_epoch, trainer.global_step)

    def write(self, result: PerClassResult, epoch: int, global_step: int) -> None:
        # A validation repeated after a resume appends its epoch again; readers keep the last (results_files.py).
        append_per_class_rows(self.run_dir / "per_class.csv", per_class_rows(result, epoch))
        if result.confusion is not None:
            atomic_write_text(self.run_dir / "confusion_matrices" / f"epoch_{epoch:03d}.csv", confusion_csv(result))

        metrics_path = self.run_dir / "metrics.json"
        history = json.loads(metrics_path.read_text()).get("history", []) if metrics_path.exists() else []
        history = [h for h in history if h["epoch"] != epoch]
        summary = {"epoch": epoch, "global_step": global_step, **result.summary(self.worst_fraction)}
        history.append(summary)
        best = max(history, key=lambda h: h["accuracy"])
        atomic_write_text(metrics_path, json.dumps({"last": summary, "best": best, "history": history}, indent=1))
