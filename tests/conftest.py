"""Shared fixtures: a small real image tree cut from the CIFAR-10 JPEGs in ../shared/data."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CIFAR_TGZ = Path(os.environ.get("CLASSREG_CIFAR10_TGZ", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))


def extract_cifar_subset(dest: Path, per_class: dict[str, int]) -> Path:
    """Extract the first ``per_class[split]`` JPEGs of every class for each split into ``dest``."""
    if not CIFAR_TGZ.is_file():
        raise FileNotFoundError(
            f"test data {CIFAR_TGZ} is missing; set CLASSREG_CIFAR10_TGZ to the CIFAR-10 JPEG tarball"
        )
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(CIFAR_TGZ) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in per_class:
                continue
            split, cls, _ = parts
            if taken.get((split, cls), 0) >= per_class[split]:
                continue
            taken[(split, cls)] = taken.get((split, cls), 0) + 1
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return dest


@pytest.fixture(scope="session", autouse=True)
def wandb_offline_in_tmp(tmp_path_factory):
    """Runs log to W&B by default: keep the tests offline and W&B's own folders out of the home directory."""
    base = tmp_path_factory.mktemp("wandb-home")
    os.environ["WANDB_MODE"] = "offline"
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[var] = str(base / var.lower())
    os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def cifar_tree(tmp_path_factory) -> Path:
    """10 classes, 24 train and 7 test JPEGs each (7 * 10 = 70 test images: not a multiple of 2 or 4)."""
    return extract_cifar_subset(tmp_path_factory.mktemp("cifar"), {"train": 24, "test": 7})


@pytest.fixture(scope="session")
def cifar_shards(cifar_tree, tmp_path_factory) -> Path:
    from datamodules.shard_writer import shard_image_tree

    out = tmp_path_factory.mktemp("cifar_shards")
    shard_image_tree(cifar_tree, out, shard_size=50, seed=0, workers=2)
    return out
