"""Report step 2: the reference and best-mean settings, and every setting compared class by class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console

from launch.report.progress import progress_bar
from launch.report.read import Study
from launch.report.runs import ReportError, parse_selector
from launch.report.stats import compare


@dataclass
class Analysis:
    ref: int  # the reference setting
    best: int  # the setting with the best mean class accuracy
    focus: int  # the setting the class table and figures compare with the reference
    run_means: list[np.ndarray]  # per setting: the mean class accuracy of each run
    setting_mean: np.ndarray  # per setting: mean over seeds of the mean class accuracy
    class_mean: np.ndarray  # settings x classes: accuracy, mean over seeds
    comparisons: dict  # (baseline name, setting index) -> stats.Comparison
    headline: str = ""


def analyse(study: Study, options, console: Console, progress: bool) -> Analysis:
    settings = study.settings
    ref = (
        parse_selector(options.reference, study.keys, [s.values for s in settings], "--reference")
        if options.reference
        else 0
    )
    run_means = [np.nanmean(s.acc, axis=1) for s in settings]
    setting_mean = np.array([m.mean() for m in run_means])
    best = int(np.argmax(setting_mean))
    class_mean = np.stack([np.nanmean(s.acc, axis=0) for s in settings])
    focus = (
        best if best != ref else int(np.argmax(np.abs(setting_mean - setting_mean[ref]))) if len(settings) > 1 else ref
    )
    comparisons: dict[tuple[str, int], object] = {}
    with progress_bar(console, progress) as bar:
        baselines = [("reference", ref)] + ([("best", best)] if best != ref else [])
        task = bar.add_task("testing classes", total=len(baselines) * (len(settings) - 1))
        for base_name, b in baselines:
            for j, s in enumerate(settings):
                if j == b:
                    continue
                try:
                    comparisons[(base_name, j)] = compare(
                        (settings[b].correct, settings[b].total),
                        (s.correct, s.total),
                        options.fdr,
                        options.test,
                        seeds=(settings[b].seeds, s.seeds),
                    )
                except ValueError as e:
                    raise ReportError(f"--test {options.test}: {e} ({settings[b].label} vs {s.label})") from None
                bar.advance(task)
    analysis = Analysis(ref, best, focus, run_means, setting_mean, class_mean, comparisons)
    analysis.headline = headline(study, analysis, options.fdr)
    return analysis


def _pct(x) -> str:
    return f"{100 * x:.0f}%"


def headline(study: Study, a: Analysis, fdr: float) -> str:
    settings, ref, best, names = study.settings, a.ref, a.best, study.class_names
    setting_mean, class_mean, comparisons = a.setting_mean, a.class_mean, a.comparisons
    seeds = sorted({len(s.runs) for s in settings})
    per = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    tail = f" ({per} seed{'s' if seeds[-1] > 1 else ''} per setting, FDR {fdr:g})"
    if best == ref:
        if len(settings) == 1:
            return f"only one setting ({settings[ref].label}): nothing to compare" + tail
        return (
            f"the reference setting {settings[ref].label} already has the best mean accuracy "
            f"({100 * setting_mean[ref]:.1f}%): no setting raises it" + tail
        )
    comp = comparisons[("reference", best)]
    lowered = np.flatnonzero(comp.significant & (comp.delta < 0))
    gain = 100 * (setting_mean[best] - setting_mean[ref])
    text = (
        f"best-mean setting {settings[best].label} raises mean accuracy by {gain:.1f} points over "
        f"{settings[ref].label} and significantly lowers "
        + (f"{len(lowered)} class{'es' if len(lowered) != 1 else ''}" if len(lowered) else "no class")
    )
    if len(lowered):
        w = lowered[np.argmin(comp.delta[lowered])]
        text += f" (worst: {names[w]}, from {_pct(class_mean[ref, w])} to {_pct(class_mean[best, w])})"
    elif np.nanmin(comp.delta) < 0:
        w = int(np.nanargmin(comp.delta))
        text += (
            f" (largest drop, not significant: {names[w]}, from {_pct(class_mean[ref, w])} "
            f"to {_pct(class_mean[best, w])})"
        )
    else:
        text += " (no class dropped)"
    return text + tail
