"""A sweep folder: one sub-folder per point (submitted by launch/sweep/submit.py).

D/sweep.json              name, SLURM job name, the spec it came from
D/spec.yaml               a copy of the spec (provenance)
D/points/<id>/            config.yaml, status.json, then the run's own files (checkpoints, per_class.csv...)
D/submissions/NNN.sbatch  each rendered job-array script, NNN.points its task -> point folder list
D/logs/<job>_<task>.out   SLURM output of each array task (appended across requeues)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from filelock import FileLock

from datamodules.configkit import ClassregError, atomic_write_text, dump_yaml
from launch.sweep import slurm
from launch.sweep.spec import load_spec, resolve_points
from launch.sweep.status import STATUS, new_status, write_status


class SweepError(ClassregError):
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
            raise SweepError(
                f"{d} is not a sweep folder (no sweep.json); create one with "
                f"`classreg sweep submit SPEC --dir {directory}`"
            )
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
        return slurm.queued_jobs(self.job_name)


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
    atomic_write_text(
        meta,
        json.dumps(
            {"name": spec.name, "job_name": job_name, "spec": str(Path(spec_path).resolve()), "time": time.time()},
            indent=1,
        ),
    )
    shutil.copyfile(spec_path, d / "spec.yaml")
    new = 0
    existing = {p.name for p, _ in Sweep(d, spec.name, job_name).statuses()}
    for pt in points:
        pdir = d / "points" / pt.id
        if pt.id in existing:
            continue
        pdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pdir / "config.yaml", dump_yaml(pt.config), durable=False)
        write_status(pdir, new_status(pt.id, pt.index, pt.params, pt.config.trainer.max_epochs), durable=False)
        new += 1
    return Sweep(d, spec.name, job_name), new, len(points)


def measured_epoch_minutes(sweep: Sweep) -> Optional[float]:
    per_epoch = [
        s["result"]["seconds_per_epoch"]
        for _, s in sweep.statuses()
        if s["state"] == "done" and (s.get("result") or {}).get("seconds_per_epoch")
    ]
    return sum(per_epoch) / len(per_epoch) / 60 if per_epoch else None
