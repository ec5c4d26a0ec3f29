"""Report step 1: read every run under the given folders, keep the finished ones, and group them into settings.

Only finished runs are replicates (launch/report/finished.py); the others are listed with their state. A
setting with fewer finished seeds than it should have is *partial*: its means are shown, never tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from datamodules.shards.format import resolve_val_split
from launch.report.finished import RunState, run_state, spec_seeds, sweep_folder
from launch.report.progress import progress_bar
from launch.report.runs import (
    RESULTS,
    ReportError,
    Run,
    data_identity,
    read_results,
    read_run_folders,
    setting_label,
    strength_order,
    varying_keys,
)

SPLITS = ("auto", "test", "validation")


def seed_mean(correct: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Per class: accuracy averaged over the runs (rows) that have images of it; NaN where none has."""
    acc = correct / np.where(total > 0, total, np.nan)
    seen = ~np.isnan(acc).all(axis=0)
    out = np.full(acc.shape[1], np.nan)
    out[seen] = np.nanmean(acc[:, seen], axis=0)
    return out


@dataclass
class Setting:
    values: tuple
    label: str
    runs: list  # the finished runs: the replicates
    excluded: list = field(default_factory=list)  # this setting's runs left out (not finished, no results)
    expected: int = 1  # seeds it should have
    correct: np.ndarray = None  # seeds x classes
    total: np.ndarray = None
    real_correct: np.ndarray = None  # ReaL counts, when every run has them
    real_total: np.ndarray = None

    @property
    def acc(self) -> np.ndarray:
        return self.correct / np.where(self.total > 0, self.total, np.nan)

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]

    @property
    def diverged(self) -> bool:
        return any(r.state.state == "diverged" for r in self.excluded)

    @property
    def partial(self) -> bool:
        return len(self.runs) < self.expected

    @property
    def status(self) -> str:
        return (
            "diverged"
            if self.diverged
            else "no finished run"
            if not self.runs
            else "partial"
            if self.partial
            else "complete"
        )

    @property
    def display(self) -> str:
        """The label, marked when the setting is not complete (figures and tables)."""
        if self.diverged:
            return f"{self.label} (diverged)"
        return f"{self.label} (partial: {len(self.runs)}/{self.expected})" if self.partial else self.label


@dataclass
class Study:
    """What the runs say: the settings with finished runs (weakest regularization first), those without."""

    runs: list  # the finished runs used
    excluded: list  # every run left out
    class_names: list[str]
    keys: list[str]
    settings: list[Setting]
    waiting: list[Setting]  # settings without a finished run yet
    split: str  # "test" or "validation"
    has_real: bool  # every run used has ReaL counts
    shards_split: str | None = None  # the shards' split those results are on (validation: `val` or `test`)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.settings]

    @property
    def expected_runs(self) -> int:
        return sum(max(s.expected, len(s.runs)) for s in self.settings + self.waiting)

    @property
    def missing_runs(self) -> int:
        return sum(max(0, s.expected - len(s.runs)) for s in self.settings + self.waiting)


def group_settings(runs: list[Run], keys: list[str], expected: int | None) -> list[Setting]:
    """Every setting of ``runs`` (finished or not), weakest first; ``expected``: seeds each should have."""
    by_repr: dict[str, Setting] = {}
    for run in runs:
        values = tuple(run.config.get(k) for k in keys)
        s = by_repr.setdefault(repr(values), Setting(values, setting_label(keys, values), []))
        (s.runs if run.state.finished else s.excluded).append(run)
    settings = list(by_repr.values())
    most = max(len(s.runs) + len(s.excluded) for s in settings)
    strength = strength_order(keys, [s.values for s in settings])
    order = sorted(range(len(settings)), key=lambda i: (strength[i], repr(settings[i].values)))
    settings = [settings[i] for i in order]
    for s in settings:
        s.expected = expected if expected else max(most, len(s.runs) + len(s.excluded))
        s.runs.sort(key=lambda r: (repr(r.seed), str(r.path)))
        if s.runs:
            s.correct = np.stack([r.per_class["correct"].to_numpy() for r in s.runs])
            s.total = np.stack([r.per_class["total"].to_numpy() for r in s.runs])
            if all(r.has_real for r in s.runs):
                s.real_correct = np.stack([r.per_class["real_correct"].to_numpy() for r in s.runs])
                s.real_total = np.stack([r.per_class["real_total"].to_numpy() for r in s.runs])
    return settings


def check_classes(runs) -> list[str]:
    names = runs[0].per_class["class_name"].astype(str).tolist()
    for run in runs[1:]:
        other = run.per_class["class_name"].astype(str).tolist()
        if other != names:
            raise ReportError(
                f"{run.path}/{RESULTS['validation']} has {len(other)} classes that differ from the {len(names)} "
                f"of {runs[0].path}; report on runs of one dataset at a time"
            )
    return names


def choose_split(finished: list[Run], wanted: str, console: Console) -> str:
    """``test`` when every finished run has test results (or when asked), else ``validation``."""
    with_test = [r for r in finished if (r.path / RESULTS["test"]).is_file()]
    if wanted == "test":
        if len(with_test) < len(finished):
            lacking = next(r.path for r in finished if r not in with_test)
            raise ReportError(
                f"--split test: {len(finished) - len(with_test)} finished run(s) have no {RESULTS['test']}, "
                f"e.g. {lacking} (written when model selection used a separate validation split); "
                "use --split validation"
            )
        return "test"
    if wanted == "validation" or not with_test:
        return "validation"
    if len(with_test) < len(finished):
        console.print(
            f"[yellow]note:[/yellow] only {len(with_test)} of {len(finished)} finished runs have "
            f"{RESULTS['test']}: every run is reported on its validation split ({RESULTS['validation']})"
        )
        return "validation"
    return "test"


def same_data_roots(runs: list[Run], console: Console) -> None:
    """Runs whose data.root folders hold the same shards get one data.root value (the first path)."""
    roots = sorted({r.config["data.root"] for r in runs if isinstance(r.config.get("data.root"), str)})
    if len(roots) < 2:
        return
    identity = {root: data_identity(root) for root in roots}
    first: dict[str, str] = {}
    for root in roots:
        if identity[root] is not None:
            first.setdefault(identity[root], root)
    merged = {root: first[identity[root]] for root in roots if identity[root] is not None}
    for r in runs:
        r.config["data.root"] = merged.get(r.config.get("data.root"), r.config.get("data.root"))
    joined = [sorted(k for k, v in merged.items() if v == rep) for rep in set(merged.values())]
    for group in (g for g in joined if len(g) > 1):
        console.print(
            f"[yellow]note:[/yellow] data.root differs ({escape(', '.join(group))}) but the shards are the same "
            "(every shard's sha256 and the class names): one setting"
        )


def validated_split(runs: list[Run]) -> str | None:
    """The shards' split every run validated on (``data.val_split`` resolved by its manifest), if one and known."""
    names = set()
    for root, requested in {(r.config.get("data.root"), r.config.get("data.val_split")) for r in runs}:
        try:
            splits = json.loads((Path(str(root)) / "manifest.json").read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        names.add(resolve_val_split(requested or "auto", splits))
    return names.pop() if len(names) == 1 else None


def expected_seeds(paths: list[Path], wanted: int) -> int | None:
    """Seeds per setting: ``wanted`` (--seeds), else every given folder's sweep spec if they agree, else None."""
    if wanted:
        return wanted
    sweeps = [sweep_folder(p.resolve()) for p in paths]
    if not sweeps or any(s is None for s in sweeps):
        return None
    counts = {spec_seeds(s) for s in sweeps}
    return counts.pop() if len(counts) == 1 and None not in counts else None


def note_excluded(excluded: list[Run], total: int, console: Console) -> None:
    if not excluded:
        return
    by_state: dict[str, int] = {}
    for r in excluded:
        by_state[r.state.state] = by_state.get(r.state.state, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items(), key=lambda x: -x[1]))
    console.print(
        f"[yellow]note:[/yellow] {len(excluded)} of {total} runs are not finished and are left out ({states}); "
        "report.html and report.json (excluded_runs) list them all, e.g.:"
    )
    for r in excluded[:5]:
        console.print(f"  {escape(str(r.path))}: {escape(r.state.describe())}", soft_wrap=True)


def read_study(paths: list[Path], options, console: Console, progress: bool) -> Study:
    """``options``: the ReportOptions (``ignore``, ``split``, ``seeds``)."""
    folders = read_run_folders(paths)
    runs = []
    with progress_bar(console, progress) as bar:
        task = bar.add_task("reading runs", total=len(folders))
        for folder, config in folders:
            runs.append(Run(folder, config, run_state(folder, config)))
            bar.advance(task)
        finished = [r for r in runs if r.state.finished]
        if not finished:
            states = sorted({r.state.state for r in runs})
            raise ReportError(
                f"no finished run under {', '.join(map(str, paths))} yet ({len(runs)} run folder(s): "
                f"{', '.join(states)}); the report needs finished runs (`classreg sweep status D` shows progress)"
            )
        split = choose_split(finished, options.split, console)
        task = bar.add_task("reading results", total=len(finished))
        for r in finished:
            if (r.path / RESULTS[split]).is_file():
                r.per_class, r.epoch = read_results(r.path, split)
            else:
                r.state = RunState("no results", r.state.last_epoch, r.state.max_epochs, f"no {RESULTS[split]}")
            bar.advance(task)
    used = [r for r in runs if r.per_class is not None]
    if not used:
        raise ReportError(f"no finished run under {', '.join(map(str, paths))} has {RESULTS[split]}")
    class_names = check_classes(used)
    same_data_roots(runs, console)
    keys = varying_keys(runs, tuple(options.ignore))
    grouped = group_settings(runs, keys, expected_seeds(paths, options.seeds))
    excluded = [r for r in runs if r.per_class is None]
    note_excluded(excluded, len(runs), console)
    has_real = all(r.has_real for r in used)
    if not has_real and any(r.has_real for r in used):
        console.print(
            f"[yellow]note:[/yellow] only {sum(r.has_real for r in used)} of {len(used)} runs have ReaL counts: "
            "the ReaL reanalysis is left out"
        )
    settings = [s for s in grouped if s.runs]
    for s in settings:
        repeated = sorted({repr(x) for x in s.seeds if s.seeds.count(x) > 1})
        if repeated:
            console.print(
                f"[yellow]note:[/yellow] {escape(s.label)} has several runs with seed {', '.join(repeated)}; "
                "they count as separate replicates (vary `seed`, or --ignore the key that tells them apart)"
            )
    waiting = [s for s in grouped if not s.runs]
    shards_split = "test" if split == "test" else validated_split(used)
    return Study(used, excluded, class_names, keys, settings, waiting, split, has_real, shards_split)
