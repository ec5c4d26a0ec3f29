"""`classreg demo`: Fashion-MNIST -> shards -> a small regularization sweep run here -> the report."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from datamodules.configkit import atomic_write_text, dump_yaml
from datamodules.shards.format import MANIFEST
from datamodules.sources.fashion_mnist import shard_fashion_mnist
from launch.report import ReportOptions, build_report
from launch.resources import SWEEPS, resolve_config
from launch.sweep.folder import materialise
from launch.sweep.local import LocalExecutor

DEMO_SPEC = "sweeps/fashion_mnist_demo"  # packaged (launch/resources.py)
TRAIN_PER_CLASS = 50  # the measured design: docs/demo-design.md


def demo_spec(workdir: Path, shards: Path, overrides: list[str]) -> Path:
    """The shipped demo spec with this machine's shard folder and the user's overrides added."""
    spec = yaml.safe_load(resolve_config(DEMO_SPEC, SWEEPS).read_text())
    spec["overrides"] = [*spec.get("overrides", []), f"data.root={shards.resolve()}", *overrides]
    path = workdir / "demo_sweep.yaml"
    atomic_write_text(path, dump_yaml(spec), durable=False)
    return path


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
                acc = ""
                metrics = sweep.points_dir / point_id / "metrics.json"
                if what == "done" and metrics.is_file():
                    import json

                    last = json.loads(metrics.read_text())["last"]
                    acc = (
                        f" (accuracy {100 * last['accuracy']:.1f}%, worst class {last['worst_class']} "
                        f"{100 * last['worst_class_accuracy']:.1f}%)"
                    )
                progress.console.print(f"  {point_id}: {what}{acc}")
            progress.update(task, running=len(running))

        return LocalExecutor(sweep, jobs=jobs, on_event=on_event).run()


def run_demo(args) -> int:
    console = Console()
    started = time.time()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shards = workdir / "shards" / f"fashion-mnist-{TRAIN_PER_CLASS}-per-class"
    if (shards / MANIFEST).exists():
        console.print(f"[bold]1/3[/bold] using the Fashion-MNIST shards in {shards}")
    else:
        console.print(
            f"[bold]1/3[/bold] writing Fashion-MNIST shards to {shards} "
            f"({TRAIN_PER_CLASS} training images per class, the whole test split)"
        )
        shard_fashion_mnist(
            shards,
            folder=args.fashion_mnist_dir,
            download_root=workdir / "download",
            train_per_class=TRAIN_PER_CLASS,
        )

    sweep, _, total = materialise(demo_spec(workdir, shards, args.overrides), workdir / "sweep")
    jobs = args.jobs or max(1, len(os.sched_getaffinity(0)))
    console.print(
        f"[bold]2/3[/bold] sweep {sweep.name}: {total} runs (no augmentation vs pad-crop + flip, x seeds), "
        f"{jobs} at a time -> {sweep.dir}"
    )
    counts = run_sweep_with_progress(sweep, jobs, console)
    if counts.get("failed"):
        console.print(f"[red]{counts['failed']} run(s) failed[/red]: see `classreg sweep status {sweep.dir}`")
        return 1

    console.print("[bold]3/3[/bold] report")
    # the report goes to W&B too when the points do (the demo's points log offline unless logger.wandb=false)
    to_wandb = bool(yaml.safe_load((sweep.point_dirs()[0] / "config.yaml").read_text())["logger"]["wandb"])
    report = build_report([sweep.dir], workdir / "report", ReportOptions(wandb=to_wandb), progress=True)
    console.print(f"\n[bold]{report.headline}[/bold]", soft_wrap=True)
    console.print(f"report: {report.html}   (tables and figures in {report.out_dir})", soft_wrap=True)
    console.print(f"demo finished in {(time.time() - started) / 60:.1f} minutes")
    return 0
