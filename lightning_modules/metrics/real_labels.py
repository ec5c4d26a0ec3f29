"""ImageNet ReaL multi-labels (Beyer et al. 2020) looked up by validation image, mapped to the run's classes.

The ReaL file is a JSON list with one entry per ImageNet validation image (``ILSVRC2012_val_00000001``
first), each a list of ImageNet-1k class indices (the sorted-WordNet-id order, as in torchvision). A
sample's shard key ends in its file stem, so the image number is read from the key.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import torch

from datamodules.configkit import ConfigError

VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})")
PACKAGED = "imagenet-x"


def _imagenet_x_annotations() -> Path:
    spec = importlib.util.find_spec("imagenet_x")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "metrics.real_labels=imagenet-x needs the imagenet-x package: "
            "pip install --no-deps imagenet-x (it ships annotations/imagenet_real_labels.jsonl)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "annotations"


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (from imagenet-x's imagenet_labels.txt)."""
    path = _imagenet_x_annotations() / "imagenet_labels.txt"
    return [line.split(",", 1)[0].strip() for line in path.read_text().splitlines() if line.strip()]


def resolve_real_file(setting: str) -> Path:
    path = _imagenet_x_annotations() / "imagenet_real_labels.jsonl" if setting == PACKAGED else Path(setting)
    if not path.is_file():
        raise ConfigError(
            f"metrics.real_labels: ReaL labels file '{path}' does not exist "
            f"(use '{PACKAGED}' for the copy in the imagenet-x package)"
        )
    return path


class RealLabels:
    """Maps sample keys to ReaL target sets over the run's classes (class folders named by WordNet id)."""

    def __init__(self, setting: str, class_names: list[str]):
        path = resolve_real_file(setting)
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"metrics.real_labels: '{path}' is not a JSON list of label lists: {e}") from None
        wnids = imagenet_wnids()
        ours = {name: i for i, name in enumerate(class_names)}
        unknown = [n for n in class_names if n not in set(wnids)]
        if unknown:
            raise ConfigError(
                f"metrics.real_labels needs ImageNet class folders named by WordNet id (e.g. n01440764); "
                f"class {unknown[0]!r} is not an ImageNet-1k id. Turn it off with metrics.real_labels=''"
            )
        to_ours = [ours.get(w) for w in wnids]
        self.num_classes = len(class_names)
        # ReaL labels of classes this run does not have are dropped; an image left with none is skipped.
        self.sets = [tuple(sorted({to_ours[c] for c in labels} - {None})) for labels in entries]

    def image_number(self, key: str) -> int:
        match = VAL_NAME.search(key)
        if match is None:
            raise ValueError(
                f"ReaL labels: sample key {key!r} has no ImageNet validation file name (ILSVRC2012_val_XXXXXXXX); "
                "shard the original validation images, or set metrics.real_labels=''"
            )
        number = int(match.group(1))
        if not 1 <= number <= len(self.sets):
            raise ValueError(f"ReaL labels: {key!r} is image {number}, but the file lists {len(self.sets)} images")
        return number

    def targets(self, keys: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """[batch, classes] bool (the ReaL set of each image) and [batch] bool (the set is not empty)."""
        if keys is None:
            raise ValueError(
                "metrics.real_labels needs the sample keys in evaluation batches, and this data "
                "loader does not provide them (ShardDataModule does with eval_keys=True)"
            )
        target = torch.zeros(len(keys), self.num_classes, dtype=torch.bool)
        for row, key in enumerate(keys):
            target[row, list(self.sets[self.image_number(key) - 1])] = True
        return target.to(device), target.any(1).to(device)
