"""`classreg sweep status DIR --watch [SECONDS]`: a live view of a sweep, refreshed until no point is queued or
running (or Ctrl-C). It reads the status files and what the points write (metrics.json, resume.json) and asks
squeue for the queue; it touches no training process. Without a terminal it prints one plain line per refresh
(and each new failure once).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from launch.sweep.folder import Sweep
from launch.sweep.report import STYLE, counts, short_params, status_rows
from launch.sweep.slurm import SlurmError
from launch.sweep.status import ACTIVE, STATUS, pid_alive
from lightning_modules.run_record import read_record


def _stat_key(path: str):
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size  # results files are replaced by a rename: a new inode


@dataclass
class _OnePoint:
    """What ``status_rows`` reads of a sweep, for one point."""

    point: str
    status: dict
    dir: str

    def statuses(self, as_paths: bool = False):
        return [(self.point, self.status)]


@dataclass
class WatchedSweep(Sweep):
    """A Sweep that re-reads, between two refreshes, only the status files, metrics.json and resume.json that
    changed (one stat each otherwise), and recomputes only the rows of ``status_rows`` whose inputs changed."""

    _cache: dict = field(default_factory=dict, repr=False)
    _rates: dict = field(default_factory=dict, repr=False)
    _rows: dict = field(default_factory=dict, repr=False)
    peak_running: int = 0  # the most points seen running at once in this watch: the sweep's parallelism

    @classmethod
    def of(cls, sweep: Sweep) -> "WatchedSweep":
        return cls(sweep.dir, sweep.name, sweep.job_name)

    def statuses(self, as_paths: bool = True) -> list[tuple[Path, dict]]:
        out = []
        if not self.points_dir.is_dir():
            return out
        for entry in os.scandir(self.points_dir):
            path = f"{entry.path}/{STATUS}"  # os.path.join is a cost here, at 10,000 points a refresh
            key = _stat_key(path)
            hit = self._cache.get(entry.path)
            if key is None:
                continue  # a point folder still being created
            if hit is None or hit[0] != key:
                try:
                    with open(path) as fh:
                        hit = self._cache[entry.path] = (key, json.load(fh))
                except (FileNotFoundError, json.JSONDecodeError):
                    continue
            out.append((entry.path, hit[1]))
        out.sort(key=lambda x: x[1]["index"])
        return [(Path(p), s) for p, s in out] if as_paths else out

    def rows(self, queued: Optional[dict[str, str]]) -> list[dict]:
        """``status_rows(self, queued)``: a row depends on the status, metrics.json (but for pending and done
        points) and the point's job in the queue."""
        out = []
        for point, status in self.statuses(as_paths=False):
            job = (status.get("owner") or {}).get("job_id") or status.get("job_id")
            key = (
                self._cache[point][0],
                None if status["state"] in ("pending", "done") else _stat_key(f"{point}/metrics.json"),
                queued is None,
                job,
                (queued or {}).get(job),
            )
            hit = self._rows.get(point)
            if hit is None or hit[0] != key:
                [row] = status_rows(_OnePoint(point, status, self.dir), queued)
                hit = self._rows[point] = (key, row)
            out.append(dict(hit[1]))
        return out

    def seconds_per_epoch(self, point: str) -> Optional[float]:
        """``running_seconds_per_epoch``, recomputed only when resume.json or metrics.json changed."""
        key = [_stat_key(os.path.join(point, name)) for name in ("resume.json", "metrics.json")]
        hit = self._rates.get(point)
        if hit is None or hit[0] != key:
            hit = self._rates[point] = (key, running_seconds_per_epoch(point))
        return hit[1]


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {s:02d}s" if minutes else f"{s}s"


def running_seconds_per_epoch(point: str) -> Optional[float]:
    """Since the point's last (re)start (resume.json): seconds per epoch up to its last validation (the time
    metrics.json was written)."""
    starts = [r for r in read_record(point) if r.get("event") == "start"]
    if not starts:
        return None
    path = os.path.join(point, "metrics.json")
    try:
        written = os.stat(path).st_mtime
        with open(path) as fh:
            epoch = json.load(fh)["last"]["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    epochs = epoch + 1 - starts[-1]["epoch"]
    elapsed = written - starts[-1]["time"]
    return elapsed / epochs if epochs > 0 and elapsed > 0 else None


def _lost(row: dict) -> bool:
    """Queued or running by its status file, but its SLURM job left the queue, or its local process is gone."""
    if row["state"] not in ACTIVE:
        return False
    if row["in_queue"] is False:
        return True
    owner = next((h.get("owner") for h in reversed(row["history"]) if h["state"] == "running"), None)
    local = row["state"] == "running" and owner and owner.get("kind") == "local"
    return bool(local and owner.get("host") == socket.gethostname() and not pid_alive(owner["pid"]))


@dataclass
class Snapshot:
    sweep: Sweep
    rows: list[dict]
    counts: dict[str, int]
    epochs_done: int
    epochs_total: int
    running: list[dict]  # rows, each with its measured "rate" (seconds per epoch) and "eta"
    failed: list[dict]
    lost: int
    seconds_per_epoch: Optional[float]  # the median over finished and running points
    eta: Optional[float]  # seconds until the queued and running points are done, at `parallel` at a time
    parallel: int
    taken: float = field(default_factory=time.time)

    @property
    def active(self) -> int:
        return sum(self.counts[s] for s in ACTIVE) - self.lost

    @property
    def all_done(self) -> bool:
        return self.counts["done"] == len(self.rows)


def snapshot(sweep: Sweep) -> Snapshot:
    if not isinstance(sweep, WatchedSweep):
        sweep = WatchedSweep.of(sweep)
    try:
        queued = sweep.queued_jobs()
    except SlurmError:
        queued = None  # no SLURM client here: queue states unknown
    rows = sweep.rows(queued)
    measured, running, failed = [], [], []
    done = total = remaining = lost = 0
    for r in rows:
        max_epochs = r["max_epochs"] or 0
        epochs = max_epochs if r["state"] == "done" else min(r["epoch"] or 0, max_epochs)
        total += max_epochs
        done += epochs
        if _lost(r):
            lost += 1
        elif r["state"] in ACTIVE:
            remaining += max_epochs - epochs
        if r["state"] == "done" and r["seconds_per_epoch"]:
            measured.append(r["seconds_per_epoch"])
        elif r["state"] == "running":
            r["rate"] = sweep.seconds_per_epoch(str(sweep.points_dir / r["id"]))
            if r["rate"]:
                measured.append(r["rate"])
            running.append(r)
        elif r["state"] == "failed":
            failed.append(r)
    spe = statistics.median(measured) if measured else None
    for r in running:
        rate = r["rate"] or spe
        r["eta"] = rate * (r["max_epochs"] - (r["epoch"] or 0)) if rate and r["max_epochs"] else None
    parallel = max(1, len(running))
    sweep.peak_running = parallel = max(parallel, sweep.peak_running)  # none may run for a moment between two
    eta = remaining * spe / parallel if spe is not None else (0.0 if not remaining else None)
    return Snapshot(sweep, rows, counts(rows), done, total, running, failed, lost, spe, eta, parallel)


def _counts_text(snap: Snapshot, markup: bool) -> str:
    parts = [(f"[{STYLE[k]}]{v} {k}[/]" if markup else f"{v} {k}") for k, v in snap.counts.items() if v]
    text = f"{len(snap.rows)} points: " + ", ".join(parts)
    return text + (f" ({snap.lost} lost: their job or process is gone)" if snap.lost else "")


def _eta_text(snap: Snapshot) -> str:
    if snap.active <= 0:
        return "nothing queued or running"
    if not snap.seconds_per_epoch:
        return "ETA after the first validated epoch"
    return (
        f"{fmt_duration(snap.seconds_per_epoch)}/epoch, ETA {fmt_duration(snap.eta)} "
        f"({snap.parallel} point{'s' if snap.parallel > 1 else ''} at a time)"
    )


def plain_line(snap: Snapshot) -> str:
    pct = 100 * snap.epochs_done / snap.epochs_total if snap.epochs_total else 100.0
    stamp = datetime.fromtimestamp(snap.taken).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{stamp} sweep {snap.sweep.name}: {_counts_text(snap, markup=False)}; epochs {snap.epochs_done}/"
        f"{snap.epochs_total} ({pct:.1f}%); {_eta_text(snap)}"
    )


def failure_line(r: dict) -> str:
    return f"failed {r['id']} ({short_params(r['params'])}): {r['reason']}; log {r['log']}"


def render(snap: Snapshot, every: float, height: int, max_failures: int = 5) -> Group:
    stamp = datetime.fromtimestamp(snap.taken).strftime("%H:%M:%S")
    head = Text.from_markup(
        f"[bold]sweep {snap.sweep.name}[/] ({snap.sweep.dir}): {_counts_text(snap, markup=True)}\n"
        f"[dim]refreshed {stamp}, every {every:g} s; Ctrl-C quits (the sweep runs on)[/]"
    )
    pct = 100 * snap.epochs_done / snap.epochs_total if snap.epochs_total else 100.0
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(1, snap.epochs_total), completed=snap.epochs_done, width=40),
        f"{snap.epochs_done}/{snap.epochs_total} epochs ({pct:.1f}%)",
        _eta_text(snap),
    )
    parts = [head, bar]
    if snap.running:
        shown = max(1, height - 12 - min(len(snap.failed), max_failures))
        table = Table(title=f"running ({len(snap.running)})", title_justify="left")
        for col in ("#", "point", "params", "epoch", "acc", "s/epoch", "ETA", "job"):
            table.add_column(col, justify="right" if col in ("#", "epoch", "acc", "s/epoch", "ETA") else "left")
        for r in snap.running[:shown]:
            table.add_row(
                str(r["index"]),
                r["id"],
                short_params(r["params"]),
                f"{r['epoch'] or 0}/{r['max_epochs']}",
                f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "",
                f"{r['rate']:.1f}" if r["rate"] else "",
                fmt_duration(r["eta"]) if r["eta"] is not None else "",
                r["job_id"] or r["owner"] or "",
            )
        parts.append(table)
        if len(snap.running) > shown:
            parts.append(Text(f"... {len(snap.running) - shown} more running"))
    for r in snap.failed[:max_failures]:
        parts.append(Text.from_markup("[bold red]failed[/] ") + Text(failure_line(r)[len("failed ") :]))
    if len(snap.failed) > max_failures:
        parts.append(Text(f"... {len(snap.failed) - max_failures} more failed (`classreg sweep status --json`)"))
    return Group(*parts)


def final_message(snap: Snapshot) -> str:
    if snap.all_done:
        return f"sweep {snap.sweep.name}: all {len(snap.rows)} points done (`classreg report {snap.sweep.dir}`)"
    left = {k: v for k, v in snap.counts.items() if k != "done" and v}
    listing = ", ".join(f"{v} {k}" for k, v in left.items())
    return (
        f"sweep {snap.sweep.name}: nothing queued or running; {snap.counts['done']} done, {listing}"
        + (f" ({snap.lost} lost)" if snap.lost else "")
        + f": `classreg sweep resume {snap.sweep.dir}` re-submits what is not done"
    )


def watch(sweep: Sweep, every: float, console: Optional[Console] = None) -> int:
    """Refresh every ``every`` seconds until no point is queued or running: 0 when every point is done, 1 when
    some are not (failed, cancelled, never submitted, lost); Ctrl-C: 0."""
    from rich.live import Live

    console = console or Console()
    sweep = WatchedSweep.of(sweep)
    try:
        snap = snapshot(sweep)
        if not console.is_terminal:
            seen: set[str] = set()
            while True:
                console.print(plain_line(snap), markup=False, highlight=False, soft_wrap=True)
                for r in snap.failed:
                    if r["id"] not in seen:
                        seen.add(r["id"])
                        console.print(failure_line(r), markup=False, highlight=False, soft_wrap=True)
                if snap.active <= 0:
                    break
                time.sleep(every)
                snap = snapshot(sweep)
        else:
            with Live(render(snap, every, console.height), console=console, auto_refresh=False) as live:
                while snap.active > 0:
                    time.sleep(every)
                    snap = snapshot(sweep)
                    live.update(render(snap, every, console.height), refresh=True)
    except KeyboardInterrupt:
        console.print("stopped watching (the sweep runs on)")
        return 0
    console.print(final_message(snap), markup=False, highlight=False, soft_wrap=True)
    return 0 if snap.all_done else 1
