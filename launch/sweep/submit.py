"""Submit a sweep's unfinished points as SLURM job arrays (also `resume`), and cancel its jobs."""

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


def array_limit(dry_run: bool = False) -> int:
    """Tasks one job array may have here (the cluster's MaxArraySize); SLURM's default for a dry run without SLURM."""
    try:
        limit = slurm.max_array_size()
    except slurm.SlurmError:
        if not dry_run:
            raise
        return slurm.DEFAULT_MAX_ARRAY_SIZE
    if limit < 1:
        raise slurm.SlurmError(
            f"this cluster's MaxArraySize is {limit}: job arrays are disabled here; run the points with "
            "`classreg sweep run DIR --local`, or ask the administrators for arrays"
        )
    return limit


def split_throttle(throttle: int, n_arrays: int) -> list[int]:
    """``throttle`` tasks at once for the whole sweep, shared by its arrays (each runs at least one)."""
    share, extra = divmod(throttle, n_arrays)
    return [max(1, share + (i < extra)) for i in range(n_arrays)]


def _mark_lost(todo: list[tuple]) -> None:
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


def submit(
    sweep: Sweep,
    spec: Optional[SweepSpec] = None,
    dry_run: bool = False,
    hold: bool = False,
    max_array_size: Optional[int] = None,
) -> tuple[list[str], list[str]]:
    """Submit every point that needs a run, as job arrays of at most the cluster's MaxArraySize tasks that share
    ``resources.throttle``. Returns (array job ids, point ids).

    Holds the sweep lock, so two submits/resumes at once never submit a point twice."""
    spec = spec or load_spec(sweep.dir / "spec.yaml")
    limit = max_array_size or array_limit(dry_run)
    slurm.check_output_folder(sweep.dir / "logs")
    with sweep.lock():
        queued = {} if dry_run else sweep.queued_jobs()
        todo = [(p, s) for p, s in sweep.statuses() if needs_run(s, queued)]
        if not todo:
            return [], []
        chunks = [todo[i : i + limit] for i in range(0, len(todo), limit)]
        subs = sweep.dir / "submissions"
        subs.mkdir(exist_ok=True)
        (sweep.dir / "logs").mkdir(exist_ok=True)
        n = len(list(subs.glob("*.sbatch")))
        arrays: list[str] = []
        for chunk, throttle in zip(chunks, split_throttle(spec.resources.throttle, len(chunks))):
            n += 1
            points_file, script = subs / f"{n:03d}.points", subs / f"{n:03d}.sbatch"
            atomic_write_text(points_file, "".join(f"{p}\n" for p, _ in chunk))
            atomic_write_text(
                script,
                slurm.render_array_script(
                    job_name=sweep.job_name,
                    array=f"0-{len(chunk) - 1}%{throttle}",
                    points_file=points_file,
                    log_dir=sweep.dir / "logs",
                    resources=spec.resources,
                ),
            )
            if dry_run:
                continue
            _mark_lost(chunk)
            try:
                array_id = slurm.sbatch(script, hold=hold)
            except slurm.SlurmError as e:
                done = f"submitted arrays {', '.join(arrays)} first; " if arrays else ""
                raise slurm.SlurmError(
                    f"{e} ({done}`classreg sweep resume {sweep.dir}` submits the points not yet queued)"
                ) from None
            for i, (p, _) in enumerate(chunk):
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
            with open(subs / "jobs.txt", "a") as fh:
                fh.write(f"{n:03d} {array_id} {len(chunk)}\n")
            arrays.append(array_id)
        return arrays, [s["id"] for _, s in todo]


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
