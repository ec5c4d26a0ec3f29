"""A sweep folder: one sub-folder per point, submission to SLURM as job arrays, resume, cancel, status.

    D/sweep.json              name, SLURM job name, the spec it came from
    D/spec.yaml               a copy of the spec (provenance)
    D/points/<id>/            config.yaml, status.json, then the run's own files (checkpoints, per_class.csv...)
    D/submissions/NNN.sbatch  each rendered job-array script, NNN.points its task -> point folder list
    D/logs/<job>_<task>.out   SLURM output of each array task (appended across requeues)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from filelock import FileLock

from launch.config import atomic_write_text
from launch import sweep_slurm
from launch.sweep_spec import SweepSpec, load_spec, resolve_points
from launch.sweep_status import ACTIVE, STATUS, new_status, owner_alive, transition, write_status


class SweepError(RuntimeError):
    """A sweep folder is missing or inconsistent; the message says what to do."""


@dataclass
class Sweep:
    dir: Path
    name: str
    job_name: str

    @property
    def points_dir(self) -> Path:
        return self.dir / "points"

    def lock(self) -> FileLock:
        return FileLock(str(self.dir / ".sweep.lock"), timeout=600)

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "Sweep":
        d = Path(directory).resolve()
        meta = d / "sweep.json"
        if not meta.is_file():
            raise SweepError(f"{d} is not a sweep folder (no sweep.json); create one with "
                             f"`classreg sweep submit SPEC --dir {directory}`")
        info = json.loads(meta.read_text())
        return cls(d, info["name"], info["job_name"])

    def point_dirs(self) -> list[Path]:
        if not self.points_dir.is_dir():
            return []
        return sorted(Path(e.path) for e in os.scandir(self.points_dir) if e.is_dir())

    def statuses(self, as_paths: bool = True) -> list[tuple[Path, dict]]:
        """(point folder, status) of every point, by index (folders as str unless ``as_paths``)."""
        out = []
        if not self.points_dir.is_dir():
            return out
        for entry in os.scandir(self.points_dir):
            try:
                with open(os.path.join(entry.path, STATUS)) as fh:
                    out.append((entry.path, json.load(fh)))
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
                continue  # a point folder still being created
        out.sort(key=lambda x: x[1]["index"])
        return [(Path(p), s) for p, s in out] if as_paths else out

    def queued_jobs(self) -> dict[str, str]:
        return sweep_slurm.queued_jobs(self.job_name)


def materialise(spec_path: str | os.PathLike, directory: str | os.PathLike) -> tuple[Sweep, int, int]:
    """Create (or extend) the sweep folder: one folder per point with config.yaml and status.json.

    Points that already exist keep their status and files. Returns (sweep, new points, all points)."""
    spec = load_spec(spec_path)
    d = Path(directory).resolve()
    meta = d / "sweep.json"
    if meta.is_file():
        existing = json.loads(meta.read_text())
        if existing["name"] != spec.name:
            raise SweepError(f"{d} holds sweep '{existing['name']}', not '{spec.name}'; use another --dir")
        job_name = existing["job_name"]
    else:
        job_name = f"classreg-{spec.name}-{hashlib.sha1(str(d).encode()).hexdigest()[:6]}"
    points = resolve_points(spec, spec_path, out_dir=d / "points")  # raises before anything is written
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta, json.dumps({"name": spec.name, "job_name": job_name,
                                        "spec": str(Path(spec_path).resolve()), "time": time.time()}, indent=1))
    shutil.copyfile(spec_path, d / "spec.yaml")
    new = 0
    existing = {p.name for p, _ in Sweep(d, spec.name, job_name).statuses()}
    for pt in points:
        pdir = d / "points" / pt.id
        if pt.id in existing:
            continue
        pdir.mkdir(parents=True, exist_ok=True)
        _write_fast(pdir / "config.yaml", to_yaml_fast(pt.config))
        write_status(pdir, new_status(pt.id, pt.index, pt.params, pt.config.trainer.max_epochs), durable=False)
        new += 1
    return Sweep(d, spec.name, job_name), new, len(points)


def _write_fast(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _yaml_scalar(v) -> str:
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
        text = repr(v)
        mantissa, e, exp = text.partition("e")
        return text if not e or "." in mantissa else f"{mantissa}.0e{exp}"  # YAML 1.1 floats need the dot
    if isinstance(v, str):
        return json.dumps(v)  # a double-quoted JSON string is a YAML string
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (list, tuple, dict)) for x in v):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip()


def to_yaml_fast(cfg, indent: str = "") -> str:
    """The resolved config as YAML (what launch.config.to_yaml writes, ~50x faster: 1,000 points at once)."""
    lines = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            lines.append(f"{indent}{f.name}:\n{to_yaml_fast(v, indent + '  ')}")
        else:
            lines.append(f"{indent}{f.name}: {_yaml_scalar(v)}\n")
    return "".join(lines)


def _needs_run(status: dict, queued: dict[str, str]) -> bool:
    """Not done, and not waiting in or running from a job that is still in the queue (or a live process)."""
    if status["state"] == "done":
        return False
    if status["state"] in ACTIVE:
        owner = status.get("owner") if status["state"] == "running" else None
        job = status.get("job_id")
        if (owner and owner_alive(owner, lambda: set(queued))) or (not owner and job in queued):
            return False
    return True


def submit(sweep: Sweep, spec: Optional[SweepSpec] = None, dry_run: bool = False,
           hold: bool = False) -> tuple[Optional[str], list[str]]:
    """Submit one job array for every point that needs a run. Returns (array job id, point ids).

    Holds the sweep lock, so two submits/resumes at once never submit a point twice."""
    spec = spec or load_spec(sweep.dir / "spec.yaml")
    with sweep.lock():
        queued = {} if dry_run else sweep.queued_jobs()
        todo = [(p, s) for p, s in sweep.statuses() if _needs_run(s, queued)]
        if not todo:
            return None, []
        subs = sweep.dir / "submissions"
        subs.mkdir(exist_ok=True)
        (sweep.dir / "logs").mkdir(exist_ok=True)
        n = len(list(subs.glob("*.sbatch"))) + 1
        points_file, script = subs / f"{n:03d}.points", subs / f"{n:03d}.sbatch"
        atomic_write_text(points_file, "".join(f"{p}\n" for p, _ in todo))
        atomic_write_text(script, sweep_slurm.render_array_script(
            job_name=sweep.job_name, sweep_name=sweep.name, n_tasks=len(todo), points_file=points_file,
            log_dir=sweep.dir / "logs", resources=spec.resources))
        if dry_run:
            return None, [s["id"] for _, s in todo]
        for p, s in todo:
            if s["state"] in ACTIVE:  # its job (or process) ended without reporting: scancel, node failure, ...
                owner = s.get("owner") or {}
                what = f"process {owner['pid']} on {owner['host']} ended" if owner.get("kind") == "local" else \
                    f"job {owner.get('job_id') or s.get('job_id')} left the queue"
                transition(p, "failed", unless=lambda st: st["state"] not in ACTIVE,
                           reason=f"{what} while the point was {s['state']} (scancel, node failure or time limit)")
        array_id = sweep_slurm.sbatch(script, hold=hold)
        for i, (p, _) in enumerate(todo):
            job = f"{array_id}_{i}"
            # a fast task may already have claimed its point: never step back from running/done
            transition(p, "queued", unless=lambda s, job=job: s.get("job_id") == job and s["state"] != "queued",
                       durable=False, job_id=job, owner=None, reason=None,
                       log=str(sweep.dir / "logs" / f"{job}.out"))
        with open(sweep.dir / "submissions" / "jobs.txt", "a") as fh:
            fh.write(f"{n:03d} {array_id} {len(todo)}\n")
        return array_id, [s["id"] for _, s in todo]


def cancel(sweep: Sweep) -> list[str]:
    """scancel this sweep's queued and running array tasks; mark their points cancelled."""
    with sweep.lock():
        queued = sweep.queued_jobs()
        sweep_slurm.scancel(sorted({j.split("_")[0] for j in queued}))
        cancelled = []
        for p, s in sweep.statuses():
            job = (s.get("owner") or {}).get("job_id") or s.get("job_id")
            if s["state"] in ACTIVE and job in queued:
                if transition(p, "cancelled", unless=lambda st: st["state"] not in ACTIVE,
                              reason=f"cancelled (job {job})"):
                    cancelled.append(s["id"])
        return cancelled


def measured_epoch_minutes(sweep: Sweep) -> Optional[float]:
    per_epoch = [s["result"]["seconds_per_epoch"] for _, s in sweep.statuses()
                 if s["state"] == "done" and (s.get("result") or {}).get("seconds_per_epoch")]
    return sum(per_epoch) / len(per_epoch) / 60 if per_epoch else None

