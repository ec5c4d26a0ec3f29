"""`classreg report`: per-class statistics of a sweep, its headline, tables, figures and an HTML page.

The steps: read the runs into settings (read.py), compare them class by class (compare.py, stats.py), write
the tables (write.py), draw the figures and the page (render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from datamodules.configkit import bounded, choice, setting, validate
from launch.report.compare import analyse
from launch.report.read import SPLITS, read_study
from launch.report.render import draw_figures, write_html
from launch.report.repair import find_repair
from launch.report.stats import DEFAULT_TEST, TESTS
from launch.report.write import write_tables


@dataclass
class ReportOptions:
    reference: str = setting(
        "", help='`key=value[,key=value]` naming the reference setting; `""`: the weakest regularization'
    )
    strength: str = setting(
        "", help='the varying key on the x axis of the strength curves; `""`: the numeric varying key with most values'
    )
    fdr: float = bounded(
        0.1,
        0.0,
        1.0,
        low_inclusive=False,
        high_inclusive=False,
        help="Benjamini-Hochberg false discovery rate, across classes, per comparison",
    )
    test: str = choice(DEFAULT_TEST, TESTS, help="the per-class test (docs/statistics.md)")
    curves: int = bounded(3, 1, 20, help="most hurt and most helped classes drawn in the strength curves")
    ignore: list[str] = setting(default_factory=list, help="more config keys (glob patterns) that are not settings")
    split: str = choice(
        "auto",
        SPLITS,
        help="results reported: `test` (per_class_test.csv, the final model on the test split), `validation` "
        "(per_class.csv's last validation); `auto`: `test` when every finished run has it",
    )
    seeds: int = bounded(
        0,
        0,
        help="finished seeds a setting needs to be complete (and tested); 0: the sweep spec's seeds, else the "
        "most runs any setting has",
    )
    title: str = setting("classreg: class-dependence report", help="the HTML page's title")
    wandb: bool = setting(
        False,
        help="also log the report to W&B: one `job_type=report` run in the sweep's group, updated by every re-run",
    )


@dataclass
class Report:
    headline: str
    html: Path
    out_dir: Path
    files: dict[str, Path]
    reference: str
    best: str
    coverage: str = ""  # for a sweep folder: how many of its points the report covers, finished or not
    wandb: Optional[dict] = None  # what --wandb logged (launch/report/wandb_report.py)
    repair_headline: str = ""  # the second headline line, when the report holds a repair sweep


def default_out_dir(paths: list[Path]) -> Path:
    single = Path(paths[0])
    if len(paths) == 1 and not (single / "per_class.csv").is_file():
        return single / "report"
    return Path("report")


def sweep_coverage(paths: list[Path], study):
    """For a report over one sweep folder: (how many of its points are in the report and finished, whether all
    are, the Sweep); a sweep that is still running is reported on as it stands. ("", True, None) for run folders."""
    if len(paths) != 1 or not (paths[0] / "sweep.json").is_file():
        return "", True, None
    from launch.sweep.folder import Sweep

    sweep = Sweep.open(paths[0])
    reported = {r.path.resolve() for r in study.runs}
    finished = partial = 0
    missing: dict[str, int] = {}
    statuses = sweep.statuses()
    for point, status in statuses:
        if point.resolve() not in reported:
            missing[status["state"]] = missing.get(status["state"], 0) + 1
        elif status["state"] == "done":
            finished += 1
        else:
            partial += 1
    text = f"{finished} of {len(statuses)} points finished"
    if partial:
        text += f", {partial} still training (in the report at their last validated epoch)"
    if missing:
        text += (
            f", {sum(missing.values())} not in the report (" + ", ".join(f"{n} {k}" for k, n in missing.items()) + ")"
        )
    return text, finished == len(statuses), sweep


def build_report(
    paths, out_dir=None, options: ReportOptions | None = None, console: Console | None = None, progress: bool = True
) -> Report:
    """Read every run under ``paths``, write tables, figures and report.html to ``out_dir``; return the headline."""
    options = options or ReportOptions()
    validate(options)
    console = console or Console(stderr=True, soft_wrap=True)
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    study = read_study(paths, options, console, progress)
    repair = find_repair(paths, study)
    analysis = analyse(study, options, console, progress, repair)
    tables, files = write_tables(study, analysis, options, out_dir, paths)
    figs = draw_figures(study, analysis, options, fig_dir, console, progress)
    files.update({f"figure_{k}": p for k, _, p in figs})
    files["html"] = write_html(study, analysis, options, tables, figs, out_dir / "report.html")
    labels = study.labels
    coverage, complete, sweep = sweep_coverage(paths, study)
    if not complete:
        console.print(f"[yellow]note:[/yellow] sweep {sweep.name} is not finished: {coverage}", soft_wrap=True)
    report = Report(
        analysis.headline, files["html"], out_dir, files, labels[analysis.ref], labels[analysis.best], coverage
    )
    report.repair_headline = analysis.repair.headline if analysis.repair is not None else ""
    if options.wandb:
        from launch.report.wandb_report import log_report

        report.wandb = log_report(report, study, options, tables, figs, coverage, console, sweep and sweep.dir)
    return report
