"""The per-class results files of a run folder: the rows of per_class.csv, a confusion matrix as CSV.

per_class.csv grows by one block of rows (one per class, ``class_index`` 0, 1, ...) after every validation: blocks
are appended (flushed and fsynced), never rewritten, so a validation costs the same at epoch 89 as at epoch 0. A
validation repeated after a resume appends its epoch again, and a crash (or a reader racing the writer) can see a
last block cut short. Readers therefore keep, per epoch, the last complete block: ``read_per_class_csv`` (rows as
dicts) and ``read_per_class_table`` (a pandas DataFrame) do.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from datamodules.configkit import atomic_write_text
from lightning_modules.metrics.per_class_metrics import PerClassResult

CSV_FIELDS = ["epoch", "class_index", "class_name", "correct", "total", "accuracy"]
# Added after the first six (readers of those keep working); ReaL columns are empty when ReaL is off.
EXTRA_FIELDS = [
    "top5_correct",
    "top5_accuracy",
    "predicted",
    "precision",
    "recall",
    "real_correct",
    "real_total",
    "real_accuracy",
]


def _formatted(values: np.ndarray) -> list[str]:
    return ["" if v != v else f"{v:.6f}" for v in values.tolist()]  # v != v: NaN, a class without images


def per_class_rows(result: PerClassResult, epoch: int) -> list[dict]:
    """One row per class, the columns of CSV_FIELDS + EXTRA_FIELDS (numbers as ints and formatted strings)."""
    n = len(result.class_names)
    acc = _formatted(result.accuracy)
    columns = {
        "epoch": [epoch] * n,
        "class_index": list(range(n)),
        "class_name": list(result.class_names),
        "correct": result.correct.tolist(),
        "total": result.total.tolist(),
        "accuracy": acc,
        "top5_correct": result.top5_correct.tolist(),
        "top5_accuracy": _formatted(result.top5_accuracy),
        "predicted": result.predicted.tolist(),
        "precision": _formatted(result.precision),
        "recall": acc,
        "real_correct": [""] * n,
        "real_total": [""] * n,
        "real_accuracy": [""] * n,
    }
    if result.real_accuracy is not None:
        columns.update(
            real_correct=result.real_correct.tolist(),
            real_total=result.real_total.tolist(),
            real_accuracy=_formatted(result.real_accuracy),
        )
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def confusion_csv(result: PerClassResult) -> str:
    """Rows: true class, columns: predicted class; the first column and the header name the classes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true/predicted", *result.class_names])
    for name, row in zip(result.class_names, result.confusion):
        writer.writerow([name, *row.tolist()])
    return buf.getvalue()


def _rows_text(rows: list[dict], header: bool) -> str:
    fields = CSV_FIELDS + EXTRA_FIELDS
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(fields)
    writer.writerows([row.get(f, "") for f in fields] for row in rows)
    return buf.getvalue()


def _cut_torn_tail(fh) -> None:
    """Truncate a file open in ``r+b`` after its last newline: drops a line an interrupted append left half."""
    end = fh.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        step = min(1 << 16, position)
        fh.seek(position - step)
        chunk = fh.read(step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            if position - step + newline + 1 != end:
                fh.truncate(position - step + newline + 1)
            return
        position -= step
    fh.truncate(0)


def append_per_class_rows(path: str | Path, rows: list[dict]) -> None:
    """Append one validation's block to per_class.csv, durably (flush + fsync); create it (atomically) if new.

    A file from an older classreg with other columns is rewritten once, atomically, with the current ones."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        atomic_write_text(path, _rows_text(rows, header=True))
        return
    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    if header != CSV_FIELDS + EXTRA_FIELDS:
        atomic_write_text(path, _rows_text([*read_per_class_csv(path), *rows], header=True))
        return
    with open(path, "r+b") as fh:
        _cut_torn_tail(fh)
        fh.seek(0, os.SEEK_END)
        fh.write(_rows_text(rows, header=False).encode())
        fh.flush()
        os.fsync(fh.fileno())


def _last_complete_blocks(rows: list[list[str]], index: int, epoch: int) -> list[list[str]]:
    """Per epoch, the last block of rows whose class indices (column ``index``) run 0..C-1, C being the most
    classes of any block; in epoch order."""
    starts = [i for i, row in enumerate(rows) if len(row) > index and row[index] == "0"]
    bounds = list(zip(starts, [*starts[1:], len(rows)]))
    size = max((end - start for start, end in bounds), default=0)
    latest: dict[int, tuple[int, int]] = {}
    for start, end in bounds:
        block = rows[start:end]
        if end - start == size and all(len(r) > index and r[index] == str(i) for i, r in enumerate(block)):
            latest[int(block[0][epoch])] = (start, end)
    return [row for e in sorted(latest) for row in rows[slice(*latest[e])]]


def read_per_class_csv(path: str | Path) -> list[dict]:
    """The rows of per_class.csv (strings, as csv.DictReader gives them): per epoch the last complete validation,
    in epoch order (see the module docstring)."""
    with open(path, newline="") as fh:
        text = fh.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a line an interrupted append left half
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if "class_index" not in header or "epoch" not in header:
        return []
    kept = _last_complete_blocks(list(reader), header.index("class_index"), header.index("epoch"))
    return [dict(zip(header, row)) for row in kept]


def read_per_class_table(path: str | Path):
    """per_class.csv as a pandas DataFrame, one validation per epoch, as ``read_per_class_csv`` keeps them."""
    import pandas as pd

    data = Path(path).read_bytes()
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    table = pd.read_csv(io.BytesIO(data))
    if table.empty:
        return table
    block = (table["class_index"] == 0).cumsum()
    sizes = block.map(block.value_counts())
    size = int(sizes.max())
    complete = (sizes == size) & (table["class_index"] == table.groupby(block).cumcount())
    complete = complete.groupby(block).transform("all")
    kept = table[complete]
    last = block[complete].groupby(kept["epoch"]).transform("max")
    kept = kept[block[complete] == last]
    return kept.sort_values(["epoch", "class_index"], kind="stable").reset_index(drop=True)
