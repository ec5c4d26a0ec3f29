"""`classreg shard --val-fraction`: a validation split carved from train picks the model; the test split is
evaluated once, on the final model, into per_class_test.csv and metrics.json["test"]."""

import csv
import json
import tarfile

import pytest
import torch
from PIL import Image

from datamodules.shards.format import read_manifest
from launch.cli import main
from launch.config import load_config
from lightning_modules.augment.evaluation import eval_transform
from lightning_modules.classifier import Classifier


def keys_of(root, split):
    manifest, _ = read_manifest(root)
    keys = set()
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(root / shard["file"]) as tar:
            keys |= {m.name[: -len(".cls")] for m in tar if m.name.endswith(".cls")}
    return keys


@pytest.fixture(scope="module")
def carved(cifar_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("carved")
    assert (
        main(["shard", str(cifar_tree), str(out), "--val-fraction", "0.25", "--shard-size", "50", "--workers", "1"])
        == 0
    )
    return out


def test_val_fraction_carves_every_class_deterministically(cifar_tree, carved, tmp_path, capsys):
    manifest, _ = read_manifest(carved)
    splits = manifest["splits"]
    assert splits["val"]["per_class"] == [6] * 10 and splits["train"]["per_class"] == [18] * 10  # 24 x 0.25 = 6
    assert splits["test"]["per_class"] == [7] * 10
    assert manifest["val_from_train"] == {"fraction": 0.25, "seed": 0, "per_class": [6] * 10}
    train, val = keys_of(carved, "train"), keys_of(carved, "val")
    sources = {f"{p.parent.name}_{p.stem}" for p in (cifar_tree / "train").glob("*/*.jpg")}
    assert not train & val and train | val == sources  # every training image in exactly one of the two

    again, other_seed = tmp_path / "again", tmp_path / "seed1"
    assert main(["shard", str(cifar_tree), str(again), "--val-fraction", "0.25", "--workers", "1"]) == 0
    assert main(["shard", str(cifar_tree), str(other_seed), "--val-fraction", "0.25", "--seed", "1"]) == 0
    assert keys_of(again, "val") == val and keys_of(other_seed, "val") != val

    with_val = tmp_path / "tree"
    (with_val / "train" / "a").mkdir(parents=True)
    (with_val / "val" / "a").mkdir(parents=True)
    for split in ("train", "val"):
        Image.new("RGB", (8, 8)).save(with_val / split / "a" / "0.png")
    capsys.readouterr()
    assert main(["shard", str(with_val), str(tmp_path / "refused"), "--val-fraction", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already has a val/ split; move it to test/" in err


def test_fit_selects_on_val_and_reports_the_final_model_on_test(carved, tmp_path):
    args = [f"data.root={carved}", f"out_dir={tmp_path}", "name=held", "model.arch=resnet20", "data.image_size=32"]
    args += ["data.batch_size=32", "data.num_workers=0", "trainer.max_epochs=2", "trainer.progress_bar=false"]
    assert main(["fit", *args, "logger.wandb=false"]) == 0
    run = tmp_path / "held"
    val_rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert {int(r["total"]) for r in val_rows} == {6}  # validation (and the best checkpoint) on val
    test_rows = list(csv.DictReader(open(run / "per_class_test.csv")))
    assert [int(r["total"]) for r in test_rows] == [7] * 10 and {r["epoch"] for r in test_rows} == {"1"}
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert (test["split"], test["epoch"], test["samples"]) == ("test", 1, 70)
    assert metrics["last"]["samples"] == 60 and len(metrics["history"]) == 2

    # Independent answer: the final checkpoint on every test JPEG of the shards.
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt").eval()
    data = load_config(run / "config.yaml").data
    transform = eval_transform(data.image_size, data.mean, data.std)
    manifest, classes = read_manifest(carved)
    correct = [0] * 10
    for shard in manifest["splits"]["test"]["shards"]:
        with tarfile.open(carved / shard["file"]) as tar:
            members = {m.name: m for m in tar}
            for name in members:
                if name.endswith(".jpg"):
                    label = int(tar.extractfile(members[name[:-4] + ".cls"]).read())
                    with Image.open(tar.extractfile(members[name])) as im:
                        image = transform(im.convert("RGB"))
                    with torch.no_grad():
                        correct[label] += int(model(image[None]).argmax(1).item() == label)
    assert [int(r["correct"]) for r in test_rows] == correct
    assert test["accuracy"] == pytest.approx(sum(correct) / 70)
