"""Report step 1: read every run under the given folders and group the runs into settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from launch.report.progress import progress_bar
from launch.report.runs import (
    ReportError,
    find_runs,
    read_run,
    setting_label,
    strength_order,
    unfinished_runs,
    varying_keys,
)


@dataclass
class Setting:
    values: tuple
    label: str
    runs: list
    correct: np.ndarray = None  # seeds x classes
    total: np.ndarray = None

    @property
    def acc(self) -> np.ndarray:
        return self.correct / np.where(self.total > 0, self.total, np.nan)

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]


@dataclass
class Study:
    """What the runs say: the settings (weakest regularization first), the keys that tell them apart."""

    runs: list
    class_names: list[str]
    keys: list[str]
    settings: list[Setting]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.settings]


def group_settings(runs, keys) -> list[Setting]:
    by_repr: dict[str, Setting] = {}
    for run in runs:
        values = tuple(run.config.get(k) for k in keys)
        by_repr.setdefault(repr(values), Setting(values, setting_label(keys, values), [])).runs.append(run)
    settings = list(by_repr.values())
    strength = strength_order(keys, [s.values for s in settings])
    order = sorted(range(len(settings)), key=lambda i: (strength[i], repr(settings[i].values)))
    settings = [settings[i] for i in order]
    for s in settings:
        s.runs.sort(key=lambda r: (repr(r.seed), str(r.path)))
        s.correct = np.stack([r.per_class["correct"].to_numpy() for r in s.runs])
        s.total = np.stack([r.per_class["total"].to_numpy() for r in s.runs])
    return settings


def check_classes(runs) -> list[str]:
    names = runs[0].per_class["class_name"].astype(str).tolist()
    for run in runs[1:]:
        other = run.per_class["class_name"].astype(str).tolist()
        if other != names:
            raise ReportError(
                f"{run.path}/per_class.csv has {len(other)} classes that differ from the {len(names)} of "
                f"{runs[0].path}/per_class.csv; report on runs of one dataset at a time"
            )
    return names


def read_study(paths: list[Path], ignore: tuple[str, ...], console: Console, progress: bool) -> Study:
    folders = find_runs(paths)
    pending = unfinished_runs(paths)
    if pending:
        console.print(
            f"[yellow]note:[/yellow] {len(pending)} folder(s) hold a config.yaml but no per_class.csv "
            f"(unfinished or failed runs?) and are left out, e.g. {escape(str(pending[0]))}"
        )
    with progress_bar(console, progress) as bar:
        task = bar.add_task("reading runs", total=len(folders))
        runs = []
        for folder in folders:
            runs.append(read_run(folder))
            bar.advance(task)
    class_names = check_classes(runs)
    keys = varying_keys(runs, ignore)
    settings = group_settings(runs, keys)
    for s in settings:
        repeated = sorted({repr(x) for x in s.seeds if s.seeds.count(x) > 1})
        if repeated:
            console.print(
                f"[yellow]note:[/yellow] {escape(s.label)} has several runs with seed {', '.join(repeated)}; "
                "they count as separate replicates (vary `seed`, or --ignore the key that tells them apart)"
            )
    return Study(runs, class_names, keys, settings)
