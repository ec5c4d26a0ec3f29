"""The array-task side of a sweep point (called by the rendered sbatch script and the local executor).

python -m launch.sweep.task start POINT_DIR --log LOG    # exit 0: run it; 3: done or held by a live job
python -m launch.sweep.task finish POINT_DIR --rc RC --log LOG
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Optional

from launch.sweep.status import claim, slurm_owner, tail, transition
from lightning_modules.run_record import read_record, run_completed, slurm_job_id

SKIP = 3


def start_slurm(point: Path, log: Optional[str]) -> int:
    from launch.sweep.slurm import queued_jobs

    job = slurm_job_id()
    c = claim(
        point,
        slurm_owner(job),
        slurm_jobs=lambda: set(queued_jobs(os.environ["SLURM_JOB_NAME"])),
        job_id=job,
        host=socket.gethostname(),
        log=log,
        restart_count=int(os.environ.get("SLURM_RESTART_COUNT", 0)),
    )
    if not c.granted:
        print(f"not running {point.name}: {c.reason}", flush=True)
        return SKIP
    return 0


def failure_reason(rc: int) -> str:
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else None
    if sig:
        try:
            return f"killed by {signal.Signals(sig).name} (exit code {rc})"
        except ValueError:
            pass
    return f"exit code {rc}"


def result_of(point: Path) -> Optional[dict]:
    """Final metrics and the measured seconds per epoch of the last (re)start, for status and plan."""
    try:
        last = json.loads((point / "metrics.json").read_text())["last"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    out = {k: last.get(k) for k in ("epoch", "accuracy", "mean_class_accuracy", "worst_class_accuracy", "worst_class")}
    record = read_record(point)
    starts = [r for r in record if r.get("event") == "start"]
    if starts and record[-1].get("event") == "end" and record[-1]["epoch"] > starts[-1]["epoch"]:
        out["seconds_per_epoch"] = (record[-1]["time"] - starts[-1]["time"]) / (
            record[-1]["epoch"] - starts[-1]["epoch"]
        )
    return out


def divergence_of(point: Path) -> Optional[dict]:
    """The run's ``"diverged": {"epoch", "step", "loss"}`` record in metrics.json, if its training diverged."""
    try:
        return json.loads((point / "metrics.json").read_text()).get("diverged")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def finish(point: Path, rc: int, log: Optional[str]) -> str:
    """done when the fit exited 0 and reached max_epochs; failed (with the reason and log) otherwise."""
    if rc == 0 and run_completed(point):
        transition(point, "done", result=result_of(point), reason=None)
        return "done"
    diverged = divergence_of(point) if rc != 0 else None
    if diverged:
        reason = f"diverged at epoch {diverged['epoch']} step {diverged['step']} (training loss {diverged['loss']})"
    else:
        reason = failure_reason(rc) if rc != 0 else "fit exited before reaching trainer.max_epochs"
    lines = tail(log, 3)
    transition(point, "failed", reason=reason, log=log, result=result_of(point), log_tail=lines or None)
    return "failed"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.sweep.task")
    p.add_argument("action", choices=["start", "finish"])
    p.add_argument("point", type=Path)
    p.add_argument("--log", default=None)
    p.add_argument("--rc", type=int, default=0)
    a = p.parse_args(argv)
    if a.action == "start":
        return start_slurm(a.point, a.log)
    print(f"point {a.point.name}: {finish(a.point, a.rc, a.log)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
