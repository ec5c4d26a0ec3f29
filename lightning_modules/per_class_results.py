"""Write per-class validation results next to the run: per_class.csv (history), metrics.json and, when
asked for, confusion_matrices/epoch_NNN.csv."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from launch.config import atomic_write_text
from lightning_modules.per_class_metrics import PerClassResult

CSV_FIELDS = ["epoch", "class_index", "class_name", "correct", "total", "accuracy"]
# Added after the first six (readers of those keep working); ReaL columns are empty when ReaL is off.
EXTRA_FIELDS = ["top5_correct", "top5_accuracy", "predicted", "precision", "recall",
                "real_correct", "real_total", "real_accuracy"]


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6f}"


def per_class_rows(result: PerClassResult, epoch: int) -> list[dict]:
    acc, top5, prec, real_acc = result.accuracy, result.top5_accuracy, result.precision, result.real_accuracy
    rows = []
    for i, name in enumerate(result.class_names):
        row = {"epoch": epoch, "class_index": i, "class_name": name, "correct": int(result.correct[i]),
               "total": int(result.total[i]), "accuracy": _fmt(acc[i]), "top5_correct": int(result.top5_correct[i]),
               "top5_accuracy": _fmt(top5[i]), "predicted": int(result.predicted[i]), "precision": _fmt(prec[i]),
               "recall": _fmt(acc[i]), "real_correct": "", "real_total": "", "real_accuracy": ""}
        if real_acc is not None:
            row.update(real_correct=int(result.real_correct[i]), real_total=int(result.real_total[i]),
                       real_accuracy=_fmt(real_acc[i]))
        rows.append(row)
    return rows


def confusion_csv(result: PerClassResult) -> str:
    """Rows: true class, columns: predicted class; the first column and the header name the classes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true/predicted", *result.class_names])
    for name, row in zip(result.class_names, result.confusion):
        writer.writerow([name, *row.tolist()])
    return buf.getvalue()


def read_per_class_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class PerClassResultsWriter(pl.Callback):
    """After each validation (rank 0 only), append to per_class.csv and rewrite metrics.json atomically."""

    def __init__(self, run_dir: str | Path, class_names: list[str], worst_fraction: float = 0.1):
        self.run_dir = Path(run_dir)
        self.class_names = class_names
        self.worst_fraction = worst_fraction

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or pl_module.last_results is None:
            return
        result: PerClassResult = pl_module.last_results
        epoch = trainer.current_epoch
        csv_path = self.run_dir / "per_class.csv"
        # Rewrite the whole file each time (atomically); a validation repeated after a resume replaces its epoch.
        previous = [r for r in read_per_class_csv(csv_path) if int(r["epoch"]) != epoch] if csv_path.exists() else []
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS + EXTRA_FIELDS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(previous)
        writer.writerows(per_class_rows(result, epoch))
        atomic_write_text(csv_path, buf.getvalue())
        if result.confusion is not None:
            atomic_write_text(self.run_dir / "confusion_matrices" / f"epoch_{epoch:03d}.csv", confusion_csv(result))

        metrics_path = self.run_dir / "metrics.json"
        history = json.loads(metrics_path.read_text())["history"] if metrics_path.exists() else []
        history = [h for h in history if h["epoch"] != epoch]
        summary = {"epoch": epoch, "global_step": trainer.global_step, **result.summary(self.worst_fraction)}
        history.append(summary)
        best = max(history, key=lambda h: h["accuracy"])
        atomic_write_text(metrics_path, json.dumps({"last": summary, "best": best, "history": history}, indent=1))
