"""Report step 3: the tables (runs, class x setting, comparisons, settings) as CSV and report.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.configkit import atomic_write_text
from launch.report.compare import Analysis
from launch.report.read import Study


def tables(study: Study, a: Analysis) -> dict[str, pd.DataFrame]:
    keys, settings, names = study.keys, study.settings, study.class_names
    ref, best, class_mean, run_means, comparisons = a.ref, a.best, a.class_mean, a.run_means, a.comparisons
    runs_rows, cs_rows, cmp_rows, set_rows = [], [], [], []
    for j, s in enumerate(settings):
        values = dict(zip(keys, s.values))
        acc = s.acc
        for k, run in enumerate(s.runs):
            worst = int(np.nanargmin(acc[k]))
            runs_rows.append(
                {
                    "run": str(run.path),
                    "setting": s.label,
                    **values,
                    "seed": run.seed,
                    "epoch": run.epoch,
                    "mean_class_accuracy": run_means[j][k],
                    "worst_class": names[worst],
                    "worst_class_accuracy": acc[k, worst],
                }
            )
        sd = np.nanstd(acc, axis=0, ddof=1) if len(s.runs) > 1 else np.full(len(names), np.nan)
        for c, name in enumerate(names):
            cs_rows.append(
                {
                    "class_index": c,
                    "class_name": name,
                    "setting": s.label,
                    **values,
                    "seeds": len(s.runs),
                    "mean_accuracy": class_mean[j, c],
                    "sd_accuracy": sd[c],
                    "min_accuracy": np.nanmin(acc[:, c]),
                    "max_accuracy": np.nanmax(acc[:, c]),
                    "correct": int(s.correct[:, c].sum()),
                    "total": int(s.total[:, c].sum()),
                }
            )
        row = {
            "setting": s.label,
            **values,
            "seeds": len(s.runs),
            "mean_class_accuracy": run_means[j].mean(),
            "sd_over_seeds": run_means[j].std(ddof=1) if len(s.runs) > 1 else np.nan,
            "worst_class": names[int(np.nanargmin(class_mean[j]))],
            "worst_class_accuracy": np.nanmin(class_mean[j]),
            "change_vs_reference": run_means[j].mean() - run_means[ref].mean(),
            "is_reference": j == ref,
            "is_best_mean": j == best,
        }
        for base_name in ("reference", "best"):
            comp = comparisons.get((base_name, j))
            row[f"lowered_vs_{base_name}"] = int((comp.significant & (comp.delta < 0)).sum()) if comp else 0
            row[f"raised_vs_{base_name}"] = int((comp.significant & (comp.delta > 0)).sum()) if comp else 0
        set_rows.append(row)
    for (base_name, j), comp in comparisons.items():
        b = ref if base_name == "reference" else best
        for c, name in enumerate(names):
            cmp_rows.append(
                {
                    "baseline": base_name,
                    "baseline_setting": settings[b].label,
                    "setting": settings[j].label,
                    "class_index": c,
                    "class_name": name,
                    "baseline_accuracy": class_mean[b, c],
                    "accuracy": class_mean[j, c],
                    "change": comp.delta[c],
                    "p_value": comp.p_value[c],
                    "q_value": comp.q_value[c],
                    "significant": bool(comp.significant[c]),
                    "test": comp.test,
                }
            )
    cmp_columns = [
        "baseline",
        "baseline_setting",
        "setting",
        "class_index",
        "class_name",
        "baseline_accuracy",
        "accuracy",
        "change",
        "p_value",
        "q_value",
        "significant",
        "test",
    ]
    return {
        "runs": pd.DataFrame(runs_rows),
        "class_settings": pd.DataFrame(cs_rows),
        "comparisons": pd.DataFrame(cmp_rows, columns=cmp_columns),
        "settings": pd.DataFrame(set_rows),
    }


def write_tables(study: Study, a: Analysis, options, out_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    """Every table as ``<name>.csv`` and all of them in ``report.json``; returns the tables and the files."""
    found = tables(study, a)
    files = {}
    for name, df in found.items():
        files[name] = out_dir / f"{name}.csv"
        atomic_write_text(files[name], df.to_csv(index=False))
    summary = {
        "headline": a.headline,
        "reference": study.labels[a.ref],
        "best_mean": study.labels[a.best],
        "varying_keys": study.keys,
        "options": asdict(options),
        "runs": len(study.runs),
        "classes": len(study.class_names),
        **{name: _records(found[name]) for name in ("settings", "class_settings", "comparisons")},
    }
    files["json"] = out_dir / "report.json"
    atomic_write_text(files["json"], json.dumps(summary, indent=1, default=_json_default))
    return found, files


def _records(df: pd.DataFrame) -> list[dict]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)
