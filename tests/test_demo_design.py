"""What the demo's design needs: a fixed training subset per class (`classreg shard --train-per-class`), the
small CNN (`model.arch=cnn3`), and the demo's configs (docs/demo-design.md)."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO
from test_shard_writer import read_shards

from datamodules.shards.format import ShardError, read_manifest
from datamodules.sources.fashion_mnist import CLASSES, load_split, locate, shard_fashion_mnist
from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main
from launch.config import load_config
from launch.sweep.spec import load_spec, resolve_points
from lightning_modules.augment.transform import build_train_transform
from lightning_modules.models import build_model


def test_train_per_class_keeps_a_seeded_subset_of_train_only(cifar_tree, tmp_path):
    manifest = shard_image_tree(cifar_tree, tmp_path / "a", shard_size=50, seed=0, workers=1, train_per_class=5)
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    assert manifest["train_per_class"] == 5
    assert train["per_class"] == [5] * 10 and train["samples"] == 50 and train["drawn_from"] == 240
    assert test["per_class"] == [7] * 10 and "drawn_from" not in test  # evaluation split untouched
    keys = set(read_shards(tmp_path / "a", "train"))
    assert len(keys) == 50
    _, classes = read_manifest(tmp_path / "a")
    for key, (label, data, _) in read_shards(tmp_path / "a", "train").items():
        name, stem = key.rsplit("_", 1)
        assert classes[label] == name and data == (cifar_tree / "train" / name / f"{stem}.jpg").read_bytes()

    shard_image_tree(cifar_tree, tmp_path / "again", shard_size=50, seed=0, workers=2, train_per_class=5)
    assert set(read_shards(tmp_path / "again", "train")) == keys  # same seed: same subset
    shard_image_tree(cifar_tree, tmp_path / "seed1", shard_size=50, seed=1, workers=1, train_per_class=5)
    assert set(read_shards(tmp_path / "seed1", "train")) != keys
    # a larger subset with the same seed is drawn independently per class, still 24 of 24 at most
    full = shard_image_tree(cifar_tree, tmp_path / "all", shard_size=100, seed=0, workers=1, train_per_class=24)
    assert full["splits"]["train"]["per_class"] == [24] * 10


def test_train_per_class_errors_name_the_fix(cifar_tree, tmp_path):
    with pytest.raises(ShardError, match=r"--train-per-class 25: 10 class\(es\) have fewer.*pass at most 24"):
        shard_image_tree(cifar_tree, tmp_path / "big", train_per_class=25)
    with pytest.raises(ShardError, match="--train-per-class must be >= 1"):
        shard_image_tree(cifar_tree, tmp_path / "zero", train_per_class=0)
    assert not (tmp_path / "big" / "manifest.json").exists()


def test_cli_train_per_class(cifar_tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["shard", str(cifar_tree), str(out), "--train-per-class", "3", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train: 30 samples in 1 shards" in printed and "3 per class, drawn from 240 images" in printed
    assert json.loads((out / "manifest.json").read_text())["train_per_class"] == 3
    assert main(["shard", str(cifar_tree), str(tmp_path / "bad"), "--train-per-class", "30"]) == 2
    assert "pass at most 24" in capsys.readouterr().err


def test_fashion_mnist_train_per_class(tmp_path):
    manifest = shard_fashion_mnist(tmp_path / "fm", train_per_class=3, workers=2, shard_size=5000)
    assert manifest["train_per_class"] == 3 and manifest["splits"]["train"]["drawn_from"] == 60000
    assert manifest["splits"]["train"]["per_class"] == [3] * 10
    assert manifest["splits"]["test"]["per_class"] == [1000] * 10
    _, labels = load_split(locate(), "train")
    samples = read_shards_png(tmp_path / "fm", "train")
    for key, label in samples.items():
        assert labels[int(key.split("_")[1])] == label  # the IDX label of that training image


def read_shards_png(root, split) -> dict[str, int]:
    import tarfile

    manifest, _ = read_manifest(root)
    out = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(root / shard["file"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".cls"):
                    out[m.name[: -len(".cls")]] = int(tar.extractfile(m).read())
    return out


def test_cnn3_is_small_and_classifies_any_small_size():
    model = build_model("cnn3", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) < 100_000
    for size in (28, 32):
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)
    assert load_config(None, ["model.arch=cnn3"]).model.arch == "cnn3"


def test_demo_preset_trains_cnn3_with_pad_crop_and_flip():
    cfg = load_config(REPO / "configs" / "fashion_mnist_demo.yaml")
    assert cfg.model.arch == "cnn3" and cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 50
    assert cfg.data.shuffle_buffer >= 500  # the whole 50-per-class training subset
    assert cfg.aug.policy == ["pad_crop", "flip"] and cfg.aug.pad_crop.padding == 2 and cfg.aug.flip.p == 0.5


def test_demo_sweep_is_reference_vs_augmentation_with_seeds(tmp_path):
    spec_path = REPO / "configs" / "sweeps" / "fashion_mnist_demo.yaml"
    spec = load_spec(spec_path)
    points = resolve_points(spec, spec_path)
    settings = {(p.config.aug.pad_crop.padding, p.config.aug.flip.p) for p in points}
    assert settings == {(0, 0.0), (2, 0.5)}  # no augmentation (the reference) vs pad-crop 2 + flip
    assert len(spec.seeds) >= 3 and len(points) == 2 * len(spec.seeds)
    for p in points:
        assert p.config.trainer.check_val_every_n_epoch == p.config.trainer.max_epochs  # one validation, at the end


def test_repair_override_gives_a_class_the_reference_augmentation():
    """The repair: `aug.class_overrides.Shirt.policy=[none]` on the augmented setting, as a `classreg fit`
    override; Shirt's transform is then deterministic, the other classes' still random."""
    cfg = load_config(REPO / "configs" / "fashion_mnist_demo.yaml", ["aug.class_overrides.Shirt.policy=[none]"])
    transform = build_train_transform(cfg.aug, CLASSES, 28)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8))
    torch.manual_seed(0)
    shirt = [transform(image, CLASSES.index("Shirt")) for _ in range(8)]
    coat = [transform(image, CLASSES.index("Coat")) for _ in range(8)]
    assert all(torch.equal(s, shirt[0]) for s in shirt)
    assert not all(torch.equal(c, coat[0]) for c in coat)
