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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock

from datamodules.configkit import ClassregError, atomic_write_text, dump_yaml
from launch.sweep import slurm
from launch.sweep.spec import Point, SweepSpec, load_spec, resolve_points
from launch.sweep.status import STATUS, new_status, valid_status


class SweepError(ClassregError):
    """A sweep folder is missing or inconsistent; the message says what to do."""


POINT_ID = re.compile(r"[0-9a-f]{12}")  # launch/sweep/spec.py config_id
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _read_meta(meta: Path) -> dict:
    """sweep.json, checked: its job name goes into #SBATCH lines and squeue/scancel calls."""
    try:
        info = json.loads(meta.read_text())
        ok = all(isinstance(info.get(k), str) and JOB_NAME.fullmatch(info[k]) for k in ("name", "job_name"))
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise SweepError(
            f"{meta} is not a sweep.json that classreg writes (it needs a 'name' and a 'job_name' of letters, "
            "digits and _.-): submit the spec into a new --dir"
        )
    return info


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
        info = _read_meta(meta)
        return cls(d, info["name"], info["job_name"])

    def point_dirs(self) -> list[Path]:
        if not self.points_dir.is_dir():
            return []
        return sorted(Path(e.path) for e in os.scandir(self.points_dir) if e.is_dir() and POINT_ID.fullmatch(e.name))

    def statuses(self, as_paths: bool = True) -> list[tuple[Path, dict]]:
        """(point folder, status) of every point, by index (folders as str unless ``as_paths``).

        Only folders named like point ids are points; a status.json that classreg did not write stops here."""
        out = []
        if not self.points_dir.is_dir():
            return out
        for entry in os.scandir(self.points_dir):
            if not POINT_ID.fullmatch(entry.name):
                continue  # not a point folder: left alone
            path = entry.path + os.sep + STATUS
            try:
                with open(path, "rb") as fh:
                    status = json.loads(fh.read())
            except (FileNotFoundError, NotADirectoryError):
                continue  # a point folder still being created
            except ValueError:  # not JSON, or not UTF-8
                status = None
            if not valid_status(status, entry.name):
                raise SweepError(
                    f"{path} is not a point status that classreg writes: move that folder out of "
                    f"{self.points_dir} (or `classreg sweep submit` the spec into a new --dir)"
                )
            out.append((entry.path, status))
        out.sort(key=lambda x: x[1]["index"])
        return [(Path(p), s) for p, s in out] if as_paths else out

    def queued_jobs(self) -> dict[str, str]:
        return slurm.queued_jobs(self.job_name)


def _config_yaml_writer() -> Callable[[dict], str]:
    """``dump_yaml`` of a config (as plain containers), one top-level key at a time, each distinct value dumped
    once: the points of a sweep share most of their sections, and PyYAML spends ~2 ms on a whole config."""
    done: dict[str, str] = {}

    def write(plain: dict) -> str:
        parts = []
        for key, value in plain.items():
            memo = f"{key}={value!r}"
            if memo not in done:
                done[memo] = dump_yaml({key: value})
            parts.append(done[memo])
        return "".join(parts)

    return write


@dataclass
class PreparedSweep:
    """A sweep folder checked and planned (spec, points, folder name), nothing written yet: ``write()`` does."""

    spec_path: Path
    spec: SweepSpec
    dir: Path
    job_name: str
    points: list[Point]

    def write(self) -> tuple[Sweep, int, int]:
        d, spec = self.dir, self.spec
        spec_text = self.spec_path.read_text()
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            d / "sweep.json",
            json.dumps(
                {
                    "name": spec.name,
                    "job_name": self.job_name,
                    "spec": str(self.spec_path.resolve()),
                    "time": time.time(),
                },
                indent=1,
            ),
        )
        atomic_write_text(d / "spec.yaml", spec_text)
        sweep = Sweep(d, spec.name, self.job_name)
        existing = {p.name for p in sweep.point_dirs() if (p / STATUS).is_file()}
        config_yaml = _config_yaml_writer()
        points_dir = str(d / "points")
        os.makedirs(points_dir, exist_ok=True)
        new = 0
        for pt in self.points:
            if pt.id in existing:
                continue
            status = new_status(pt.id, pt.index, pt.params, pt.config.trainer.max_epochs)
            _write_point(os.path.join(points_dir, pt.id), config_yaml(pt.plain), json.dumps(status, indent=1))
            new += 1
        return sweep, new, len(self.points)


def _write_point(folder: str, config_text: str, status_text: str) -> None:
    """A new point folder. status.json comes last, by rename: a folder without it is not a point yet (statuses()
    skips it, the next submit writes it again), so config.yaml needs no rename of its own. No fsync: a sweep
    folder is rewritten by the next submit, and thousands of fsyncs would dominate a large submit."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.yaml"), "w") as fh:
        fh.write(config_text)
    tmp = os.path.join(folder, f".{STATUS}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(status_text)
    os.replace(tmp, os.path.join(folder, STATUS))


def prepare(spec_path: str | os.PathLike, directory: str | os.PathLike) -> PreparedSweep:
    """Check the spec, every point and the folder (its name, the sweep it already holds); write nothing."""
    spec = load_spec(spec_path)
    d = Path(directory).resolve()
    slurm.check_output_folder(d / "logs")
    meta = d / "sweep.json"
    if meta.is_file():
        existing = _read_meta(meta)
        if existing["name"] != spec.name:
            raise SweepError(f"{d} holds sweep '{existing['name']}', not '{spec.name}'; use another --dir")
        job_name = existing["job_name"]
    else:
        job_name = f"classreg-{spec.name}-{hashlib.sha1(str(d).encode()).hexdigest()[:6]}"
    return PreparedSweep(Path(spec_path), spec, d, job_name, resolve_points(spec, spec_path, out_dir=d / "points"))


def materialise(spec_path: str | os.PathLike, directory: str | os.PathLike) -> tuple[Sweep, int, int]:
    """Create (or extend) the sweep folder: one folder per point with config.yaml and status.json.

    Points that already exist keep their status and files. Returns (sweep, new points, all points).
    Everything is checked (the spec, every point, the folder's name) before anything is written."""
    return prepare(spec_path, directory).write()


def measured_epoch_minutes(sweep: Sweep) -> Optional[float]:
    per_epoch = [
        s["result"]["seconds_per_epoch"]
        for _, s in sweep.statuses()
        if s["state"] == "done" and (s.get("result") or {}).get("seconds_per_epoch")
    ]
    return sum(per_epoch) / len(per_epoch) / 60 if per_epoch else None
