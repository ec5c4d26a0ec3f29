"""The report's repair section: reference, best-mean (the repair's ``from``) and repaired settings, class by class.

The repaired setting is the one whose runs lie in a sweep folder holding ``repair.json`` (written by
`classreg repair`); that file names the runs of its ``from`` and ``to`` settings, so the three settings are
found by their run folders, whatever labels the combined report gives them. Per repaired class c (accuracies
as seed means): loss L_c = to_c - from_c, recovered R_c = repaired_c - from_c; the recovered fraction is
sum R_c / sum L_c over the repaired classes (undefined when sum L_c <= 0), and a class "recovers at least half"
when L_c > 0 and R_c >= L_c / 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from launch.report.finished import sweep_folder
from launch.report.stats import Comparison

REPAIR_FILE = "repair.json"  # launch/repair.py writes it


@dataclass
class RepairSetup:
    rep: int  # the repaired setting
    frm: Optional[int]  # its `from` (best-mean) and `to` (reference) settings, when they are in the report
    to: Optional[int]
    classes: list[int]
    record: dict


@dataclass
class RepairResult:
    setup: RepairSetup
    vs_from: Comparison  # repaired against from, every class
    vs_to: Comparison  # repaired against to
    loss: np.ndarray  # per repaired class, to - from
    recovered: np.ndarray  # repaired - from
    fraction: np.ndarray  # recovered / loss (NaN where loss <= 0)
    total_fraction: float  # sum recovered / sum loss (NaN where sum loss <= 0)
    at_least_half: int
    mean_change: float  # mean class accuracy, repaired - from
    mean_change_vs_to: float
    headline: str = ""


def find_repair(paths: list[Path], study) -> Optional[RepairSetup]:
    """The repaired setting among ``study.settings`` (runs under a folder with repair.json), if any."""
    records = {}
    for p in paths:
        sweep = sweep_folder(Path(p).resolve())
        if sweep is not None and (sweep / REPAIR_FILE).is_file():
            try:
                records[sweep] = json.loads((sweep / REPAIR_FILE).read_text())
            except (OSError, ValueError):
                continue
    if len(records) != 1:
        return None
    ((folder, record),) = records.items()

    def setting_of(runs) -> Optional[int]:
        wanted = {Path(r).resolve() for r in runs}
        hits = {j for j, s in enumerate(study.settings) for r in s.runs if r.path.resolve() in wanted}
        return hits.pop() if len(hits) == 1 else None

    rep = {j for j, s in enumerate(study.settings) if any(folder in r.path.resolve().parents for r in s.runs)}
    if len(rep) != 1:
        return None
    names = study.class_names
    classes = [names.index(c) for c in record.get("classes", []) if c in names]
    return RepairSetup(
        rep.pop(), setting_of(record.get("from_runs", [])), setting_of(record.get("to_runs", [])), classes, record
    )


def analyse_repair(study, a, setup: RepairSetup, compare) -> RepairResult:
    """``compare(base, other)``: the report's comparison of two setting indices (calibrated, FDR'd)."""
    frm, to, rep, c = setup.frm, setup.to, setup.rep, np.array(setup.classes, dtype=int)
    cm = a.class_mean
    loss = cm[to, c] - cm[frm, c]
    recovered = cm[rep, c] - cm[frm, c]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(loss > 0, recovered / loss, np.nan)
    total = float(recovered.sum() / loss.sum()) if loss.sum() > 0 else float("nan")
    half = int(np.sum((loss > 0) & (recovered >= loss / 2)))
    result = RepairResult(
        setup,
        compare(frm, rep),
        compare(to, rep),
        loss,
        recovered,
        fraction,
        total,
        half,
        float(a.setting_mean[rep] - a.setting_mean[frm]),
        float(a.setting_mean[rep] - a.setting_mean[to]),
    )
    mean = f"changes mean accuracy by {100 * result.mean_change:+.1f} points"
    if np.isfinite(total):
        result.headline = (
            f"class-conditional augmentation recovers {100 * total:.0f}% of the hurt classes' loss ({half} of "
            f"{len(c)} {'classes recover' if len(c) != 1 else 'class recovers'} at least half) and {mean}"
        )
    else:
        result.headline = (
            f"class-conditional augmentation: the repaired classes lost no accuracy ({100 * loss.sum():+.1f} "
            f"points in all), so there is no loss to recover; it changes their accuracy by "
            f"{100 * recovered.sum():+.1f} points in all, and {mean}"
        )
    if result.vs_from.exploratory:
        result.headline += f" (exploratory: {result.vs_from.reason})"
    return result


def repair_rows(study, a, r: RepairResult) -> list[dict]:
    names, s = study.class_names, study.settings
    rows = []
    for i, c in enumerate(r.setup.classes):
        p, q = r.vs_from.p_value[c], r.vs_from.q_value[c]
        tested = not r.vs_from.exploratory and np.isfinite(p)
        rows.append(
            {
                "class_index": c,
                "class_name": names[c],
                "reference_accuracy": a.class_mean[r.setup.to, c],
                "best_accuracy": a.class_mean[r.setup.frm, c],
                "repaired_accuracy": a.class_mean[r.setup.rep, c],
                "loss": r.loss[i],
                "change_vs_best": r.recovered[i],
                "p_value": p,
                "q_value": q if tested else np.nan,
                "significant": bool(r.vs_from.significant[c]) if tested else None,
                "recovered_fraction": r.fraction[i],
                "change_vs_reference": a.class_mean[r.setup.rep, c] - a.class_mean[r.setup.to, c],
                "significant_vs_reference": bool(r.vs_to.significant[c])
                if not r.vs_to.exploratory and np.isfinite(r.vs_to.p_value[c])
                else None,
            }
        )
    del s
    return rows


def other_significant(study, r: RepairResult) -> list[dict]:
    """Classes not repaired whose accuracy the repair changes significantly against best (errors moved)."""
    comp, repaired = r.vs_from, set(r.setup.classes)
    if comp.exploratory:
        return []
    return [
        {"class_name": study.class_names[c], "change_vs_best": float(comp.delta[c]), "q_value": float(comp.q_value[c])}
        for c in range(len(study.class_names))
        if c not in repaired and comp.significant[c]
    ]


def summary(study, a, r: RepairResult) -> dict:
    s = study.settings
    return {
        "headline": r.headline,
        "rule": "the setting whose runs lie in a sweep folder with repair.json (`classreg repair`)",
        "reference": s[r.setup.to].label,
        "best_mean": s[r.setup.frm].label,
        "repaired": s[r.setup.rep].label,
        "classes": [study.class_names[c] for c in r.setup.classes],
        "aug": r.setup.record.get("aug"),
        "kept_from": r.setup.record.get("kept_from"),
        "recovered_fraction": r.total_fraction,
        "lost_points": float(100 * r.loss.sum()),
        "recovered_points": float(100 * r.recovered.sum()),
        "classes_recovering_half": r.at_least_half,
        "mean_change_vs_best": r.mean_change,
        "mean_change_vs_reference": r.mean_change_vs_to,
        "exploratory": r.vs_from.exploratory,
        "reason": r.vs_from.reason,
        "other_classes_changed": other_significant(study, r),
        "per_class": repair_rows(study, a, r),
    }
