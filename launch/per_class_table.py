"""A rich table of the last validation's per-class accuracy, best and worst classes marked."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lightning_modules.metrics.results_files import read_per_class_csv


@rank_zero_only  # after a DDP fit every rank returns here; the table is printed once
def print_per_class(run_dir: str | Path, console: Console | None = None, highlight: int = 3) -> None:
    console = console or Console()
    results = Path(run_dir) / "per_class.csv"
    if not results.is_file():  # e.g. trainer.check_val_every_n_epoch above trainer.max_epochs
        console.print(f"no validation ran, so no per-class table: {escape(str(results))} was not written")
        return
    rows = read_per_class_csv(results)
    last_epoch = max(int(r["epoch"]) for r in rows)
    rows = [r for r in rows if int(r["epoch"]) == last_epoch and r["accuracy"]]
    ranked = sorted(rows, key=lambda r: float(r["accuracy"]))
    worst = {r["class_index"] for r in ranked[:highlight]}
    best = {r["class_index"] for r in ranked[-highlight:]}
    # Class names and paths are data: escape() keeps a name like "[/x]" from being read as rich markup.
    table = Table(title=f"Per-class validation accuracy (epoch {last_epoch}) - {escape(str(run_dir))}")
    # Top-5 and ReaL columns exist in per_class.csv files written since they were added.
    extra = [
        (col, title)
        for col, title in (("top5_accuracy", "top-5"), ("real_accuracy", "ReaL"))
        if any(r.get(col) for r in rows)
    ]
    for col, justify in (
        ("class", "right"),
        ("name", "left"),
        ("correct", "right"),
        ("total", "right"),
        ("accuracy", "right"),
        *((title, "right") for _, title in extra),
        ("", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in sorted(rows, key=lambda r: int(r["class_index"])):
        tag = (
            "[red]worst[/red]"
            if r["class_index"] in worst
            else "[green]best[/green]"
            if r["class_index"] in best
            else ""
        )
        more = [f"{100 * float(r[col]):.1f}%" if r.get(col) else "" for col, _ in extra]
        table.add_row(
            r["class_index"],
            escape(r["class_name"]),
            r["correct"],
            r["total"],
            f"{100 * float(r['accuracy']):.1f}%",
            *more,
            tag,
        )
    console.print(table)
    accs = [float(r["accuracy"]) for r in rows]
    console.print(
        f"mean class accuracy {100 * sum(accs) / len(accs):.1f}%  |  worst class {escape(ranked[0]['class_name'])} "
        f"{100 * float(ranked[0]['accuracy']):.1f}%  |  best class {escape(ranked[-1]['class_name'])} "
        f"{100 * float(ranked[-1]['accuracy']):.1f}%"
    )
