"""Per-class results at ImageNet-21k scale: the cost of one validation's per_class.csv write, and of reading it.

    PYTHONPATH=$PWD python bench/results_scale.py [--classes 21000] [--epochs 5] [--history 89]

Writes per_class.csv as `classreg fit` does after each validation (``PerClassResultsWriter.write``: the per-class
rows appended, metrics.json rewritten) for ``--epochs`` validations, then grows the file to ``--history`` epochs
and times one more validation there, next to the baseline measured in the same run: the writer before it
appended, which read the whole file and rewrote it atomically. Memory is the peak of Python allocations
(tracemalloc, in a second, untimed call) during that one validation. Then times the two readers of the file.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datamodules.configkit import atomic_write_text  # noqa: E402
from lightning_modules.callbacks.per_class_results import PerClassResultsWriter  # noqa: E402
from lightning_modules.metrics.per_class_metrics import PerClassResult  # noqa: E402
from lightning_modules.metrics.results_files import (  # noqa: E402
    CSV_FIELDS,
    EXTRA_FIELDS,
    append_per_class_rows,
    per_class_rows,
    read_per_class_csv,
    read_per_class_table,
)


def result(num_classes: int, seed: int) -> PerClassResult:
    rng = np.random.default_rng(seed)
    total = np.full(num_classes, 50, dtype=np.int64)
    correct = rng.integers(0, 51, num_classes)
    names = [f"n{i:08d}" for i in range(num_classes)]
    return PerClassResult(names, correct, total, rng.integers(0, 100, num_classes), np.minimum(total, correct + 5))


def rewrite_whole(run_dir: Path, res: PerClassResult, epoch: int) -> None:
    """The baseline: the writer before appending (read every row, drop the epoch, rewrite atomically)."""
    path = run_dir / "per_class.csv"
    previous = [r for r in read_per_class_csv(path) if int(r["epoch"]) != epoch]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS + EXTRA_FIELDS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(previous)
    writer.writerows(per_class_rows(res, epoch))
    atomic_write_text(path, buf.getvalue())


def measured(fn) -> tuple[float, float]:
    """(seconds, peak MB of Python allocations): the call timed, then called again under tracemalloc (which
    slows allocation-heavy code several times over)."""
    seconds = timed(fn)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=21000)
    parser.add_argument("--epochs", type=int, default=5, help="validations timed from an empty run folder")
    parser.add_argument("--history", type=int, default=89, help="epochs already in per_class.csv for the last one")
    args = parser.parse_args()
    res = result(args.classes, 0)
    work = Path(tempfile.mkdtemp(prefix="classreg-results-"))
    try:
        run = work / "run"
        writer = PerClassResultsWriter(run, res.class_names)
        print(f"{args.classes} classes: one validation, seconds (append)")
        for epoch in range(args.epochs):
            print(f"  epoch {epoch}: {timed(lambda e=epoch: writer.write(res, e, e)):.3f}")
        rows = per_class_rows(res, 0)
        for epoch in range(args.epochs, args.history - 1):  # the history, quickly: the rows alone
            append_per_class_rows(run / "per_class.csv", [{**r, "epoch": epoch} for r in rows])
        size = (run / "per_class.csv").stat().st_size / 1e6
        baseline = work / "baseline"
        shutil.copytree(run, baseline)
        os.sync()  # else the copy's dirty pages are written back during the first fsync timed below
        epoch = args.history - 1
        new_s, new_mb = measured(lambda: writer.write(res, epoch, epoch))
        old_s, old_mb = measured(lambda: rewrite_whole(baseline, res, epoch))
        print(f"validation {args.history} (per_class.csv of {size:.0f} MB before it):")
        print(f"  {'':10} {'seconds':>9} {'peak MB':>9}")
        print(f"  {'rewrite':10} {old_s:9.2f} {old_mb:9.0f}   (the writer before: read all, rewrite)")
        print(f"  {'append':10} {new_s:9.2f} {new_mb:9.0f}")
        print(f"  ratio      {old_s / new_s:9.0f}x {old_mb / max(new_mb, 1e-9):8.0f}x")
        path = run / "per_class.csv"
        print(f"readers of the {path.stat().st_size / 1e6:.0f} MB file, seconds:")
        print(f"  read_per_class_csv   {timed(lambda: read_per_class_csv(path)):.2f}")
        print(f"  read_per_class_table {timed(lambda: read_per_class_table(path)):.2f}")
        cells = args.classes**2
        print(
            f"confusion matrix (metrics.confusion_matrix): {cells * 8 / 2**30:.2f} GiB of int64 counts per rank, "
            f"a CSV of about {2 * cells / 1e9:.1f} GB per validation (not run here)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
