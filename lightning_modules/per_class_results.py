"""Write per-class validation results next to the run: per_class.csv (history) and metrics.json."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytorch_lightning as pl

from launch.config import atomic_write_text

CSV_FIELDS = ["epoch", "class_index", "class_name", "correct", "total", "accuracy"]


def summarize(correct: list[int], total: list[int], class_names: list[str]) -> dict:
    per_class = [(c / t if t else None) for c, t in zip(correct, total)]
    seen = [(a, i) for i, a in enumerate(per_class) if a is not None]
    worst_acc, worst = min(seen) if seen else (None, None)
    return {
        "accuracy": sum(correct) / max(1, sum(total)),
        "mean_class_accuracy": sum(a for a, _ in seen) / len(seen) if seen else None,
        "worst_class_accuracy": worst_acc,
        "worst_class": class_names[worst] if worst is not None else None,
        "samples": sum(total),
        "classes_evaluated": len(seen),
    }


def read_per_class_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class PerClassResultsWriter(pl.Callback):
    """After each validation (rank 0 only), append to per_class.csv and rewrite metrics.json atomically."""

    def __init__(self, run_dir: str | Path, class_names: list[str]):
        self.run_dir = Path(run_dir)
        self.class_names = class_names

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or pl_module.last_per_class is None:
            return
        correct, total = (t.tolist() for t in pl_module.last_per_class)
        epoch = trainer.current_epoch
        csv_path = self.run_dir / "per_class.csv"
        # Rewrite the whole file each time (atomically); a validation repeated after a resume replaces its epoch.
        previous = [r for r in read_per_class_csv(csv_path) if int(r["epoch"]) != epoch] if csv_path.exists() else []
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(previous)
        for i, (c, t) in enumerate(zip(correct, total)):
            writer.writerow({"epoch": epoch, "class_index": i, "class_name": self.class_names[i],
                             "correct": c, "total": t, "accuracy": f"{c / t:.6f}" if t else ""})
        atomic_write_text(csv_path, buf.getvalue())

        metrics_path = self.run_dir / "metrics.json"
        history = json.loads(metrics_path.read_text())["history"] if metrics_path.exists() else []
        history = [h for h in history if h["epoch"] != epoch]
        summary = {"epoch": epoch, "global_step": trainer.global_step, **summarize(correct, total, self.class_names)}
        history.append(summary)
        best = max(history, key=lambda h: h["accuracy"])
        atomic_write_text(metrics_path, json.dumps({"last": summary, "best": best, "history": history}, indent=1))
