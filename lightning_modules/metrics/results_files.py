"""The per-class results files of a run folder: the rows of per_class.csv, a confusion matrix as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from lightning_modules.metrics.per_class_metrics import PerClassResult

CSV_FIELDS = ["epoch", "class_index", "class_name", "correct", "total", "accuracy"]
# Added after the first six (readers of those keep working); ReaL columns are empty when ReaL is off.
EXTRA_FIELDS = [
    "top5_correct",
    "top5_accuracy",
    "predicted",
    "precision",
    "recall",
    "real_correct",
    "real_total",
    "real_accuracy",
]


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6f}"


def per_class_rows(result: PerClassResult, epoch: int) -> list[dict]:
    acc, top5, prec, real_acc = result.accuracy, result.top5_accuracy, result.precision, result.real_accuracy
    rows = []
    for i, name in enumerate(result.class_names):
        row = {
            "epoch": epoch,
            "class_index": i,
            "class_name": name,
            "correct": int(result.correct[i]),
            "total": int(result.total[i]),
            "accuracy": _fmt(acc[i]),
            "top5_correct": int(result.top5_correct[i]),
            "top5_accuracy": _fmt(top5[i]),
            "predicted": int(result.predicted[i]),
            "precision": _fmt(prec[i]),
            "recall": _fmt(acc[i]),
            "real_correct": "",
            "real_total": "",
            "real_accuracy": "",
        }
        if real_acc is not None:
            row.update(
                real_correct=int(result.real_correct[i]),
                real_total=int(result.real_total[i]),
                real_accuracy=_fmt(real_acc[i]),
            )
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
