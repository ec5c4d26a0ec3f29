"""`classreg sweep sync DIR`: upload the points' offline W&B runs (and the report's) with W&B's own `wandb sync`.

Run it on a machine that reaches the W&B server (a login node). Each point's offline runs go up in one
`wandb sync` (a requeued point has several, synced in order into its one run id); a run counts as uploaded
when W&B wrote its ``.wandb.synced`` marker, and is then recorded (the point's status.json ``wandb_synced``,
the report's wandb_report.json ``synced``), so a second sync skips it and an interrupted one resumes. Points
still running are left for a later sync (their current run is still being written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from datamodules.configkit import atomic_write_text
from launch.sweep.folder import Sweep, SweepError
from launch.sweep.status import point_lock, read_status, write_status

REPORT_RECORD = "wandb_report.json"  # written by launch/report/wandb_report.py in a report folder


@dataclass
class Target:
    label: str  # the point id, or "report <folder>"
    folder: Path
    kind: str  # "point" or "report"
    unsynced: list[Path]  # offline .wandb files not uploaded yet, oldest first
    synced: int  # files already uploaded
    marked: list[Path]  # uploaded (W&B's marker is there) but not recorded yet


def offline_runs(folder: Path) -> list[Path]:
    """The offline W&B runs under ``folder``/wandb (``offline-run-<time>-<id>``: sorted = oldest first)."""
    return sorted((folder / "wandb").glob("offline-run-*/run-*.wandb"))


def _key(folder: Path, file: Path) -> str:
    return file.relative_to(folder).as_posix()


def recorded(target_folder: Path, kind: str) -> dict[str, float]:
    if kind == "point":
        return read_status(target_folder).get("wandb_synced") or {}
    path = target_folder / REPORT_RECORD
    return (json.loads(path.read_text()).get("synced") or {}) if path.is_file() else {}


def record_synced(folder: Path, kind: str, files: list[Path]) -> None:
    """Add ``files`` to the folder's synced record (under the point's status lock, as status changes are)."""
    now = time.time()
    lock = point_lock(folder) if kind == "point" else FileLock(str(folder / ".wandb_report.lock"), timeout=60)
    with lock:
        if kind == "point":
            status = read_status(folder)
            status.setdefault("wandb_synced", {}).update({_key(folder, f): now for f in files})
            write_status(folder, status)
        else:
            path = folder / REPORT_RECORD
            info = json.loads(path.read_text()) if path.is_file() else {}
            info.setdefault("synced", {}).update({_key(folder, f): now for f in files})
            atomic_write_text(path, json.dumps(info, indent=1))


def _marked_by_wandb(file: Path) -> bool:
    return file.with_suffix(".wandb.synced").exists()


def _target(label: str, folder: Path, kind: str) -> Optional[Target]:
    files = offline_runs(folder)
    if not files:
        return None
    done = recorded(folder, kind)
    # uploaded by a `wandb sync` of its own, or by a sync interrupted before it recorded them
    marked = [f for f in files if _key(folder, f) not in done and _marked_by_wandb(f)]
    unsynced = [f for f in files if _key(folder, f) not in done and f not in marked]
    return Target(label, folder, kind, unsynced, len(files) - len(unsynced), marked)


def report_folders(sweep: Sweep, extra: list[Path]) -> list[Path]:
    """Report folders inside the sweep folder (holding wandb_report.json), and the ones given."""
    inside = sorted(p.parent for p in sweep.dir.glob(f"*/{REPORT_RECORD}"))
    return list(dict.fromkeys(p.resolve() for p in [*inside, *extra]))


def find_targets(sweep: Sweep, reports: list[Path]) -> tuple[list[Target], list[str]]:
    """(every point and report with offline runs, the ids of running points left for later)."""
    targets, running = [], []
    for folder, status in sweep.statuses():
        if status["state"] == "running":
            if offline_runs(folder):
                running.append(status["id"])
            continue
        t = _target(status["id"], folder, "point")
        if t is not None:
            targets.append(t)
    for folder in reports:
        if not (folder / REPORT_RECORD).is_file():
            raise SweepError(f"{folder} holds no {REPORT_RECORD}: give a folder written by `classreg report --wandb`")
        t = _target(f"report {folder}", folder, "report")
        if t is not None:
            targets.append(t)
    return targets, running


def _reason(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln]
    line = errors[0] if errors else (lines or ["wandb sync printed nothing"])[-1]
    return line.removeprefix("wandb:").strip().removeprefix("ERROR").strip()


def wandb_sync(files: list[Path], retries: int, timeout: float) -> tuple[bool, str]:
    """Upload ``files`` (one run's parts, oldest first) with `wandb sync`; ok when W&B marked every one synced."""
    env = dict(os.environ)
    env.pop("WANDB_MODE", None)  # set offline for the training runs, perhaps: uploading is what we are here for
    env.pop("WANDB_SILENT", None)  # it hides W&B's error messages, which say why an upload failed
    env.pop("WANDB_QUIET", None)
    # W&B's own default retries for many minutes against a server that does not answer (0 means its default)
    for var in ("WANDB__GRAPHQL_RETRY_MAX", "WANDB__FILE_STREAM_RETRY_MAX", "WANDB__FILE_TRANSFER_RETRY_MAX"):
        env.setdefault(var, str(retries))
    cmd = [sys.executable, "-m", "wandb", "sync", *map(str, files)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # so that a timeout ends wandb sync and the W&B service it started
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
        return False, f"`wandb sync` did not finish in {timeout:g} s (--timeout)"
    except BaseException:  # Ctrl-C: end the upload we started (it is in its own session)
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    if proc.returncode == 0 and all(_marked_by_wandb(f) for f in files):
        return True, ""
    return False, _reason(out) + (f" (exit code {proc.returncode})" if proc.returncode else "")


def declare_report_uses(folder: Path, console: Console) -> None:
    """An offline report could not declare the per-class artifacts it uses (W&B refuses use_artifact offline):
    once everything is uploaded, declare them with W&B's public API."""
    info = json.loads((folder / REPORT_RECORD).read_text())
    todo = [u for u in info.get("uses", []) if not u.get("declared")]
    if not todo:
        return
    import wandb

    try:
        api = wandb.Api()
        entity = info.get("entity") or api.default_entity
        run = api.run(f"{entity}/{info['project']}/{info['run_id']}")
        for u in todo:
            run.use_artifact(api.artifact(f"{entity}/{info['project']}/{u['artifact']}", type="per_class_results"))
            u["declared"] = True
    except Exception as e:  # noqa: BLE001 (any API failure: the uploads stand, the links are retried next time)
        console.print(f"[yellow]note:[/] the report run's uses of per-class artifacts are not declared yet ({e})")
    with FileLock(str(folder / ".wandb_report.lock"), timeout=60):
        current = json.loads((folder / REPORT_RECORD).read_text())
        declared = {u["artifact"] for u in todo if u.get("declared")}
        for u in current.get("uses", []):
            u["declared"] = u.get("declared") or u["artifact"] in declared
        atomic_write_text(folder / REPORT_RECORD, json.dumps(current, indent=1))


def sync(
    sweep: Sweep,
    reports: list[Path] = (),
    dry_run: bool = False,
    retries: int = 3,
    timeout: float = 1800,
    console: Optional[Console] = None,
) -> int:
    """0 when every offline run that can be uploaded now is (or, with ``dry_run``, after listing them); 1 when
    some failed (one line each, then a summary)."""
    console = console or Console()
    lock = FileLock(str(sweep.dir / ".sync.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepError(f"another `classreg sweep sync` is running on {sweep.dir}; let it finish") from None
    try:
        targets, running = find_targets(sweep, report_folders(sweep, [Path(r) for r in reports]))
        todo = [t for t in targets if t.unsynced]
        files = sum(len(t.unsynced) for t in todo)
        already = sum(t.synced for t in targets)
        later = f"; {len(running)} running points are left for a later sync" if running else ""
        if dry_run:
            for t in todo:
                for f in t.unsynced:
                    console.print(f"would sync {t.label}: {f}", markup=False, highlight=False, soft_wrap=True)
            console.print(
                f"dry run: {files} offline runs of {len(todo)} points/reports to upload; {already} already synced"
                + later,
                soft_wrap=True,
            )
            return 0
        for t in targets:
            if t.marked:
                record_synced(t.folder, t.kind, t.marked)
        failed, synced = [], 0
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("wandb sync", total=files)
            for t in sorted(todo, key=lambda t: t.kind == "report"):  # the points' artifacts first
                progress.update(task, description=f"wandb sync {t.label}")
                ok, reason = wandb_sync(t.unsynced, retries, timeout)
                if ok:
                    record_synced(t.folder, t.kind, t.unsynced)
                    synced += len(t.unsynced)
                else:
                    failed.append(t)
                    progress.console.print(f"failed {t.label}: {reason}", markup=False, highlight=False, soft_wrap=True)
                progress.advance(task, len(t.unsynced))
        summary = f"synced {synced} of {files} offline runs ({len(todo) - len(failed)} of {len(todo)} points/reports)"
        if already:
            summary += f"; {already} were synced before"
        if failed:
            console.print(
                f"{summary}; {len(failed)} failed: nothing of theirs is marked synced; run "
                f"`classreg sweep sync {sweep.dir}` again to retry them" + later,
                soft_wrap=True,
            )
            return 1
        for t in targets:
            if t.kind == "report":
                declare_report_uses(t.folder, console)  # the points' artifacts are all uploaded now
        console.print(summary + later, soft_wrap=True)
        return 0
    finally:
        lock.release()
