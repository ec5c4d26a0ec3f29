"""Talking to SLURM: render the job-array script, submit it, list and cancel a sweep's jobs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from datamodules.configkit import ClassregError
from launch.resources import sbatch_template, source_checkout
from launch.sweep.resources import Resources

_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


class SlurmError(ClassregError):
    """A SLURM command is missing or failed; the message has its output."""


def render(values: dict, template: Path | None = None) -> str:
    template = template or sbatch_template()
    text = template.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template} needs values for {missing}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render_array_script(
    *, job_name: str, sweep_name: str, n_tasks: int, points_file: Path, log_dir: Path, resources: Resources
) -> str:
    r = resources
    lines = [f"--gpus-per-node={r.gpus_per_node}"] if r.gpus_per_node else []
    lines += [f"--{k}={v}" for k in ("partition", "account", "qos") if (v := getattr(r, k))]
    lines += list(r.extra_sbatch)
    return render(
        {
            "job_name": job_name,
            "sweep_name": sweep_name,
            "array": f"0-{n_tasks - 1}%{r.throttle}",
            "log_dir": log_dir,
            "signal_seconds": r.signal_seconds,
            "nodes": r.nodes,
            "tasks_per_node": r.tasks_per_node,
            "cpus_per_task": r.cpus_per_task,
            "mem": r.mem,
            "time": r.time,
            "resource_lines": "\n".join(f"#SBATCH {ln}" for ln in lines),
            "source_tree": source_tree_line(),
            "python": shlex.quote(sys.executable),
            "points_file": shlex.quote(str(points_file)),
        }
    )


def source_tree_line() -> str:
    """From a source checkout, the job imports the checkout the submitter ran; an installed package needs nothing."""
    root = source_checkout()
    if root is None:
        return "# classreg is installed in the interpreter below: no PYTHONPATH needed"
    return f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}  # a source checkout"


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        raise SlurmError(
            f"`{cmd[0]}` is not on PATH: this machine has no SLURM client "
            "(use `classreg sweep run DIR --local` to run points here)"
        )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SlurmError(
            f"`{shlex.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def sbatch(script: Path, hold: bool = False) -> str:
    """Submit ``script`` (held until `scontrol release` with ``hold``); returns the (array) job id."""
    out = _run(["sbatch", "--parsable", *(["--hold"] if hold else []), str(script)]).strip()
    return out.split(";")[0]


def queued_jobs(job_name: str) -> dict[str, str]:
    """``{"<array job>_<task>": state}`` of this sweep's jobs still in the queue (pending, running, ...)."""
    out = _run(["squeue", "-h", "-r", f"--name={job_name}", "-o", "%i|%T"])
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])
