"""Submit a sweep's unfinished points as one SLURM job array (also `resume`), and cancel its jobs."""

from __future__ import annotations

from typing import Optional

from datamodules.configkit import atomic_write_text
from launch.sweep import slurm
from launch.sweep.folder import Sweep
from launch.sweep.spec import SweepSpec, load_spec
from launch.sweep.status import ACTIVE, owner_alive, transition


def needs_run(status: dict, queued: dict[str, str]) -> bool:
    """Not done, and not waiting in or running from a job that is still in the queue (or a live process)."""
    if status["state"] == "done":
        return False
    if status["state"] in ACTIVE:
        owner = status.get("owner") if status["state"] == "running" else None
        job = status.get("job_id")
        if (owner and owner_alive(owner, lambda: set(queued))) or (not owner and job in queued):
            return False
    return True


def submit(
    sweep: Sweep, spec: Optional[SweepSpec] = None, dry_run: bool = False, hold: bool = False
) -> tuple[Optional[str], list[str]]:
    """Submit one job array for every point that needs a run. Returns (array job id, point ids).

    Holds the sweep lock, so two submits/resumes at once never submit a point twice."""
    spec = spec or load_spec(sweep.dir / "spec.yaml")
    with sweep.lock():
        queued = {} if dry_run else sweep.queued_jobs()
        todo = [(p, s) for p, s in sweep.statuses() if needs_run(s, queued)]
        if not todo:
            return None, []
        subs = sweep.dir / "submissions"
        subs.mkdir(exist_ok=True)
        (sweep.dir / "logs").mkdir(exist_ok=True)
        n = len(list(subs.glob("*.sbatch"))) + 1
        points_file, script = subs / f"{n:03d}.points", subs / f"{n:03d}.sbatch"
        atomic_write_text(points_file, "".join(f"{p}\n" for p, _ in todo))
        atomic_write_text(
            script,
            slurm.render_array_script(
                job_name=sweep.job_name,
                sweep_name=sweep.name,
                n_tasks=len(todo),
                points_file=points_file,
                log_dir=sweep.dir / "logs",
                resources=spec.resources,
            ),
        )
        if dry_run:
            return None, [s["id"] for _, s in todo]
        for p, s in todo:
            if s["state"] in ACTIVE:  # its job (or process) ended without reporting: scancel, node failure, ...
                owner = s.get("owner") or {}
                what = (
                    f"process {owner['pid']} on {owner['host']} ended"
                    if owner.get("kind") == "local"
                    else f"job {owner.get('job_id') or s.get('job_id')} left the queue"
                )
                transition(
                    p,
                    "failed",
                    unless=lambda st: st["state"] not in ACTIVE,
                    reason=f"{what} while the point was {s['state']} (scancel, node failure or time limit)",
                )
        array_id = slurm.sbatch(script, hold=hold)
        for i, (p, _) in enumerate(todo):
            job = f"{array_id}_{i}"
            # a fast task may already have claimed its point: never step back from running/done
            transition(
                p,
                "queued",
                unless=lambda s, job=job: s.get("job_id") == job and s["state"] != "queued",
                durable=False,
                job_id=job,
                owner=None,
                reason=None,
                log=str(sweep.dir / "logs" / f"{job}.out"),
            )
        with open(sweep.dir / "submissions" / "jobs.txt", "a") as fh:
            fh.write(f"{n:03d} {array_id} {len(todo)}\n")
        return array_id, [s["id"] for _, s in todo]


def cancel(sweep: Sweep) -> list[str]:
    """scancel this sweep's queued and running array tasks; mark their points cancelled."""
    with sweep.lock():
        queued = sweep.queued_jobs()
        slurm.scancel(sorted({j.split("_")[0] for j in queued}))
        cancelled = []
        for p, s in sweep.statuses():
            job = (s.get("owner") or {}).get("job_id") or s.get("job_id")
            if s["state"] in ACTIVE and job in queued:
                if transition(
                    p, "cancelled", unless=lambda st: st["state"] not in ACTIVE, reason=f"cancelled (job {job})"
                ):
                    cancelled.append(s["id"])
        return cancelled
