"""Report step 3: the tables as CSV (missing numbers empty) and report.json (missing numbers null)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.configkit import atomic_write_text
from launch.report import real
from launch.report.compare import Analysis, method_line, tested_classes
from launch.report.read import Study, seed_mean
from launch.report.repair import summary as repair_summary

COMPARISON_COLUMNS = [
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
    "df",
    "test",
    "exploratory",
    "reason",
]
EXCLUDED_COLUMNS = [
    "run",
    "setting",
    "seed",
    "state",
    "last_epoch",
    "max_epochs",
    "diverged_epoch",
    "diverged_step",
    "reason",
]
TEST_COLUMNS = [
    "baseline",
    "baseline_setting",
    "setting",
    "test",
    "exploratory",
    "reason",
    "residual_df",
    "prior_df",
    "prior_var",
    "relabellings",
    "p_floor",
    "classes_tested",
    "lowered",
    "raised",
    "method",
]
COUNT_COLUMNS = {
    "last_epoch",
    "max_epochs",
    "diverged_epoch",
    "diverged_step",
    "residual_df",
    "relabellings",
    "classes_tested",
    "lowered",
    "raised",
    "seeds",
    "seeds_expected",
}
REAL_COMPARISON_COLUMNS = [
    "real_baseline_accuracy",
    "real_accuracy",
    "real_change",
    "real_p_value",
    "real_q_value",
    "real_significant",
    "real_drop_remaining",
]


def _counted(comp, mask) -> int | None:
    """Classes in ``mask`` that are significant; None when the comparison made no test (no claim either way)."""
    return None if comp is None or comp.exploratory else int((comp.significant & mask).sum())


def _flag(comp, c: int):
    return None if comp.exploratory or not np.isfinite(comp.p_value[c]) else bool(comp.significant[c])


def _real_mean(s):
    return seed_mean(s.real_correct, s.real_total)


def run_rows(study: Study, a: Analysis) -> tuple[list[dict], list[dict]]:
    keys, names = study.keys, study.class_names
    used, left_out = [], []
    for j, s in enumerate(study.settings):
        values = dict(zip(keys, s.values))
        for k, run in enumerate(s.runs):
            worst = int(np.nanargmin(s.acc[k]))
            used.append(
                {
                    "run": str(run.path),
                    "setting": s.label,
                    **values,
                    "seed": run.seed,
                    "epoch": run.epoch,
                    "split": study.split,
                    "shards_split": study.shards_split,
                    "mean_class_accuracy": a.run_means[j][k],
                    "worst_class": names[worst],
                    "worst_class_accuracy": s.acc[k, worst],
                }
            )
    for s in study.settings + study.waiting:
        for run in s.excluded:
            st = run.state
            left_out.append(
                {
                    "run": str(run.path),
                    "setting": s.label,
                    **dict(zip(keys, s.values)),
                    "seed": run.seed,
                    "state": st.state,
                    "last_epoch": st.last_epoch,
                    "max_epochs": st.max_epochs,
                    "diverged_epoch": (st.diverged or {}).get("epoch") if st.diverged is not None else None,
                    "diverged_step": (st.diverged or {}).get("step") if st.diverged is not None else None,
                    "reason": st.reason,
                }
            )
    return used, left_out


def tables(study: Study, a: Analysis) -> dict[str, pd.DataFrame]:
    keys, settings, names = study.keys, study.settings, study.class_names
    ref, best, class_mean, run_means, comparisons = a.ref, a.best, a.class_mean, a.run_means, a.comparisons
    runs_rows, excluded_rows = run_rows(study, a)
    cs_rows, cmp_rows, set_rows, test_rows = [], [], [], []
    for j, s in enumerate(settings):
        values = dict(zip(keys, s.values))
        acc = s.acc
        sd = np.nanstd(acc, axis=0, ddof=1) if len(s.runs) > 1 else np.full(len(names), np.nan)
        real_mean = _real_mean(s) if study.has_real else None
        for c, name in enumerate(names):
            row = {
                "class_index": c,
                "class_name": name,
                "setting": s.label,
                **values,
                "seeds": len(s.runs),
                "status": s.status,
                "mean_accuracy": class_mean[j, c],
                "sd_accuracy": sd[c],
                "min_accuracy": np.nanmin(acc[:, c]),
                "max_accuracy": np.nanmax(acc[:, c]),
                "correct": int(s.correct[:, c].sum()),
                "total": int(s.total[:, c].sum()),
            }
            if real_mean is not None:
                row["real_mean_accuracy"] = real_mean[c]
            cs_rows.append(row)
        row = {
            "setting": s.label,
            **values,
            "seeds": len(s.runs),
            "seeds_expected": s.expected,
            "status": s.status,
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
            row[f"lowered_vs_{base_name}"] = _counted(comp, comp.delta < 0) if comp else None
            row[f"raised_vs_{base_name}"] = _counted(comp, comp.delta > 0) if comp else None
        set_rows.append(row)
    for s in study.waiting:
        set_rows.append(
            {"setting": s.label, **dict(zip(keys, s.values)), "seeds": 0, "seeds_expected": s.expected}
            | {"status": s.status, "is_reference": False, "is_best_mean": False}
        )
    for (base_name, j), comp in comparisons.items():
        b = ref if base_name == "reference" else best
        real_comp = a.real_comparisons.get((base_name, j))
        test_rows.append(
            {
                "baseline": base_name,
                "baseline_setting": settings[b].label,
                "setting": settings[j].label,
                "test": comp.test,
                "exploratory": comp.exploratory,
                "reason": comp.reason,
                "residual_df": None if comp.exploratory else comp.residual_df,
                "prior_df": comp.prior_df,
                "prior_var": comp.prior_var,
                "relabellings": None if comp.exploratory else comp.relabellings,
                "p_floor": comp.p_floor,
                "classes_tested": tested_classes(comp),
                "lowered": _counted(comp, comp.delta < 0),
                "raised": _counted(comp, comp.delta > 0),
                "method": method_line(comp, a.fdr),
            }
        )
        if real_comp is not None:
            remaining = real.drop_remaining(comp, real_comp)
            real_base, real_other = _real_mean(settings[b]), _real_mean(settings[j])
        for c, name in enumerate(names):
            row = {
                "baseline": base_name,
                "baseline_setting": settings[b].label,
                "setting": settings[j].label,
                "class_index": c,
                "class_name": name,
                "baseline_accuracy": class_mean[b, c],
                "accuracy": class_mean[j, c],
                "change": comp.delta[c],
                "p_value": comp.p_value[c],
                "q_value": np.nan if comp.exploratory or not np.isfinite(comp.p_value[c]) else comp.q_value[c],
                "significant": _flag(comp, c),
                "df": comp.df[c],
                "test": comp.test,
                "exploratory": comp.exploratory,
                "reason": comp.reason,
            }
            if real_comp is not None:
                row |= {
                    "real_baseline_accuracy": real_base[c],
                    "real_accuracy": real_other[c],
                    "real_change": real_comp.delta[c],
                    "real_p_value": real_comp.p_value[c],
                    "real_q_value": np.nan
                    if real_comp.exploratory or not np.isfinite(real_comp.p_value[c])
                    else real_comp.q_value[c],
                    "real_significant": _flag(real_comp, c),
                    "real_drop_remaining": remaining[c],
                }
            cmp_rows.append(row)
    cmp_columns = COMPARISON_COLUMNS + (REAL_COMPARISON_COLUMNS if study.has_real else [])
    found = {
        "runs": pd.DataFrame(runs_rows),
        "excluded_runs": pd.DataFrame(excluded_rows, columns=None if excluded_rows else EXCLUDED_COLUMNS),
        "class_settings": pd.DataFrame(cs_rows),
        "comparisons": pd.DataFrame(cmp_rows, columns=cmp_columns),
        "tests": pd.DataFrame(test_rows, columns=TEST_COLUMNS),
        "settings": pd.DataFrame(set_rows),
    }
    return {name: _counts_as_integers(df) for name, df in found.items()}


def _counts_as_integers(df: pd.DataFrame) -> pd.DataFrame:
    """Counts with missing entries stay integers (empty in CSV, null in JSON), not floats."""
    for c in df.columns:
        if c in COUNT_COLUMNS or c.startswith(("lowered_vs_", "raised_vs_")):
            df[c] = df[c].astype("Int64")
    return df


def real_summaries(study: Study, a: Analysis) -> list[dict]:
    out = []
    for (base_name, j), comp in a.comparisons.items():
        real_comp = a.real_comparisons.get((base_name, j))
        if real_comp is None:
            continue
        b = a.ref if base_name == "reference" else a.best
        summary = real.summarise(comp, real_comp)
        sentence = summary.sentence(study.settings[b].label, study.settings[j].label)
        out.append(
            {"baseline": base_name, "baseline_setting": study.labels[b], "setting": study.labels[j]}
            | asdict(summary)
            | {"sentence": sentence}
        )
    return out


def write_tables(
    study: Study, a: Analysis, options, out_dir: Path, paths=()
) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    """Every table as ``<name>.csv`` and all of them in ``report.json``; returns the tables and the files."""
    found = tables(study, a)
    if a.repair is not None:
        from launch.report.repair import repair_rows

        found["repair"] = pd.DataFrame(repair_rows(study, a, a.repair))
    files = {}
    for name, df in found.items():
        files[name] = out_dir / f"{name}.csv"
        atomic_write_text(files[name], df.to_csv(index=False))
    summary = {
        "headline": a.headline,
        "sources": [str(Path(p).resolve()) for p in paths],
        "split": study.split,
        "shards_split": study.shards_split,
        "method": a.method,
        "reference": study.labels[a.ref],
        "best_mean": study.labels[a.best],
        "varying_keys": study.keys,
        "options": asdict(options),
        "runs": len(study.runs),
        "runs_expected": study.expected_runs,
        "runs_missing": study.missing_runs,
        "classes": len(study.class_names),
        "excluded_runs": _records(found["excluded_runs"]),
        "tests": _records(found["tests"]),
        **({"real": real_summaries(study, a)} if study.has_real else {}),
        **({"repair": repair_summary(study, a, a.repair)} if a.repair is not None else {}),
        **{name: _records(found[name]) for name in ("settings", "class_settings", "comparisons")},
    }
    files["json"] = out_dir / "report.json"
    atomic_write_text(files["json"], json.dumps(_clean(summary), indent=1, allow_nan=False))
    return found, files


def _records(df: pd.DataFrame) -> list[dict]:
    return df.astype(object).to_dict("records")


def _clean(o):
    """JSON values: NaN and None are null, infinities the strings "inf"/"-inf", numpy scalars plain."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer, int)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf") if math.isinf(o) else float(o)
    if o is None or isinstance(o, str):
        return o
    if o is pd.NA or o is pd.NaT:
        return None
    return str(o)
