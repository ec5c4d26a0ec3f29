"""The linear probe trains with the augmentation of its own config (transfer.yaml's `aug`), not the default."""

import numpy as np
import pytest
from torchvision.transforms import v2

from launch.cli import main
from launch.config import load_config
from launch.transfer import TransferConfig, probe_one


@pytest.fixture(scope="module")
def upstream_run(cifar_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("upstream")
    args = ["fit", f"data.root={cifar_shards}", f"out_dir={out}", "name=run", "model.arch=resnet20"]
    args += ["data.image_size=32", "data.batch_size=32", "data.num_workers=0", "trainer.max_epochs=1"]
    args += ["trainer.limit_train_batches=2", "trainer.progress_bar=false", "logger.wandb=false"]
    assert main(args) == 0
    return out / "run"


def crops_drawn_by_a_probe(upstream_run, cifar_shards, out, monkeypatch, *overrides):
    """The crop areas RandomResizedCrop drew while the probe trained (in this process: no loader workers)."""
    areas = []
    original = v2.RandomResizedCrop.make_params

    def record(transform, flat_inputs):
        params = original(transform, flat_inputs)
        areas.append(params["height"] * params["width"] / (32 * 32))
        return params

    monkeypatch.setattr(v2.RandomResizedCrop, "make_params", record)
    transfer = load_config(
        "configs/transfer/linear_probe.yaml",
        [
            f"data.root={cifar_shards}",
            "data.image_size=32",
            "data.batch_size=32",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.progress_bar=false",
            *overrides,
        ],
        schema=TransferConfig,
    )
    probe_one(upstream_run, out, transfer)
    return np.array(areas)


def test_the_probe_uses_its_configs_augmentation(upstream_run, cifar_shards, tmp_path, monkeypatch):
    # configs/transfer/linear_probe.yaml says aug.policy: [flip]: no random crop is drawn at all
    assert len(crops_drawn_by_a_probe(upstream_run, cifar_shards, tmp_path / "flip", monkeypatch)) == 0
    # and a probe config that asks for random crops gets its own scale
    areas = crops_drawn_by_a_probe(
        upstream_run, cifar_shards, tmp_path / "rrc", monkeypatch, "aug.policy=[rrc]", "aug.rrc.min_scale=0.6"
    )
    assert len(areas) == 64 and areas.min() > 0.55  # 2 batches of 32 images, each at least 60% (up to rounding)
