"""Benchmark (not a test): `sweep submit` of a 1,000-point grid and `sweep status` of 10,000 point folders.

    python bench/sweep_scale.py [--workdir DIR] [--repeats 3]

Submission is timed as `classreg sweep submit` does it: validate every point, write its folder
(config.yaml, status.json), render the job-array script and, when a SLURM cluster answers (SLURM_CONF set,
e.g. by slurm/start_local_cluster.sh), submit it held (`--hold`), mark 1,000 points queued and cancel it;
otherwise as `--dry-run`. Each is repeated (`--repeats`) next to the filesystem's floor, and the medians and
per-repeat ratios are printed (a shared machine's timings vary several-fold). Targets: submit < 2 s,
status < 1 s, one refresh of `status --watch` < 1 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from launch.sweep.folder import Sweep, materialise  # noqa: E402
from launch.sweep.report import print_status, status_json, status_rows  # noqa: E402
from launch.sweep.status import read_status, transition  # noqa: E402
from launch.sweep.submit import cancel, submit  # noqa: E402
from launch.sweep.watch import WatchedSweep, plain_line, render, snapshot  # noqa: E402


def write_spec(path: Path, name: str, seeds: int) -> Path:
    spec = {
        "name": name,
        "base": "configs/cifar10_resnet18.yaml",
        "overrides": ["data.root=/data/cifar10"],
        "axes": {
            "product": {
                "optim.lr": [round(0.01 * (i + 1), 2) for i in range(10)],
                "optim.label_smoothing": [round(0.05 * i, 2) for i in range(10)],
            }
        },
        "seeds": list(range(seeds)),
        "resources": {"cpus_per_task": 1, "mem": "100M", "throttle": 100},
    }  # the local cluster has no GPUs
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def floor_write(folder: Path, n: int) -> float:
    """What the filesystem alone needs: n new folders with two small files each (no Python work)."""
    folder.mkdir(parents=True)
    t = time.perf_counter()
    for i in range(n):
        os.mkdir(folder / str(i))
        for name in ("config.yaml", "status.json"):
            with open(folder / str(i) / name, "w") as fh:
                fh.write("x" * 800)
    return time.perf_counter() - t


def floor_read(folder: Path) -> float:
    t = time.perf_counter()
    for entry in os.scandir(folder):
        with open(os.path.join(entry.path, "status.json")) as fh:
            fh.read()
    return time.perf_counter() - t


def submit_once(work: Path, spec: Path, i: int, real: bool) -> dict:
    """One timed `sweep submit` of the 1,000-point grid into a fresh folder, and the floor measured next to it."""
    t_mat, (sweep, _, total) = timed(lambda: materialise(spec, work / f"grid1000-{i}"))
    t_sub, (arrays, ids) = timed(lambda: submit(sweep, dry_run=not real, hold=True))
    out = {"total": total, "write": t_mat, "submit": t_sub, "arrays": arrays, "queued": len(ids), "sweep": sweep}
    out["floor"] = floor_write(work / f"floor1000-{i}", 1000)
    if real:
        out["cancel"], _ = timed(lambda: cancel(sweep))
    return out


def status_once(sweep: Sweep) -> dict:
    t_rows, rows = timed(lambda: status_rows(sweep, {}))
    console = Console(file=io.StringIO(), width=140)
    t_table, _ = timed(lambda: print_status(sweep, rows, limit=200, console=console))
    t_json, text = timed(lambda: status_json(sweep, rows))
    return {"rows": t_rows, "table": t_table, "json": t_json, "mb": len(text) / 1e6, "n": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None, help="where the sweep folders go (default: a temp folder)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are printed")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    real = bool(os.environ.get("SLURM_CONF")) and shutil.which("sbatch") is not None

    spec = write_spec(work / "grid1000.yaml", "grid1000", seeds=10)
    runs = [submit_once(work, spec, i, real) for i in range(a.repeats)]
    r = {k: statistics.median(x[k] for x in runs) for k in ("write", "submit", "floor", *(("cancel",) if real else ()))}
    ratios = ", ".join(f"{(x['write'] + x['submit']) / x['floor']:.1f}x" for x in runs)
    how = f"sbatch --hold, {runs[0]['queued']} points marked queued" if real else "--dry-run (no SLURM here)"
    print(
        f"submit of {runs[0]['total']} points: {r['write'] + r['submit']:.2f} s (median of {a.repeats}; "
        f"validate + write folders {r['write']:.2f} s; render job array, {how}: {r['submit']:.2f} s); "
        f"per repeat {ratios} the filesystem floor"
    )
    if real:
        print(f"cancel of {runs[0]['queued']} queued points: {r['cancel']:.2f} s")
    print(f"  (this filesystem alone: 1000 folders with 2 small files take {r['floor']:.2f} s)")
    t_again, (_, new_again, _) = timed(lambda: materialise(spec, runs[0]["sweep"].dir))
    print(f"submit again (nothing new, {new_again} new points): {t_again:.2f} s")

    spec = write_spec(work / "grid10000.yaml", "grid10000", seeds=100)
    t_big, (sweep, _, total) = timed(lambda: materialise(spec, work / "grid10000"))
    rng = random.Random(0)
    points = sweep.point_dirs()
    for p in rng.sample(points, 3000):  # a sweep in flight: done, running, failed points
        st = rng.choice(["done", "done", "running", "failed"])
        if st == "done":
            transition(p, "running", owner={"kind": "slurm", "job_id": "1_1"})
            transition(p, "done", result={"epoch": 89, "accuracy": rng.random()})
        elif st == "running":
            transition(p, "running", owner={"kind": "slurm", "job_id": "1_2"})
            (p / "metrics.json").write_text(json.dumps({"last": {"epoch": 10, "accuracy": 0.5}}))
            (p / "resume.json").write_text(json.dumps([{"event": "start", "time": time.time() - 600, "epoch": 0}]))
        else:
            (sweep.dir / "logs").mkdir(exist_ok=True)
            log = sweep.dir / "logs" / f"{p.name}.out"
            log.write_text("line\n" * 50 + "RuntimeError: boom\n")
            transition(p, "failed", reason="exit code 1", log=str(log))
    print(f"(set up {total} point folders in {t_big:.1f} s)")
    sweep = Sweep.open(work / "grid10000")
    pairs = [(floor_read(sweep.points_dir), status_once(sweep)) for _ in range(a.repeats)]
    floor_r = statistics.median(f for f, _ in pairs)
    s = {k: statistics.median(x[k] for _, x in pairs) for k in ("rows", "table", "json")}
    ratios = ", ".join(f"{(x['rows'] + x['table']) / f:.1f}x" for f, x in pairs)
    print(
        f"status of {pairs[0][1]['n']} points: {s['rows'] + s['table']:.2f} s (median of {a.repeats}; read "
        f"{s['rows']:.2f} s, table {s['table']:.2f} s); per repeat {ratios} the filesystem floor; --json "
        f"{s['rows'] + s['json']:.2f} s ({pairs[0][1]['mb']:.1f} MB)"
    )
    print(f"  (this filesystem alone: reading 10000 small files takes {floor_r:.2f} s)")
    live = Console(file=io.StringIO(), width=140, height=50, force_terminal=True)
    watched = WatchedSweep.of(sweep)
    t_first, snap = timed(lambda: snapshot(watched))
    refreshes = []
    for changed in (rng.sample(points, 100) for _ in range(3)):
        for p in changed:  # between two refreshes, 100 points change (an epoch validated, a point done...)
            transition(p, "running", owner={"kind": "slurm", "job_id": "1_3"})
        t_snap, snap = timed(lambda: snapshot(watched))
        t_draw, _ = timed(lambda snap=snap: live.print(render(snap, 10, live.height)))
        refreshes.append((t_snap + t_draw, t_snap, t_draw))
    total, t_snap, t_draw = sorted(refreshes)[1]
    t_line, _ = timed(lambda: plain_line(snap))
    print(
        f"status --watch refresh of {len(snap.rows)} points ({len(snap.running)} running): {total:.2f} s "
        f"(read {t_snap:.2f} s, draw {t_draw:.2f} s; median of 3, 100 points changed before each); first view "
        f"{t_first:.2f} s; plain line {t_line * 1000:.1f} ms"
    )
    assert read_status(points[0])["id"] == points[0].name
    print(f"folders kept in {work}")


if __name__ == "__main__":
    main()
