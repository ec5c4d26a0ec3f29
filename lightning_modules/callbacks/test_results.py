"""Write the final model's per-class results on the test split: per_class_test.csv and metrics.json["test"].

The validation split picks the best checkpoint (per_class.csv, metrics.json "last"/"best"); the test split is
evaluated once, on the final model at the end of fit, so that the numbers a report publishes were never used
for selection.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytorch_lightning as pl

from datamodules.configkit import atomic_write_text
from lightning_modules.metrics.results_files import CSV_FIELDS, EXTRA_FIELDS, per_class_rows

TEST_CSV = "per_class_test.csv"


class FinalEvaluationWriter(pl.Callback):
    """After ``trainer.test`` (rank 0): per_class_test.csv (the columns of per_class.csv) and metrics.json["test"]."""

    def __init__(self, run_dir: str | Path, split: str, epoch: int, global_step: int, worst_fraction: float = 0.1):
        self.run_dir, self.split = Path(run_dir), split
        self.epoch, self.global_step, self.worst_fraction = epoch, global_step, worst_fraction

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        result = pl_module.last_test_results
        if not trainer.is_global_zero or result is None:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS + EXTRA_FIELDS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(per_class_rows(result, self.epoch))
        atomic_write_text(self.run_dir / TEST_CSV, buf.getvalue())
        path = self.run_dir / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        metrics["test"] = {
            "split": self.split,
            "epoch": self.epoch,
            "global_step": self.global_step,
            **result.summary(self.worst_fraction),
        }
        atomic_write_text(path, json.dumps(metrics, indent=1))
