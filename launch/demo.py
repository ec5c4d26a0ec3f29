"""`classreg demo`: Fashion-MNIST -> shards -> a small regularization sweep run here -> its report -> the
class-conditional repair of the classes it hurts, run here -> the report of all three settings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from datamodules.configkit import atomic_write_text, dump_yaml
from datamodules.shards.format import MANIFEST
from datamodules.sources.fashion_mnist import shard_fashion_mnist
from launch.repair import RepairError, describe, plan_repair, write_repair
from launch.report import ReportOptions, build_report
from launch.resources import SWEEPS, resolve_config
from launch.sweep.folder import materialise
from launch.sweep.local import LocalExecutor
from launch.sweep.status import read_status
from launch.sweep.watch import failure_line

DEMO_SPEC = "sweeps/fashion_mnist_demo"  # packaged (launch/resources.py)
TRAIN_PER_CLASS = 50  # the measured design: docs/demo-design.md


def demo_spec(workdir: Path, shards: Path, overrides: list[str], seeds: Optional[list[int]] = None) -> Path:
    """The shipped demo spec with this machine's shard folder, the user's overrides and seeds."""
    spec = yaml.safe_load(resolve_config(DEMO_SPEC, SWEEPS).read_text())
    spec["overrides"] = [*spec.get("overrides", []), f"data.root={shards.resolve()}", *overrides]
    if seeds:
        spec["seeds"] = list(seeds)
    path = workdir / "demo_sweep.yaml"
    atomic_write_text(path, dump_yaml(spec), durable=False)
    return path


def point_line(point: Path, what: str) -> str:
    """A point's line when it ends: its accuracies when done; when failed, `sweep watch`'s failure line (why, and
    where its log is) and the log's last line."""
    status = read_status(point)
    if what == "done" and status.get("result"):
        r = status["result"]
        return (
            f"{point.name}: done (accuracy {100 * r['accuracy']:.1f}%, worst class {r['worst_class']} "
            f"{100 * r['worst_class_accuracy']:.1f}%)"
        )
    if what == "failed":
        last = (status.get("log_tail") or [""])[-1]
        return failure_line(status) + (f"; last log line: {last}" if last else "")
    return f"{point.name}: {what}"


def run_sweep_with_progress(sweep, jobs: int, console: Console) -> dict[str, int]:
    total = len(sweep.point_dirs())
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]points"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]} running"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        already = sum(1 for _, s in sweep.statuses() if s["state"] == "done")
        task = progress.add_task("sweep", total=total, completed=already, running=0)
        running = set()

        def on_event(point_id: str, what: str) -> None:
            if what == "running":
                running.add(point_id)
            else:
                running.discard(point_id)
                progress.advance(task)
                line = point_line(sweep.points_dir / point_id, what)
                progress.console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
            progress.update(task, running=len(running))

        return LocalExecutor(sweep, jobs=jobs, on_event=on_event).run()


def run_demo(args) -> int:
    console = Console()
    started = time.time()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shards = workdir / "shards" / f"fashion-mnist-{TRAIN_PER_CLASS}-per-class"
    if (shards / MANIFEST).exists():
        console.print(f"[bold]1/5[/bold] using the Fashion-MNIST shards in {shards}")
    else:
        console.print(
            f"[bold]1/5[/bold] writing Fashion-MNIST shards to {shards} "
            f"({TRAIN_PER_CLASS} training images per class, the whole test split)"
        )
        shard_fashion_mnist(
            shards,
            folder=args.fashion_mnist_dir,
            download_root=workdir / "download",
            train_per_class=TRAIN_PER_CLASS,
        )

    sweep, _, total = materialise(demo_spec(workdir, shards, args.overrides, args.seeds), workdir / "sweep")
    jobs = args.jobs or max(1, len(os.sched_getaffinity(0)))
    console.print(
        f"[bold]2/5[/bold] sweep {sweep.name}: {total} runs (no augmentation vs pad-crop + flip, x seeds), "
        f"{jobs} at a time -> {sweep.dir}"
    )
    if not run_all(sweep, jobs, console):
        return 1
    # the reports go to W&B too when the points do (the demo's points log offline unless logger.wandb=false)
    to_wandb = bool(yaml.safe_load((sweep.point_dirs()[0] / "config.yaml").read_text())["logger"]["wandb"])
    console.print("[bold]3/5[/bold] report of the sweep")
    first = build_report([sweep.dir], workdir / "report-sweep", ReportOptions(wandb=to_wandb), progress=True)
    console.print(first.headline, style="bold", soft_wrap=True, markup=False)

    try:
        plan = plan_repair(sweep.dir, args.classes or [], out_dir=workdir / "repair", local=True, console=console)
    except RepairError as e:
        console.print(f"4/5 no repair: {e}", soft_wrap=True, markup=False)
        console.print(f"report: {first.html}", soft_wrap=True)
        return finished(console, started)
    console.print("4/5 " + "\n".join(describe(plan)), soft_wrap=True, markup=False)
    repair, _, total = write_repair(plan)
    console.print(f"repair sweep {repair.name}: {total} runs, {jobs} at a time -> {repair.dir}")
    if not run_all(repair, jobs, console):
        return 1

    console.print("[bold]5/5[/bold] report of the sweep and its repair")
    report = build_report([sweep.dir, repair.dir], workdir / "report", ReportOptions(wandb=to_wandb), progress=True)
    console.print(report.headline, style="bold", soft_wrap=True, markup=False)
    if report.repair_headline:
        console.print(report.repair_headline, style="bold", soft_wrap=True, markup=False)
    console.print(f"report: {report.html}   (tables and figures in {report.out_dir})", soft_wrap=True)
    return finished(console, started)


def run_all(sweep, jobs: int, console: Console) -> bool:
    counts = run_sweep_with_progress(sweep, jobs, console)
    if counts.get("failed"):
        console.print(f"[red]{counts['failed']} run(s) failed[/red]: see `classreg sweep status {sweep.dir}`")
    return not counts.get("failed")


def finished(console: Console, started: float) -> int:
    console.print(f"demo finished in {(time.time() - started) / 60:.1f} minutes")
    return 0
