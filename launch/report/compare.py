"""Report step 2: the reference and best-mean settings, every setting compared class by class, the headline.

Only complete settings are tested: a comparison with a partial setting (seeds still missing) or one with a
diverged run shows its changes only, as an exploratory one (``Comparison.exploratory`` and ``reason``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from launch.report.progress import progress_bar
from launch.report.read import Setting, Study, seed_mean
from launch.report.runs import ReportError, parse_selector
from launch.report.stats import Comparison, compare


@dataclass
class Analysis:
    ref: int  # the reference setting
    best: int  # the complete setting with the best mean class accuracy (or the reference)
    focus: int  # the setting the class table and figures compare with the reference
    run_means: list[np.ndarray]  # per setting: the mean class accuracy of each run
    setting_mean: np.ndarray  # per setting: mean over seeds of the mean class accuracy
    class_mean: np.ndarray  # settings x classes: accuracy, mean over seeds
    comparisons: dict  # (baseline name, setting index) -> stats.Comparison
    real_comparisons: dict = field(default_factory=dict)  # the same on ReaL counts, when the runs have them
    fdr: float = 0.1
    headline: str = ""
    method: str = ""  # the method line of the headline's comparison (reference -> focus)
    repair: object = None  # launch/report/repair.py RepairResult, when the report holds a repair sweep


def untested_reason(base: Setting, other: Setting) -> str:
    why = []
    for s in (base, other):
        if s.diverged:
            why.append(f"{s.label} has a diverged run, so its finished seeds are a selected sample")
        elif s.partial:
            why.append(f"{s.label} is partial ({len(s.runs)} of {s.expected} seeds finished)")
    return "; ".join(why) + ": not tested, changes only" if why else ""


def untested(delta: np.ndarray, test: str, reason: str) -> Comparison:
    classes = len(delta)
    nan = np.full(classes, np.nan)
    return Comparison(
        delta, nan, np.ones(classes), np.zeros(classes, bool), test, nan.copy(), exploratory=True, reason=reason
    )


def compare_settings(base: Setting, other: Setting, counts: str, options) -> Comparison:
    """``counts``: "" for the labels' counts, "real_" for ReaL's."""
    a = (getattr(base, f"{counts}correct"), getattr(base, f"{counts}total"))
    b = (getattr(other, f"{counts}correct"), getattr(other, f"{counts}total"))
    reason = untested_reason(base, other)
    if reason:
        return untested(seed_mean(*b) - seed_mean(*a), options.test, reason)
    try:
        return compare(a, b, options.fdr, options.test, seeds=(base.seeds, other.seeds))
    except ValueError as e:
        raise ReportError(f"--test {options.test}: {e} ({base.label} vs {other.label})") from None


def choose_reference(study: Study, option: str, exclude: tuple = ()) -> int:
    settings = study.settings
    if option:
        ref = parse_selector(option, study.keys, [s.values for s in settings], "--reference")
        if settings[ref].diverged:
            raise ReportError(
                f"--reference '{option}': {settings[ref].label} has a diverged run and cannot be the reference; "
                "choose another setting"
            )
        return ref
    eligible = [j for j, s in enumerate(settings) if not s.diverged and j not in exclude]
    if not eligible:
        raise ReportError(
            "every setting with a finished run also has a diverged run (report.json lists them): there is no "
            "reference to compare with; rerun them with a smaller learning rate"
        )
    return eligible[0]  # settings are ordered weakest regularization first


def analyse(study: Study, options, console: Console, progress: bool, repair=None) -> Analysis:
    """``repair``: a launch/report/repair.py RepairSetup; its repaired setting is never the reference or best."""
    settings = study.settings
    exclude = (repair.rep,) if repair is not None else ()
    ref = choose_reference(study, options.reference, exclude)
    run_means = [np.nanmean(s.acc, axis=1) for s in settings]
    setting_mean = np.array([m.mean() for m in run_means])
    complete = [j for j, s in enumerate(settings) if not s.partial and not s.diverged and j not in exclude]
    # the best among the complete settings; while none is, the best so far (marked partial)
    pool = (
        sorted(set(complete) | {ref})
        if complete
        else [j for j, s in enumerate(settings) if not s.diverged and j not in exclude] or [ref]
    )
    best = max(pool, key=lambda j: setting_mean[j])
    class_mean = np.stack([seed_mean(s.correct, s.total) for s in settings])
    if best != ref:
        focus = best
    elif len(settings) > 1:
        others = [j for j in range(len(settings)) if j != ref and j not in exclude] or [
            j for j in range(len(settings)) if j != ref
        ]
        focus = max(others, key=lambda j: abs(setting_mean[j] - setting_mean[ref]))
    else:
        focus = ref
    analysis = Analysis(ref, best, focus, run_means, setting_mean, class_mean, {}, fdr=options.fdr)
    baselines = [("reference", ref)] + ([("best", best)] if best != ref else [])
    with progress_bar(console, progress) as bar:
        task = bar.add_task("testing classes", total=len(baselines) * (len(settings) - 1))
        for base_name, b in baselines:
            for j, s in enumerate(settings):
                if j == b:
                    continue
                analysis.comparisons[(base_name, j)] = compare_settings(settings[b], s, "", options)
                if study.has_real:
                    analysis.real_comparisons[(base_name, j)] = compare_settings(settings[b], s, "real_", options)
                bar.advance(task)
    analysis.headline = headline(study, analysis, options.fdr)
    if repair is not None and repair.frm is not None and repair.to is not None and repair.classes:
        from launch.report.repair import analyse_repair

        names = {analysis.ref: "reference", analysis.best: "best"}

        def pair(b: int, j: int) -> Comparison:
            found = analysis.comparisons.get((names.get(b), j))
            return found if found is not None else compare_settings(settings[b], settings[j], "", options)

        analysis.repair = analyse_repair(study, analysis, repair, pair)
    main = analysis.comparisons.get(("reference", focus))
    analysis.method = method_line(main, options.fdr) if main else "one setting: no test"
    return analysis


def tested_classes(comp: Comparison) -> int:
    return int(np.isfinite(comp.p_value).sum())


def method_line(comp: Comparison, fdr: float) -> str:
    """What stands behind every p-value of a comparison (or why it has none)."""
    if comp.exploratory:
        return f"exploratory, no p-values: {comp.reason}"
    paired = comp.test == "moderated-paired"
    prior = "inf" if math.isinf(comp.prior_df) else f"{comp.prior_df:.1f}"
    relabelled = "sign flips of the seed pairs" if paired else "relabellings of the runs"
    return (
        f"{'paired ' if paired else ''}moderated t on the arcsine scale, {comp.residual_df} residual + {prior} prior "
        f"df per class; p from {comp.relabellings} {relabelled} pooled over {tested_classes(comp)} classes "
        f"(smallest possible p {comp.p_floor:.2g}); Benjamini-Hochberg FDR {fdr:g}"
    )


def fewest_significant(comp: Comparison, fdr: float) -> int:
    """The fewest classes that must all sit at the smallest possible p for any to pass BH at ``fdr``."""
    classes = len(comp.p_value)  # BH counts the untested classes too (as p = 1)
    return math.ceil(comp.p_floor * classes / fdr - 1e-9)


def _pct(x) -> str:
    return f"{100 * x:.0f}%"


def _seeds(*settings: Setting) -> str:
    counts = sorted({len(s.runs) for s in settings})
    return f"{counts[0]} seed{'s' if counts[-1] > 1 else ''}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"


def _largest_drop(names, class_mean, ref: int, other: int, delta, qualifier: str) -> str:
    if not np.any(delta < 0):
        return " (no class dropped)"
    w = int(np.nanargmin(delta))
    return f" (largest drop{qualifier}: {names[w]}, from {_pct(class_mean[ref, w])} to {_pct(class_mean[other, w])})"


def headline(study: Study, a: Analysis, fdr: float) -> str:
    settings, ref, best, names = study.settings, a.ref, a.best, study.class_names
    tail = f" ({_seeds(*settings)} per setting, FDR {fdr:g}, {study.split} split)"
    if study.missing_runs:
        diverged = sum(r.state.state == "diverged" for r in study.excluded)
        tail += (
            f" ({study.missing_runs} of {study.expected_runs} runs still missing"
            + (f", {diverged} of them diverged" if diverged else "")
            + ": partial settings are not tested)"
        )
    if len(settings) == 1:
        return f"only one setting ({settings[ref].display}): nothing to compare" + tail
    if best == ref:
        which = "complete setting" if any(s.partial for s in settings) else "setting"
        return (
            f"the reference setting {settings[ref].display} already has the best mean accuracy "
            f"({100 * a.setting_mean[ref]:.1f}%): no {which} raises it" + tail
        )
    comp = a.comparisons[("reference", best)]
    gain = 100 * (a.setting_mean[best] - a.setting_mean[ref])
    text = (
        f"best-mean setting {settings[best].display} raises mean accuracy by {gain:.1f} points over "
        f"{settings[ref].display}"
    )
    if comp.exploratory:
        text += f"; exploratory: {comp.reason}"
        return text + _largest_drop(names, a.class_mean, ref, best, comp.delta, "") + tail
    lowered = np.flatnonzero(comp.significant & (comp.delta < 0))
    if len(lowered):
        w = lowered[np.argmin(comp.delta[lowered])]
        text += (
            f" and significantly lowers {len(lowered)} class{'es' if len(lowered) != 1 else ''} "
            f"(worst: {names[w]}, from {_pct(a.class_mean[ref, w])} to {_pct(a.class_mean[best, w])})"
        )
        return text + tail
    needed = fewest_significant(comp, fdr)
    seeds = _seeds(settings[ref], settings[best])
    if needed > len(comp.p_value):
        text += (
            f"; no class can be called significant with {seeds} per setting: the smallest possible p-value, "
            f"{comp.p_floor:.2g} ({comp.relabellings} relabellings over {tested_classes(comp)} classes), "
            f"is above FDR {fdr:g}"
        )
    else:
        text += " and significantly lowers no class"
        if needed > 1:
            text += (
                f" (with {seeds} per setting a class can pass FDR {fdr:g} only with at least {needed - 1} others "
                f"at the smallest possible p, {comp.p_floor:.2g})"
            )
    return text + _largest_drop(names, a.class_mean, ref, best, comp.delta, ", not significant") + tail
