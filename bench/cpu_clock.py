"""Wall and CPU clocks for the benchmarks: CPU time of this process, its threads and its live children (DataLoader
workers, pool processes), which a shared machine's other load barely moves."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's live children, from /proc."""
    me, total = os.getpid(), 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return total


def clocks() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, its threads and its live children)."""
    return time.perf_counter(), time.process_time() + children_cpu_seconds()
