"""`classreg report`: per-class statistics of a sweep, its headline, tables, figures and an HTML page."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from datamodules.configkit import atomic_write_text, bounded, choice, validate
from launch.report import figures
from launch.report.html import render
from launch.report.runs import (ReportError, find_runs, numeric, parse_selector, read_run, setting_label,
                                strength_order, strength_rank, unfinished_runs, varying_keys)
from launch.report.stats import TESTS, compare


@dataclass
class ReportOptions:
    # key=value[,key=value] naming the reference setting; "" = the weakest regularization (README, `report`).
    reference: str = ""
    # the varying key on the x axis of the strength curves; "" = the numeric varying key with most values.
    strength: str = ""
    fdr: float = bounded(0.1, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    test: str = choice("counts", TESTS)
    curves: int = bounded(3, 1, 20)  # most hurt and most helped classes drawn in the strength curves
    ignore: list[str] = field(default_factory=list)  # more config keys (glob patterns) that are not settings
    title: str = "classreg: class-dependence report"


@dataclass
class Report:
    headline: str
    html: Path
    out_dir: Path
    files: dict[str, Path]
    reference: str
    best: str


@dataclass
class _Setting:
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


def default_out_dir(paths: list[Path]) -> Path:
    single = Path(paths[0])
    if len(paths) == 1 and not (single / "per_class.csv").is_file():
        return single / "report"
    return Path("report")


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=True)


def _group(runs, keys) -> list[_Setting]:
    by_repr: dict[str, _Setting] = {}
    for run in runs:
        values = tuple(run.config.get(k) for k in keys)
        by_repr.setdefault(repr(values), _Setting(values, setting_label(keys, values), [])).runs.append(run)
    settings = list(by_repr.values())
    strength = strength_order(keys, [s.values for s in settings])
    order = sorted(range(len(settings)), key=lambda i: (strength[i], repr(settings[i].values)))
    settings = [settings[i] for i in order]
    for s in settings:
        s.runs.sort(key=lambda r: (repr(r.seed), str(r.path)))
        s.correct = np.stack([r.per_class["correct"].to_numpy() for r in s.runs])
        s.total = np.stack([r.per_class["total"].to_numpy() for r in s.runs])
    return settings


def _check_classes(runs) -> list[str]:
    names = runs[0].per_class["class_name"].astype(str).tolist()
    for run in runs[1:]:
        other = run.per_class["class_name"].astype(str).tolist()
        if other != names:
            raise ReportError(
                f"{run.path}/per_class.csv has {len(other)} classes that differ from the {len(names)} of "
                f"{runs[0].path}/per_class.csv; report on runs of one dataset at a time"
            )
    return names


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
        line = [j for j, s in enumerate(settings)
                if all(repr(v) == repr(ref_values[m]) for m, v in enumerate(s.values) if m != i)]
        if len(line) >= 2:
            rank = strength_rank(key, [settings[j].values[i] for j in line])
            line.sort(key=lambda j: rank[settings[j].values[i]])
            others = [k for k in keys if k != key]
            title = key + (f" (other keys as in the reference: {settings[ref].label})" if others else "")
            return [str(settings[j].values[i]) for j in line], line, title + ", weakest to strongest"
    line = list(range(len(settings)))
    return [s.label for s in settings], line, "setting, weakest to strongest regularization"


def build_report(paths, out_dir=None, options: ReportOptions | None = None, console: Console | None = None,
                 progress: bool = True) -> Report:
    """Read every run under ``paths``, write tables, figures and report.html to ``out_dir``; return the headline."""
    options = options or ReportOptions()
    validate(options)
    console = console or Console(stderr=True, soft_wrap=True)
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    folders = find_runs(paths)
    pending = unfinished_runs(paths)
    if pending:
        console.print(f"[yellow]note:[/yellow] {len(pending)} folder(s) hold a config.yaml but no per_class.csv "
                      f"(unfinished or failed runs?) and are left out, e.g. {pending[0]}")
    with _progress(console, progress) as bar:
        task = bar.add_task("reading runs", total=len(folders))
        runs = []
        for folder in folders:
            runs.append(read_run(folder))
            bar.advance(task)
    class_names = _check_classes(runs)
    keys = varying_keys(runs, tuple(options.ignore))
    settings = _group(runs, keys)
    labels = [s.label for s in settings]
    for s in settings:
        repeated = sorted({repr(x) for x in s.seeds if s.seeds.count(x) > 1})
        if repeated:
            console.print(f"[yellow]note:[/yellow] {s.label} has several runs with seed {', '.join(repeated)}; "
                          "they count as separate replicates (vary `seed`, or --ignore the key that tells them apart)")
    ref = (parse_selector(options.reference, keys, [s.values for s in settings], "--reference")
           if options.reference else 0)
    run_means = [np.nanmean(s.acc, axis=1) for s in settings]  # mean class accuracy of each run
    setting_mean = np.array([m.mean() for m in run_means])
    best = int(np.argmax(setting_mean))
    class_mean = np.stack([np.nanmean(s.acc, axis=0) for s in settings])  # settings x classes
    focus = best if best != ref else int(np.argmax(np.abs(setting_mean - setting_mean[ref]))) if len(settings) > 1 else ref

    comparisons: dict[tuple[str, int], object] = {}
    with _progress(console, progress) as bar:
        baselines = [("reference", ref)] + ([("best", best)] if best != ref else [])
        task = bar.add_task("testing classes", total=len(baselines) * (len(settings) - 1))
        for base_name, b in baselines:
            for j, s in enumerate(settings):
                if j == b:
                    continue
                try:
                    comparisons[(base_name, j)] = compare(
                        (settings[b].correct, settings[b].total), (s.correct, s.total), options.fdr,
                        options.test, seeds=(settings[b].seeds, s.seeds))
                except ValueError as e:
                    raise ReportError(f"--test {options.test}: {e} ({settings[b].label} vs {s.label})") from None
                bar.advance(task)

    headline = _headline(settings, ref, best, setting_mean, class_mean, class_names, comparisons, options.fdr)
    tables = _tables(keys, settings, ref, best, class_names, class_mean, run_means, comparisons)
    files = {}
    for name, df in tables.items():
        files[name] = out_dir / f"{name}.csv"
        atomic_write_text(files[name], df.to_csv(index=False))

    figs = _figures(keys, settings, ref, best, focus, class_names, class_mean, setting_mean, comparisons,
                    options, fig_dir, console, progress)
    files.update({f"figure_{k}": p for k, _, p in figs})
    summary = {
        "headline": headline, "reference": labels[ref], "best_mean": labels[best], "varying_keys": keys,
        "options": asdict(options), "runs": len(runs), "classes": len(class_names),
        **{name: _records(tables[name]) for name in ("settings", "class_settings", "comparisons")},
    }
    files["json"] = out_dir / "report.json"
    atomic_write_text(files["json"], json.dumps(summary, indent=1, default=_json_default))

    comp = comparisons.get(("reference", focus))
    class_table = pd.DataFrame({
        "class": class_names, "index": np.arange(len(class_names)),
        f"reference: {labels[ref]}": 100 * class_mean[ref],
        f"{labels[focus]}": 100 * class_mean[focus],
        "change": 100 * (comp.delta if comp else np.zeros(len(class_names))),
        "p": comp.p_value if comp else np.ones(len(class_names)),
        "q": comp.q_value if comp else np.ones(len(class_names)),
    })
    for j, s in enumerate(settings):
        if j not in (ref, focus):
            class_table[s.label] = 100 * class_mean[j]

    def row_class(i):
        if comp is None or not comp.significant[i]:
            return ""
        return "sig-lower" if comp.delta[i] < 0 else "sig-higher"

    shown = {"setting": "setting", "seeds": "seeds", "mean_class_accuracy": "mean", "sd_over_seeds": "sd",
             "worst_class": "worst class", "worst_class_accuracy": "worst", "change_vs_reference": "change",
             "lowered_vs_reference": "lowered", "raised_vs_reference": "raised"}
    settings_table = tables["settings"][list(shown)].rename(columns=shown)
    for c in ("mean", "sd", "worst", "change"):
        settings_table[c] = 100 * settings_table[c]
    settings_table.insert(1, "role", ["reference" if j == ref else "best mean" if j == best else ""
                                      for j in range(len(settings))])
    meta = (f"{len(runs)} runs, {len(settings)} settings, {len(class_names)} classes; varying keys: "
            f"{', '.join(keys) or 'none'}; test: {options.test}, Benjamini-Hochberg FDR {options.fdr:g}. "
            "Accuracies in %, changes in points.")
    files["html"] = out_dir / "report.html"
    note = (f"Red rows: significantly lower under {labels[focus]} than under the reference {labels[ref]}; "
            "green rows: significantly higher. Change and p, q: from the reference to that setting.")
    atomic_write_text(files["html"], render(options.title, headline, meta, settings_table, class_table,
                                            row_class, figs, note))
    return Report(headline, files["html"], out_dir, files, labels[ref], labels[best])


def _pct(x) -> str:
    return f"{100 * x:.0f}%"


def _headline(settings, ref, best, setting_mean, class_mean, names, comparisons, fdr) -> str:
    seeds = sorted({len(s.runs) for s in settings})
    per = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    tail = f" ({per} seed{'s' if seeds[-1] > 1 else ''} per setting, FDR {fdr:g})"
    if best == ref:
        if len(settings) == 1:
            return f"only one setting ({settings[ref].label}): nothing to compare" + tail
        return (f"the reference setting {settings[ref].label} already has the best mean accuracy "
                f"({100 * setting_mean[ref]:.1f}%): no setting raises it" + tail)
    comp = comparisons[("reference", best)]
    lowered = np.flatnonzero(comp.significant & (comp.delta < 0))
    gain = 100 * (setting_mean[best] - setting_mean[ref])
    text = (f"best-mean setting {settings[best].label} raises mean accuracy by {gain:.1f} points over "
            f"{settings[ref].label} and significantly lowers "
            + (f"{len(lowered)} class{'es' if len(lowered) != 1 else ''}" if len(lowered) else "no class"))
    if len(lowered):
        w = lowered[np.argmin(comp.delta[lowered])]
        text += f" (worst: {names[w]}, from {_pct(class_mean[ref, w])} to {_pct(class_mean[best, w])})"
    else:
        w = int(np.nanargmin(comp.delta))
        text += (f" (largest drop, not significant: {names[w]}, from {_pct(class_mean[ref, w])} "
                 f"to {_pct(class_mean[best, w])})")
    return text + tail


def _tables(keys, settings, ref, best, names, class_mean, run_means, comparisons) -> dict[str, pd.DataFrame]:
    runs_rows, cs_rows, cmp_rows, set_rows = [], [], [], []
    for j, s in enumerate(settings):
        values = dict(zip(keys, s.values))
        acc = s.acc
        for k, run in enumerate(s.runs):
            worst = int(np.nanargmin(acc[k]))
            runs_rows.append({"run": str(run.path), "setting": s.label, **values, "seed": run.seed,
                              "epoch": run.epoch, "mean_class_accuracy": run_means[j][k],
                              "worst_class": names[worst], "worst_class_accuracy": acc[k, worst]})
        sd = np.nanstd(acc, axis=0, ddof=1) if len(s.runs) > 1 else np.full(len(names), np.nan)
        for c, name in enumerate(names):
            cs_rows.append({"class_index": c, "class_name": name, "setting": s.label, **values,
                            "seeds": len(s.runs), "mean_accuracy": class_mean[j, c], "sd_accuracy": sd[c],
                            "min_accuracy": np.nanmin(acc[:, c]), "max_accuracy": np.nanmax(acc[:, c]),
                            "correct": int(s.correct[:, c].sum()), "total": int(s.total[:, c].sum())})
        row = {"setting": s.label, **values, "seeds": len(s.runs), "mean_class_accuracy": run_means[j].mean(),
               "sd_over_seeds": run_means[j].std(ddof=1) if len(s.runs) > 1 else np.nan,
               "worst_class": names[int(np.nanargmin(class_mean[j]))],
               "worst_class_accuracy": np.nanmin(class_mean[j]),
               "change_vs_reference": run_means[j].mean() - run_means[ref].mean(),
               "is_reference": j == ref, "is_best_mean": j == best}
        for base_name in ("reference", "best"):
            comp = comparisons.get((base_name, j))
            row[f"lowered_vs_{base_name}"] = int((comp.significant & (comp.delta < 0)).sum()) if comp else 0
            row[f"raised_vs_{base_name}"] = int((comp.significant & (comp.delta > 0)).sum()) if comp else 0
        set_rows.append(row)
    for (base_name, j), comp in comparisons.items():
        b = ref if base_name == "reference" else best
        for c, name in enumerate(names):
            cmp_rows.append({"baseline": base_name, "baseline_setting": settings[b].label,
                             "setting": settings[j].label, "class_index": c, "class_name": name,
                             "baseline_accuracy": class_mean[b, c], "accuracy": class_mean[j, c],
                             "change": comp.delta[c], "p_value": comp.p_value[c], "q_value": comp.q_value[c],
                             "significant": bool(comp.significant[c]), "test": comp.test})
    cmp_columns = ["baseline", "baseline_setting", "setting", "class_index", "class_name", "baseline_accuracy",
                   "accuracy", "change", "p_value", "q_value", "significant", "test"]
    return {"runs": pd.DataFrame(runs_rows), "class_settings": pd.DataFrame(cs_rows),
            "comparisons": pd.DataFrame(cmp_rows, columns=cmp_columns), "settings": pd.DataFrame(set_rows)}


def _figures(keys, settings, ref, best, focus, names, class_mean, setting_mean, comparisons, options, fig_dir,
             console, progress) -> list[tuple[str, str, Path]]:
    labels = [s.label for s in settings]
    out = []
    with _progress(console, progress) as bar:
        task = bar.add_task("drawing figures", total=4)
        comp = comparisons.get(("reference", focus))
        if comp is not None:
            caption = (f"Per-class change in accuracy from the reference ({labels[ref]}) to {labels[focus]}, "
                       f"sorted; coloured bars are significant at FDR {options.fdr:g}.")
            out.append(("delta", caption, figures.delta_sorted(
                names, comp.delta, comp.significant, f"{labels[ref]}  ->  {labels[focus]}", fig_dir / "delta_sorted.png")))
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
        out.append(("curves", f"Accuracy against {axis}: mean over classes (black), the {k} classes most hurt (red) "
                    f"and most helped (green) from the reference to {labels[focus]}; bars are +-1 sd over seeds.",
                    figures.strength_curves(np.arange(len(line)), xlabels, axis, setting_mean[line], curves,
                                            [names[c] for c in hurt], fig_dir / "strength_curves.png")))
        bar.advance(task)
        worst = np.nanmin(class_mean, axis=1)
        out.append(("tradeoff", "Mean against worst-class accuracy for every setting.",
                    figures.tradeoff(labels, setting_mean, worst, ref, best, fig_dir / "tradeoff.png")))
        bar.advance(task)
        out.append(("histograms", "Distribution of per-class accuracy (mean over seeds) for each setting; "
                    "dashed: the mean.", figures.histograms(labels, class_mean, fig_dir / "histograms.png")))
        bar.advance(task)
    return out


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
