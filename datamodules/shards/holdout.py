"""A validation split carved from the training images at shard time (``classreg shard --val-fraction F``).

Model selection (the best checkpoint, early stopping) then happens on ``val``, and the source's ``test`` split is
only evaluated once, at the end of fit: numbers that picked a model never reach the report. The carve is per class
(each class gives the same fraction, so rare classes keep their share) and seeded: the same sources, fraction and
seed give the same split.
"""

from __future__ import annotations

import math
import random

from datamodules.shards.format import ShardError

VAL = "val"


def carve_validation(
    items_by_split: dict[str, list], fraction: float, seed: int, num_classes: int
) -> tuple[dict, dict]:
    """``items_by_split`` (the writer's ``Item``s) with round(fraction x n_c) training items of every class c
    moved to a ``val`` split, and the record for manifest.json (``val_from_train``)."""
    if not 0 < fraction < 1:
        raise ShardError(f"--val-fraction must be between 0 and 1 (exclusive), got {fraction}")
    if VAL in items_by_split:
        raise ShardError(
            "--val-fraction carves a val split from train, but the source already has a val/ split; "
            "move it to test/ (it then stays the held-out test split) or drop --val-fraction"
        )
    train = items_by_split["train"]
    by_class: dict[int, list[int]] = {}
    for index in sorted(range(len(train)), key=lambda i: (train[i].key, train[i].source)):
        by_class.setdefault(train[index].label, []).append(index)
    chosen, per_class = set(), [0] * num_classes
    for label, indices in sorted(by_class.items()):
        random.Random(f"{seed}-{VAL}-{label}").shuffle(indices)
        per_class[label] = math.floor(fraction * len(indices) + 0.5)
        chosen.update(indices[: per_class[label]])
    carved = {
        **items_by_split,
        "train": [item for i, item in enumerate(train) if i not in chosen],
        VAL: [item for i, item in enumerate(train) if i in chosen],
    }
    return carved, {"fraction": fraction, "seed": seed, "per_class": per_class}
