"""Shared fixtures: a small real image tree (tests/data/cifar10: CIFAR-10 JPEGs kept in the repository)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The first 24 train and 7 test JPEGs of every class of the CIFAR-10 JPEG release (Krizhevsky 2009): 384 KB.
CIFAR_FIXTURE = REPO / "tests" / "data" / "cifar10"


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
    """10 classes, 24 train and 7 test JPEGs each (7 * 10 = 70 test images: not a multiple of 2 or 4), copied
    to a temporary folder so that no test can change the fixture."""
    import shutil

    return Path(shutil.copytree(CIFAR_FIXTURE, tmp_path_factory.mktemp("cifar") / "cifar10"))


@pytest.fixture(scope="session")
def cifar_shards(cifar_tree, tmp_path_factory) -> Path:
    from datamodules.sources.image_tree import shard_image_tree

    out = tmp_path_factory.mktemp("cifar_shards")
    shard_image_tree(cifar_tree, out, shard_size=50, seed=0, workers=2)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_slurm_cluster(**knobs: str):
    """A real single-node SLURM cluster (slurm/start_local_cluster.sh) on free ports; ``knobs``: more
    LOCAL_SLURM_* settings. Yields its environment (SLURM_CONF, exported into os.environ too while it runs);
    stopped at the end by its pid files."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("slurmctld") is None and not Path("/usr/sbin/slurmctld").exists():
        pytest.fail("SLURM is not installed: run `make slurm` as root (Debian package slurm-wlm)")
    # not under pytest's 0700 tmp folders: munged wants o+x on every folder above its socket
    base = Path(tempfile.mkdtemp(prefix="classreg-slurm-"))
    base.chmod(0o755)
    ctld, slurmd = _free_port(), _free_port()
    env = {
        **os.environ,
        "LOCAL_SLURM_BASE": str(base),
        "LOCAL_SLURM_CTLD_PORT": str(ctld),
        "LOCAL_SLURM_SLURMD_PORT": str(slurmd),
        "LOCAL_SLURM_CPUS": "2",
        "LOCAL_SLURM_CRED_EXPIRE": "5",
        "PATH": os.environ.get("PATH", "") + ":/usr/sbin",
        **{f"LOCAL_SLURM_{k.upper()}": v for k, v in knobs.items()},
    }
    started = subprocess.run(
        ["bash", str(REPO / "slurm" / "start_local_cluster.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.fail(f"local SLURM cluster did not start:\n{started.stdout}\n{started.stderr}")
    conf = [ln.split("=", 1)[1] for ln in started.stdout.splitlines() if ln.startswith("export SLURM_CONF=")][0]
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"], os.environ["PATH"] = conf, env["PATH"]
    try:
        yield {"SLURM_CONF": conf, "base": base}
    finally:
        subprocess.run(
            ["bash", str(REPO / "slurm" / "stop_local_cluster.sh")], env=env, capture_output=True, timeout=120
        )
        shutil.rmtree(base, ignore_errors=True)  # the daemons are stopped
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node SLURM cluster for this test session (``local_slurm_cluster``).

    Each test keeps its own sweep folders: job ids restart at 1 on every fresh cluster."""
    with local_slurm_cluster() as cluster:
        yield cluster


def torchvision_labels(root: Path, split: str = "train", workers: int = 0, **data) -> list[int]:
    """The labels the torchvision backend's loader of ``split`` yields, in order (32 px, batches of 8, no shuffle)."""
    from datamodules.config import DataConfig
    from datamodules.torchvision_backend.datamodule import ShardDataModule
    from lightning_modules.augment import AugConfig, ImageTransforms

    cfg = DataConfig(root=str(root), image_size=32, batch_size=8, num_workers=workers, shuffle_buffer=0, **data)
    dm = ShardDataModule(cfg, ImageTransforms.of(AugConfig(), cfg))
    dm.setup()
    loader = dm.val_dataloader() if split != "train" else dm.train_dataloader()
    return [int(label) for _, labels in loader for label in labels]
