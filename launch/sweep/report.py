"""`classreg sweep status` and `plan` output: rows per point, counts, the rich tables and the JSON form."""

from __future__ import annotations

import json
import os
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from datamodules.configkit import ClassregError
from launch.config import key_parts
from launch.sweep.folder import Sweep
from launch.sweep.resources import scale_summary
from launch.sweep.spec import Point, SweepSpec
from launch.sweep.status import STATES, owner_text, tail

ORDER = {"failed": 0, "running": 1, "queued": 2, "pending": 3, "cancelled": 4, "done": 5}
STYLE = {
    "pending": "white",
    "queued": "yellow",
    "running": "cyan",
    "done": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}


def _short_key(key: str) -> str:
    """``optim.lr`` -> ``lr``; a class-conditional key keeps its class: ``Ankle boot.min_scale``."""
    try:
        parts = key_parts(key)
    except ClassregError:
        return key
    if parts[:2] == ["aug", "class_overrides"] and len(parts) > 3:
        return f"{parts[2]}.{parts[-1]}"
    return parts[-1]


def short_params(params: dict) -> str:
    return " ".join(f"{_short_key(k)}={v}" for k, v in params.items())


def _progress(point: str, status: dict) -> tuple[Optional[int], Optional[float]]:
    """(epochs validated, last accuracy): from the stored result, or metrics.json while running."""
    result = status.get("result")
    if status["state"] in ("running", "cancelled") or not result:  # a failed point's result is its last
        try:
            with open(os.path.join(point, "metrics.json"), "rb") as fh:
                last = json.loads(fh.read())["last"]
            result = {"epoch": last["epoch"], "accuracy": last["accuracy"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None, None
    epoch, acc = result.get("epoch"), result.get("accuracy")
    return (
        epoch + 1 if type(epoch) is int else None,
        acc if isinstance(acc, (int, float)) and not isinstance(acc, bool) else None,
    )


def _own_log(sweep_dir: str, log: Optional[str]) -> Optional[str]:
    """A point's log, when it lies inside the sweep folder: a status file never makes status read another file."""
    if not log:
        return None
    real = os.path.realpath(log)
    return real if real.startswith(sweep_dir + os.sep) else None


def status_rows(sweep: Sweep, queued: Optional[dict[str, str]] = None, log_lines: int = 0) -> list[dict]:
    """One row per point; ``log_lines`` > 0 adds the end of each failed point's log (``log_tail``)."""
    rows = []
    sweep_dir = os.path.realpath(sweep.dir)
    for point, s in sweep.statuses(as_paths=False):
        epochs, acc = _progress(point, s) if s["state"] != "pending" else (None, None)
        job = (s.get("owner") or {}).get("job_id") or s.get("job_id")
        row = {
            "id": s["id"],
            "index": s["index"],
            "params": s["params"],
            "state": s["state"],
            "epoch": epochs,
            "max_epochs": s.get("max_epochs"),
            "accuracy": acc,
            "seconds_per_epoch": (s.get("result") or {}).get("seconds_per_epoch"),
            "job_id": job,
            "slurm_state": (queued or {}).get(job) if job else None,
            "in_queue": None if queued is None or not job or "_" not in job else job in queued,
            "owner": owner_text(s.get("owner")) if s["state"] == "running" else "",
            "restarts": s.get("restart_count") or 0,
            "log": s.get("log"),
            "reason": s.get("reason"),
            "history": s["history"],
        }
        if s["state"] == "failed" and log_lines:
            row["log_tail"] = tail(_own_log(sweep_dir, s.get("log")), log_lines) or s.get("log_tail") or []
        rows.append(row)
    return rows


def counts(rows: list[dict]) -> dict[str, int]:
    c = {st: 0 for st in STATES}
    for r in rows:
        c[r["state"]] += 1
    return c


def _lost(row: dict) -> bool:
    """Queued or running by its status file, but its SLURM job has left the queue without reporting."""
    return row["state"] in ("queued", "running") and row["in_queue"] is False


def print_status(
    sweep: Sweep,
    rows: list[dict],
    limit: int,
    console: Optional[Console] = None,
    log_lines: int = 5,
    max_failures: int = 10,
) -> None:
    console = console or Console()
    c = counts(rows)
    console.print(
        f"[bold]sweep {escape(sweep.name)}[/] ({escape(str(sweep.dir))}): {len(rows)} points: "
        + ", ".join(f"[{STYLE[k]}]{v} {k}[/]" for k, v in c.items() if v)
    )
    shown = sorted(rows, key=lambda r: (ORDER[r["state"]], r["index"]))
    table = Table(show_lines=False)
    for col in ("#", "point", "params", "state", "epoch", "acc", "job", "restarts"):
        table.add_column(
            col, justify="right" if col in ("#", "epoch", "acc", "restarts") else "left", no_wrap=col != "params"
        )
    for r in shown[:limit]:  # Text cells: what a status file says is shown as it is, never read as markup
        slurm = f" ({r['slurm_state'].lower()})" if r["slurm_state"] else ""
        if _lost(r):
            slurm = " (gone)"
        table.add_row(
            Text(str(r["index"])),
            Text(r["id"]),
            Text(short_params(r["params"])),
            Text(r["state"], style=STYLE[r["state"]]),
            Text(f"{r['epoch'] or 0}/{r['max_epochs']}" if r["state"] != "pending" else ""),
            Text(f"{r['accuracy']:.3f}" if r["accuracy"] is not None else ""),
            Text(f"{r['job_id'] or r['owner'] or ''}{slurm}"),
            Text(str(r["restarts"] or "")),
        )
    console.print(table)
    if len(shown) > limit:
        console.print(f"... {len(shown) - limit} more points (--limit N to show more, --json for all)")
    lost = sum(map(_lost, rows))
    if lost:
        console.print(
            f"[bold yellow]{lost} points are {'/'.join(sorted({r['state'] for r in rows if _lost(r)}))} "
            f"but their job is not in the queue[/]: `classreg sweep resume {escape(str(sweep.dir))}` re-submits them"
        )
    failed = [r for r in shown if r["state"] == "failed"]
    sweep_dir = os.path.realpath(sweep.dir)
    for r in failed[:max_failures]:
        console.print(
            f"[bold red]failed[/] {r['id']} ({escape(short_params(r['params']))}): {escape(str(r['reason']))}; "
            f"log {escape(str(r['log']))}"
        )
        lines = r.get("log_tail") or tail(_own_log(sweep_dir, r["log"]), log_lines)
        if lines:
            console.print("\n".join(f"    {line}" for line in lines), markup=False, highlight=False)
    if len(failed) > max_failures:
        console.print(f"... {len(failed) - max_failures} more failed points (--json lists them all)")


def status_json(sweep: Sweep, rows: list[dict]) -> str:
    return json.dumps({"sweep": sweep.name, "dir": str(sweep.dir), "counts": counts(rows), "points": rows}, indent=1)


def plan_summary(spec: SweepSpec, points: list[Point], epoch_minutes: Optional[float], source: str) -> dict:
    r = spec.resources
    epochs = sum(p.config.trainer.max_epochs for p in points)
    axes = {k: len(v) for k, v in spec.axes.product.items()}
    if spec.axes.zip:  # zipped axes vary together: one factor
        axes["(" + ", ".join(spec.axes.zip) + ")"] = len(next(iter(spec.axes.zip.values())))
    out = {
        "name": spec.name,
        "points": len(points),
        "axes": axes,
        "seeds": len(spec.seeds),
        "epochs_total": epochs,
        "nodes_per_point": r.nodes,
        "gpus_per_point": r.nodes * r.gpus_per_node,
        "epoch_minutes": epoch_minutes,
        "estimate_source": source,
        "scale": scale_summary(spec, points),
    }
    if epoch_minutes:
        node_hours = epochs * epoch_minutes / 60 * r.nodes
        out.update(node_hours=round(node_hours, 2), gpu_hours=round(node_hours * r.gpus_per_node, 2))
    return out


def print_plan(summary: dict, points: list[Point], limit: int, console: Optional[Console] = None) -> None:
    console = console or Console()
    table = Table(title=escape(f"sweep {summary['name']}"))
    for col in ("#", "point", "params", "epochs"):
        table.add_column(col)
    for p in points[:limit]:
        table.add_row(str(p.index), p.id, escape(short_params(p.params)), str(p.config.trainer.max_epochs))
    console.print(table)
    if len(points) > limit:
        console.print(f"... {len(points) - limit} more points")
    axes = escape(" x ".join(f"{k} ({n})" for k, n in summary["axes"].items())) or "no axes"
    console.print(
        f"{summary['points']} points = {axes}"
        + (f" x {summary['seeds']} seeds" if summary["seeds"] else "")
        + f"; {summary['epochs_total']} epochs in all; {summary['gpus_per_point']} GPU(s) per point"
    )
    console.print(escape(summary["scale"]), soft_wrap=True)
    if summary["epoch_minutes"]:
        console.print(
            f"estimate ({escape(summary['estimate_source'])}, {summary['epoch_minutes']:.2f} min/epoch): "
            f"{summary['gpu_hours']} GPU-hours, {summary['node_hours']} node-hours"
        )
    else:
        console.print(
            "no cost estimate: give estimate.epoch_minutes in the spec, --epoch-minutes, "
            "or --dir of a sweep with finished points"
        )
