"""A run folder's ``resume.json``: every start (checkpoint, epoch and step actually restored, SLURM job and
restart count, pid) and every end (complete or not) of a fit, so that a sweep can tell "finished" from
"stopped early". Written by lightning_modules/callbacks/run_record.py; this module imports no torch, so
that sweep tasks can read it cheaply.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from datamodules.configkit import atomic_write_text

RECORD = "resume.json"


def read_record(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / RECORD
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def append_event(run_dir: str | os.PathLike, entry: dict) -> None:
    record = read_record(run_dir) + [{"time": time.time(), **entry}]
    atomic_write_text(Path(run_dir) / RECORD, json.dumps(record, indent=1))


def run_completed(run_dir: str | os.PathLike) -> bool:
    """True when the last thing the run recorded is the end of a fit that reached max_epochs."""
    record = read_record(run_dir)
    return bool(record) and record[-1].get("event") == "end" and bool(record[-1].get("complete"))


def slurm_job_id() -> Optional[str]:
    """``<array job>_<task>`` inside a SLURM job array, the job id in a plain job, None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")
