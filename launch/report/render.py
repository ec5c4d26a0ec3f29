"""Report step 4: the figures and the self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from datamodules.configkit import atomic_write_text
from launch.report import figures
from launch.report.compare import Analysis
from launch.report.html import render
from launch.report.progress import progress_bar
from launch.report.read import Study
from launch.report.runs import ReportError, numeric, strength_rank


def _strength_axis(keys, settings, ref: int, option: str):
    """(x labels, setting indices along the axis, axis title) for the strength curves."""
    numeric_keys = [k for i, k in enumerate(keys) if all(numeric(s.values[i]) for s in settings)]
    if option:
        hits = [k for k in keys if k == option or k.rsplit(".", 1)[-1] == option]
        if len(hits) != 1:
            raise ReportError(f"--strength '{option}' is not one of the keys that vary: {', '.join(keys) or 'none'}")
        key = hits[0]
    elif numeric_keys:
        key = max(numeric_keys, key=lambda k: len({s.values[keys.index(k)] for s in settings}))
    else:
        key = None
    if key is not None:
        i = keys.index(key)
        ref_values = settings[ref].values
        line = [
            j
            for j, s in enumerate(settings)
            if all(repr(v) == repr(ref_values[m]) for m, v in enumerate(s.values) if m != i)
        ]
        if len(line) >= 2:
            rank = strength_rank(key, [settings[j].values[i] for j in line])
            line.sort(key=lambda j: rank[settings[j].values[i]])
            others = [k for k in keys if k != key]
            title = key + (f" (other keys as in the reference: {settings[ref].label})" if others else "")
            return [str(settings[j].values[i]) for j in line], line, title + ", weakest to strongest"
    line = list(range(len(settings)))
    return [s.label for s in settings], line, "setting, weakest to strongest regularization"


def draw_figures(
    study: Study, a: Analysis, options, fig_dir: Path, console: Console, progress: bool
) -> list[tuple[str, str, Path]]:
    keys, settings, names = study.keys, study.settings, study.class_names
    ref, best, focus = a.ref, a.best, a.focus
    class_mean, setting_mean, comparisons = a.class_mean, a.setting_mean, a.comparisons
    labels = [s.label for s in settings]
    out = []
    with progress_bar(console, progress) as bar:
        task = bar.add_task("drawing figures", total=4)
        comp = comparisons.get(("reference", focus))
        if comp is not None:
            caption = (
                f"Per-class change in accuracy from the reference ({labels[ref]}) to {labels[focus]}, "
                f"sorted; coloured bars are significant at FDR {options.fdr:g}."
            )
            out.append(
                (
                    "delta",
                    caption,
                    figures.delta_sorted(
                        names,
                        comp.delta,
                        comp.significant,
                        f"{labels[ref]}  ->  {labels[focus]}",
                        fig_dir / "delta_sorted.png",
                    ),
                )
            )
        bar.advance(task)
        xlabels, line, axis = _strength_axis(keys, settings, ref, options.strength)
        delta = comp.delta if comp is not None else np.zeros(len(names))
        order = np.argsort(delta)
        k = min(options.curves, max(1, len(names) // 2))
        hurt, helped = [int(i) for i in order[:k]], [int(i) for i in order[::-1][:k] if i not in order[:k]]
        curves = {}
        for c in hurt + helped:
            sds = [np.nanstd(settings[j].acc[:, c], ddof=1) if len(settings[j].runs) > 1 else 0.0 for j in line]
            curves[names[c]] = (class_mean[line, c], np.nan_to_num(np.array(sds)))
        out.append(
            (
                "curves",
                f"Accuracy against {axis}: mean over classes (black), the {k} classes most hurt (red) "
                f"and most helped (green) from the reference to {labels[focus]}; bars are +-1 sd over seeds.",
                figures.strength_curves(
                    np.arange(len(line)),
                    xlabels,
                    axis,
                    setting_mean[line],
                    curves,
                    [names[c] for c in hurt],
                    fig_dir / "strength_curves.png",
                ),
            )
        )
        bar.advance(task)
        worst = np.nanmin(class_mean, axis=1)
        out.append(
            (
                "tradeoff",
                "Mean against worst-class accuracy for every setting.",
                figures.tradeoff(labels, setting_mean, worst, ref, best, fig_dir / "tradeoff.png"),
            )
        )
        bar.advance(task)
        out.append(
            (
                "histograms",
                "Distribution of per-class accuracy (mean over seeds) for each setting; dashed: the mean.",
                figures.histograms(labels, class_mean, fig_dir / "histograms.png"),
            )
        )
        bar.advance(task)
    return out


def write_html(study: Study, a: Analysis, options, settings_df: pd.DataFrame, figs, path: Path) -> Path:
    settings, class_names, labels, keys, runs = study.settings, study.class_names, study.labels, study.keys, study.runs
    ref, best, focus, class_mean, comparisons = a.ref, a.best, a.focus, a.class_mean, a.comparisons
    comp = comparisons.get(("reference", focus))
    class_table = pd.DataFrame(
        {
            "class": class_names,
            "index": np.arange(len(class_names)),
            f"reference: {labels[ref]}": 100 * class_mean[ref],
            f"{labels[focus]}": 100 * class_mean[focus],
            "change": 100 * (comp.delta if comp else np.zeros(len(class_names))),
            "p": comp.p_value if comp else np.ones(len(class_names)),
            "q": comp.q_value if comp else np.ones(len(class_names)),
        }
    )
    for j, s in enumerate(settings):
        if j not in (ref, focus):
            class_table[s.label] = 100 * class_mean[j]

    def row_class(i):
        if comp is None or not comp.significant[i]:
            return ""
        return "sig-lower" if comp.delta[i] < 0 else "sig-higher"

    shown = {
        "setting": "setting",
        "seeds": "seeds",
        "mean_class_accuracy": "mean",
        "sd_over_seeds": "sd",
        "worst_class": "worst class",
        "worst_class_accuracy": "worst",
        "change_vs_reference": "change",
        "lowered_vs_reference": "lowered",
        "raised_vs_reference": "raised",
    }
    settings_table = settings_df[list(shown)].rename(columns=shown)
    for c in ("mean", "sd", "worst", "change"):
        settings_table[c] = 100 * settings_table[c]
    settings_table.insert(
        1, "role", ["reference" if j == ref else "best mean" if j == best else "" for j in range(len(settings))]
    )
    meta = (
        f"{len(runs)} runs, {len(settings)} settings, {len(class_names)} classes; varying keys: "
        f"{', '.join(keys) or 'none'}; test: {options.test}, Benjamini-Hochberg FDR {options.fdr:g}. "
        "Accuracies in %, changes in points."
    )
    note = (
        f"Red rows: significantly lower under {labels[focus]} than under the reference {labels[ref]}; "
        "green rows: significantly higher. Change and p, q: from the reference to that setting."
    )
    atomic_write_text(path, render(options.title, a.headline, meta, settings_table, class_table, row_class, figs, note))
    return path
