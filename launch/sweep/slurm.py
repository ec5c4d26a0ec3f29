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
from launch.sweep.resources import Resources, check_extra_sbatch

_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What an #SBATCH value may hold (sbatch reads the line itself: no shell, but a newline would end the
# directives and start shell lines). Resources are validated against this before they get here.
DIRECTIVE = re.compile(r"[A-Za-z0-9_.,:@%+=/&|!*\[\]-]+")
# sbatch's --output takes a double-quoted path; in it '%' is a pattern (written '%%' for itself) and sbatch
# 22.05 drops every '\'; a '"' ends the quotes.
OUTPUT_REFUSED = {'"': "a double quote", "\\": "a backslash"}
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize


class SlurmError(ClassregError):
    """A SLURM command is missing or failed; the message has its output."""


def render(values: dict[str, str], template: Path | None = None) -> str:
    """The template (the packaged one by default) with its ``{{ name }}`` placeholders filled. No value may hold
    a line break, except ``sbatch_lines``, whose every line is an ``#SBATCH --option`` line."""
    template = template or sbatch_template()
    text = template.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template} needs values for {missing}")
    for name, value in values.items():
        lines = value.split("\n") if name == "sbatch_lines" and value else [value]
        if any(_CONTROL.search(v) for v in lines) or (
            name == "sbatch_lines" and value and not all(v.startswith("#SBATCH --") for v in lines)
        ):
            raise ValueError(f"sbatch script value {name}={value!r} would leave its line")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def directive(key: str, value: object) -> str:
    """``value`` for an #SBATCH line; SlurmError (naming ``key``) for anything sbatch would not read as one value."""
    text = str(value)
    if not DIRECTIVE.fullmatch(text):
        raise SlurmError(
            f"{key}={text!r} cannot be an sbatch option value (letters, digits and _.,:@%+=/&|!*[]- only); fix it"
        )
    return text


def check_output_folder(folder: Path) -> None:
    """Refuse a folder sbatch's ``--output`` cannot name, naming the character (checked before anything is written)."""
    for ch in str(folder):
        what = OUTPUT_REFUSED.get(ch) or (f"the control character {ch!r}" if _CONTROL.match(ch) else None)
        if what:
            raise SlurmError(
                f"sweep folder {str(folder)!r} holds {what}, which sbatch's --output cannot take (sbatch writes "
                "each task's log there): choose a --dir without it"
            )


def output_directive(log_dir: Path) -> str:
    check_output_folder(log_dir)
    return '"' + str(log_dir).replace("%", "%%") + '/%A_%a.out"'


def render_array_script(*, job_name: str, array: str, points_file: Path, log_dir: Path, resources: Resources) -> str:
    """The job-array script for the tasks ``array`` (``0-N%throttle``) of ``points_file``."""
    r = resources
    lines = [f"--gpus-per-node={r.gpus_per_node}"] if r.gpus_per_node else []
    lines += [f"--{k}={v}" for k in ("partition", "account", "qos") if (v := getattr(r, k))]
    for entry in r.extra_sbatch:
        check_extra_sbatch(entry)
        lines.append(entry)
    return render(
        {
            "job_name": directive("job name", job_name),
            "array": directive("array", array),
            "output": output_directive(log_dir),
            "requeue_signal": directive("resources.requeue_signal", r.requeue_signal),
            "signal_seconds": directive("resources.signal_seconds", int(r.signal_seconds)),
            "nodes": directive("resources.nodes", int(r.nodes)),
            "tasks_per_node": directive("resources.tasks_per_node", int(r.tasks_per_node)),
            "cpus_per_task": directive("resources.cpus_per_task", int(r.cpus_per_task)),
            "mem": directive("resources.mem", r.mem),
            "time": directive("resources.time", r.time),
            "sbatch_lines": "\n".join(f"#SBATCH {directive('resources', ln)}" for ln in lines),
            "source_tree": source_tree_line(),
            "python": shlex.quote(sys.executable),
            "log_dir": shlex.quote(str(log_dir)),
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


def max_array_size() -> int:
    """The cluster's MaxArraySize (`scontrol show config`): array task ids must stay below it."""
    for line in _run(["scontrol", "show", "config"]).splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            try:
                return int(value.strip())
            except ValueError:
                break
    return DEFAULT_MAX_ARRAY_SIZE
