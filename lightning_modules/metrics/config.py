"""The ``metrics`` section: what the per-class evaluation computes besides the counts."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import bounded, setting


@dataclass
class MetricsConfig:
    confusion_matrix: bool = setting(
        False,
        help="also write `confusion_matrices/epoch_NNN.csv` (rows: true class, "
        "columns: predicted) after each validation. Costs C x C int64 counts on every rank (on the GPU under CUDA): "
        "8 MB at 1,000 classes, 3.3 GiB at 21,000 (ImageNet-21k) plus the temporaries of each update and "
        "all-reduce, and a CSV of about 2 x C x C bytes (0.9 GB at 21,000) per validation",
    )
    real_labels: str = setting(
        "",
        help="ImageNet ReaL multi-labels: `imagenet-x` (the file in the imagenet-x "
        'package) or the path of a JSON list; `""`: off',
    )
    worst_fraction: float = bounded(
        0.1,
        0.0,
        1.0,
        low_inclusive=False,
        help="`worst_fraction_mean_accuracy` averages this fraction of the worst classes",
    )
