"""Run folders (config.yaml + per_class.csv, as `classreg fit` writes them) with per-class results of known truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from launch.config import load_config, save_resolved

HEADER = ["epoch", "class_index", "class_name", "correct", "total", "accuracy", "real_correct", "real_total"]


def _write_results(path: Path, epochs: list[int], correct, total, class_names, real=None) -> None:
    """Rows for each epoch; every epoch but the last gets half the counts (an earlier, worse model)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for epoch in epochs:
            last = epoch == epochs[-1]
            for i, (c, t) in enumerate(zip(correct, total)):
                c = int(c) if last else int(c) // 2
                rc, rt = (
                    ("", "") if real is None else (int(real[0][i]) if last else int(real[0][i]) // 2, int(real[1][i]))
                )
                w.writerow([epoch, i, class_names[i], c, int(t), f"{c / t:.6f}" if t else "", rc, rt])


def write_results(
    folder: Path, correct, total, class_names, epochs: int = 2, validated=None, real=None, test=None, metrics=None
) -> Path:
    """What `classreg fit` writes about results: per_class.csv for ``validated`` of ``epochs`` epochs (default:
    all; the last with ``correct``/``total``), metrics.json, and ``per_class_test.csv`` when ``test`` is given."""
    validated = epochs if validated is None else validated
    if validated:
        _write_results(folder / "per_class.csv", list(range(validated)), correct, total, class_names, real)
    if test is not None:
        _write_results(folder / "per_class_test.csv", [epochs - 1], test[0], test[1], class_names)
    if metrics is not None or validated:
        summary = {"last": {"epoch": validated - 1}} if validated else {}
        (folder / "metrics.json").write_text(json.dumps({**summary, **(metrics or {})}))
    return folder


def write_run(
    folder: Path,
    overrides: list[str],
    correct,
    total,
    class_names,
    epochs: int = 2,
    validated: int | None = None,
    real=None,
    test=None,
    metrics: dict | None = None,
) -> Path:
    """A run folder trained for ``epochs`` (``trainer.max_epochs``, unless ``overrides`` set it) whose last
    validation, after ``validated`` epochs (default: all), has ``correct``/``total`` per class.

    ``real``: (real_correct, real_total) per class in the same rows (ReaL on); ``test``: (correct, total) of a
    ``per_class_test.csv`` (one epoch, the last); ``metrics``: more metrics.json entries (e.g. ``diverged``)."""
    cfg = load_config(
        None, [f"out_dir={folder.parent}", f"name={folder.name}", f"trainer.max_epochs={epochs}", *overrides]
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, folder / "config.yaml")
    return write_results(folder, correct, total, class_names, epochs, validated, real, test, metrics)


def simulate_counts(rng, base_acc, shift, seeds: int, images: int) -> np.ndarray:
    """seeds x classes correct counts: binomial over ``images`` validation images at base_acc + shift."""
    p = np.clip(np.asarray(base_acc) + np.asarray(shift), 0.0, 1.0)
    return rng.binomial(images, p, size=(seeds, p.shape[-1]))


def write_sweep(
    root: Path,
    settings: dict[str, list[str]],
    truth: dict[str, np.ndarray],
    base_acc,
    seeds: int,
    images: int = 50,
    rng=None,
) -> list[str]:
    """settings: point name -> overrides; truth: point name -> per-class shift. Returns the class names."""
    rng = rng or np.random.default_rng(0)
    names = [f"class_{i:03d}" for i in range(len(base_acc))]
    for point, overrides in settings.items():
        counts = simulate_counts(rng, base_acc, truth[point], seeds, images)
        for s in range(seeds):
            write_run(
                root / point / f"seed{s}" / "run", [*overrides, f"seed={s}"], counts[s], [images] * len(names), names
            )
    return names
