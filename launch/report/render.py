"""Report step 4: the figures and the self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from datamodules.configkit import atomic_write_text
from launch.report import figures, real, write
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
    labels = [s.display for s in settings]
    out = []
    with progress_bar(console, progress) as bar:
        task = bar.add_task("drawing figures", total=4)
        comp = comparisons.get(("reference", focus))
        if comp is not None:
            caption = (
                f"Per-class change in accuracy from the reference ({labels[ref]}) to {labels[focus]}, sorted; "
                + (
                    f"exploratory, so no bar is coloured: {comp.reason}."
                    if comp.exploratory
                    else f"coloured bars are significant at FDR {options.fdr:g}."
                )
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
        if a.repair is not None:
            out.append(_repair_figure(study, a, fig_dir))
    return out


def _repair_figure(study: Study, a: Analysis, fig_dir: Path) -> tuple[str, str, Path]:
    r, labels = a.repair, [s.display for s in study.settings]
    ref, frm, rep = r.setup.to, r.setup.frm, r.setup.rep
    to_best = a.comparisons.get(("reference", frm)) if ref == a.ref else None
    best_delta = a.class_mean[frm] - a.class_mean[ref]
    best_sig = to_best.significant if to_best is not None else np.zeros(len(best_delta), bool)
    rep_delta = a.class_mean[rep] - a.class_mean[ref]
    caption = (
        f"Per-class change from the reference ({labels[ref]}) to the best-mean setting ({labels[frm]}, orange) and "
        f"to the repaired setting ({labels[rep]}, blue), sorted by the first; full colours: significant against "
        f"the reference at FDR {a.fdr:g}; * the repaired classes."
    )
    path = figures.repair_bars(
        study.class_names,
        best_delta,
        best_sig,
        rep_delta,
        r.vs_to.significant,
        set(r.setup.classes),
        [labels[ref], labels[frm], labels[rep]],
        fig_dir / "repair_bars.png",
    )
    return ("repair", caption, path)


def _repair_section(study: Study, a: Analysis, tables: dict):
    r = a.repair
    usual = r.setup.frm == a.best and r.setup.to == a.ref  # else the repair's own from/to settings
    shown = {
        "class_name": "class",
        "reference_accuracy": "reference" if usual else "to",
        "best_accuracy": "best mean" if usual else "from",
        "repaired_accuracy": "repaired",
        "loss": "loss",
        "change_vs_best": "repair change",
        "q_value": "q",
        "significant": "significant",
        "recovered_fraction": "recovered",
        "change_vs_reference": "vs reference",
    }
    df = tables["repair"][list(shown)].rename(columns=shown)
    for c in (shown["reference_accuracy"], shown["best_accuracy"], "repaired", "loss", "repair change", "recovered"):
        df[c] = 100 * df[c].astype(float)
    df["vs reference"] = 100 * df["vs reference"].astype(float)
    if not usual:
        df = df.rename(columns={"vs reference": "vs to"})
    df["q"] = df["q"].astype(float)
    df["significant"] = df["significant"].astype(object)
    s = study.settings
    moved = [
        f"{study.class_names[c]} {100 * r.vs_from.delta[c]:+.1f}"
        for c in range(len(study.class_names))
        if c not in r.setup.classes and not r.vs_from.exploratory and r.vs_from.significant[c]
    ]
    text = (
        f"{r.headline}. Repaired setting {s[r.setup.rep].label}: {s[r.setup.frm].label} with the augmentation of "
        f"{s[r.setup.to].label} for {len(r.setup.classes)} class(es). Loss: reference minus best mean; repair "
        "change and its q: repaired against best mean (the report's test, FDR over all classes); recovered: repair "
        f"change / loss (%). Mean accuracy: {100 * r.mean_change:+.2f} points against best mean, "
        f"{100 * r.mean_change_vs_to:+.2f} against the reference. "
        + (
            "Other classes the repair changes significantly against best mean: " + ", ".join(moved) + "."
            if moved
            else "No other class changes significantly against best mean."
        )
        + (f" Exploratory: {r.vs_from.reason}." if r.vs_from.exploratory else "")
    )
    return ("repair", "Class-conditional repair (Kirichenko et al. 2023)", text, df)


def _class_table(study: Study, a: Analysis) -> pd.DataFrame:
    settings, names, ref, focus = study.settings, study.class_names, a.ref, a.focus
    comp = a.comparisons.get(("reference", focus))
    empty = np.full(len(names), np.nan)
    table = pd.DataFrame(
        {
            "class": names,
            "index": np.arange(len(names)),
            f"reference: {settings[ref].display}": 100 * a.class_mean[ref],
            f"{settings[focus].display}": 100 * a.class_mean[focus],
            "change": 100 * (comp.delta if comp else np.zeros(len(names))),
            "p": comp.p_value if comp else empty,
            "q": np.where(np.isfinite(comp.p_value), comp.q_value, np.nan) if comp else empty,
            "df": comp.df if comp else empty,
        }
    )
    real_comp = a.real_comparisons.get(("reference", focus))
    if real_comp is not None:
        table["ReaL change"] = 100 * real_comp.delta
        table["ReaL q"] = np.where(np.isfinite(real_comp.p_value), real_comp.q_value, np.nan)
        table["drop left under ReaL"] = real.drop_remaining(comp, real_comp)
    for j, s in enumerate(settings):
        if j not in (ref, focus):
            table[s.display] = 100 * a.class_mean[j]
    return table


def _settings_table(study: Study, a: Analysis, settings_df: pd.DataFrame) -> pd.DataFrame:
    shown = {
        "setting": "setting",
        "status": "status",
        "mean_class_accuracy": "mean",
        "sd_over_seeds": "sd",
        "worst_class": "worst class",
        "worst_class_accuracy": "worst",
        "change_vs_reference": "change",
        "lowered_vs_reference": "lowered",
        "raised_vs_reference": "raised",
    }
    table = settings_df[list(shown)].rename(columns=shown).astype(object)
    for c in ("mean", "sd", "worst", "change"):
        table[c] = 100 * table[c].astype(float)
    roles = {a.ref: "reference", a.best: "best mean"} | ({a.repair.setup.rep: "repaired"} if a.repair else {})
    table.insert(1, "role", [roles.get(j, "") for j in range(len(settings_df))])
    table.insert(3, "seeds", [f"{r.seeds}/{r.seeds_expected}" for r in settings_df.itertuples()])
    return table


def _sections(study: Study, a: Analysis, tables: dict) -> list:
    tests = tables["tests"]
    shown = tests[["baseline", "setting", "lowered", "raised", "method"]].astype(object)
    out = [
        (
            "tests",
            "Comparisons",
            "Classes significantly lowered and raised per comparison, and what stands behind its p-values "
            "(docs/statistics.md); exploratory comparisons show changes only.",
            shown.rename(columns={"method": "test"}),
        )
    ]
    if study.has_real:
        summary = write.real_summaries(study, a)
        main = next(
            (r for r in summary if r["baseline"] == "reference" and r["setting"] == study.labels[a.focus]), None
        )
        text = (main["sentence"] + " " if main else "") + (
            "Per class: the class table's ReaL columns; every comparison: comparisons.csv (real_*) and "
            "report.json (real)."
        )
        out.append(("real", "ReaL labels (Kirichenko et al. 2023)", text, None))
    if a.repair is not None:
        out.insert(0, _repair_section(study, a, tables))
    excluded = tables["excluded_runs"]
    if len(excluded):
        cols = [c for c in ("run", "setting", "seed", "state", "last_epoch", "max_epochs", "reason") if c in excluded]
        out.append(
            (
                "excluded",
                "Runs left out",
                f"{len(excluded)} run(s) are not finished (or have no results of the {study.split} split) and are "
                f"not replicates; {study.missing_runs} of {study.expected_runs} runs are missing. "
                "last_epoch: the last validated epoch (0-based). A setting with a run missing is partial: its "
                "finished seeds' means are shown, never tested.",
                excluded[cols].astype(object),
            )
        )
    return out


def write_html(study: Study, a: Analysis, options, tables: dict, figs, path: Path) -> Path:
    settings, labels, ref, focus, comp = study.settings, study.labels, a.ref, a.focus, None
    comp = a.comparisons.get(("reference", focus))

    def row_class(i):
        if comp is None or not comp.significant[i]:
            return ""
        return "sig-lower" if comp.delta[i] < 0 else "sig-higher"

    results = (
        "the final model of every run on the test split (per_class_test.csv)"
        if study.split == "test"
        else "every run's last validation (per_class.csv)"
        + (f", on the shards' {study.shards_split} split" if study.shards_split else "")
    )
    meta = (
        f"{len(study.runs)} finished runs, {len(settings)} settings, {len(study.class_names)} classes; results: "
        f"{results}; varying keys: {', '.join(study.keys) or 'none'}. Test ({labels[ref]} -> "
        f"{labels[focus]}): {a.method}. Accuracies in %, changes in points."
    )
    note = (
        f"Red rows: significantly lower under {labels[focus]} than under the reference {labels[ref]}; "
        "green rows: significantly higher. Change, p, q and df: from the reference to that setting"
        + (f"; exploratory: {comp.reason}." if comp is not None and comp.exploratory else ".")
    )
    page = render(
        options.title,
        a.headline,
        meta,
        _settings_table(study, a, tables["settings"]),
        _class_table(study, a),
        row_class,
        figs,
        note,
        _sections(study, a, tables),
        a.repair.headline if a.repair is not None else "",
    )
    atomic_write_text(path, page)
    return path
