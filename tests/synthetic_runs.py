"""Run folders (config.yaml + per_class.csv, as `classreg fit` writes them) with per-class results of known truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from launch.config import load_config, save_resolved


def write_run(folder: Path, overrides: list[str], correct, total, class_names, epochs: int = 2) -> Path:
    """A run folder whose last epoch has ``correct``/``total`` per class (earlier epochs are worse)."""
    cfg = load_config(None, [f"out_dir={folder.parent}", f"name={folder.name}", *overrides])
    folder.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, folder / "config.yaml")
    with open(folder / "per_class.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "class_index", "class_name", "correct", "total", "accuracy"])
        for epoch in range(epochs):
            for i, (c, t) in enumerate(zip(correct, total)):
                c = int(c) if epoch == epochs - 1 else int(c) // 2
                w.writerow([epoch, i, class_names[i], c, int(t), f"{c / t:.6f}"])
    return folder


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
