"""Run a sweep's points on this machine, N at a time, with the same folders and status files as SLURM."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from launch.resources import source_checkout
from launch.sweep.folder import Sweep
from launch.sweep.status import claim, local_owner, transition
from launch.sweep.submit import needs_run
from launch.sweep.task import finish


def _queued_or_empty(sweep: Sweep) -> dict[str, str]:
    from launch.sweep.slurm import SlurmError

    try:
        return sweep.queued_jobs()
    except SlurmError:
        return {}  # no SLURM here: nothing can be queued


class LocalExecutor:
    def __init__(self, sweep: Sweep, jobs: int = 1, on_event: Optional[Callable[[str, str], None]] = None):
        self.sweep, self.jobs = sweep, max(1, jobs)
        self.on_event = on_event or (lambda point_id, what: print(f"{point_id}: {what}", flush=True))
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopping = threading.Event()

    def _env(self) -> dict:
        env = dict(os.environ)
        root = source_checkout()  # from a source checkout, the runs import the same checkout; installed: nothing to add
        if root is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        # N runs at once share the cores: torch would otherwise start one thread per core in each.
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // self.jobs)))
        return env

    def _run_point(self, point: Path) -> str:
        if self._stopping.is_set():
            return "skipped"
        log = point / "local.log"
        c = claim(point, local_owner(), job_id=None, log=str(log), host=local_owner()["host"])
        if not c.granted:
            self.on_event(point.name, f"skipped: {c.reason}")
            return "skipped"
        self.on_event(point.name, "running")
        env = self._env()
        cmd = [
            sys.executable,
            "-m",
            "launch.cli",
            "fit",
            "-c",
            str(point / "config.yaml"),
            "trainer.progress_bar=false",
        ]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self._procs[point.name] = proc
            rc = proc.wait()
            self._procs.pop(point.name, None)
        if self._stopping.is_set():
            transition(point, "cancelled", reason="local run interrupted")
            state = "cancelled"
        else:
            state = finish(point, rc, str(log))
        self.on_event(point.name, state)
        return state

    def run(self) -> dict[str, int]:
        queued = _queued_or_empty(self.sweep)
        todo = [p for p, s in self.sweep.statuses() if needs_run(s, queued)]
        counts: dict[str, int] = {}
        pool = ThreadPoolExecutor(self.jobs)
        try:
            for state in pool.map(self._run_point, todo):
                counts[state] = counts.get(state, 0) + 1
        except KeyboardInterrupt:
            self._stopping.set()
            for proc in list(self._procs.values()):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        return counts
