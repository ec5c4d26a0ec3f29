"""ReaL labels end to end: a small ImageNet-like tree (CIFAR JPEGs under ImageNet validation file names)."""

import csv
import json

import pytest
import torch
from PIL import Image

from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main
from launch.config import load_config
from lightning_modules.augment.evaluation import eval_transform
from lightning_modules.classifier import Classifier
from lightning_modules.metrics.real_labels import _imagenet_x_annotations, imagenet_wnids

# Validation images (ILSVRC2012_val_N) of four ImageNet classes, by original label, with their ReaL sets:
# 230 Shetland sheepdog: 3 [230,231], 180, 393, 1147, 1963 [230], 1971 [230,231], 3196 [231], 3810 [230]
# 231 collie: 3480 [232], 3862 [230,231], 4711, 6330 [231], 7355 [], 7682, 9055 [231], 11698 [232]
# 795 ski: 568, 1004, 1447, 3918 [795], 4798 [788,795], 5392, 6208, 6215 [795]
# 970 alp: 2 [970,795], 81 [970], 270 [], 1292 [970], 1986 [970,979,858], 2795 [], 3084, 3282 [970]
VAL = {
    230: [3, 180, 393, 1147, 1963, 1971, 3196, 3810],
    231: [3480, 3862, 4711, 6330, 7355, 7682, 9055, 11698],
    795: [568, 1004, 1447, 3918, 4798, 5392, 6208, 6215],
    970: [2, 81, 270, 1292, 1986, 2795, 3084, 3282],
}
# Images whose ReaL set is empty, or holds none of these four classes (232, 788, ...), are skipped.
REAL_TOTAL = {230: 8, 231: 5, 795: 8, 970: 6}


@pytest.fixture(scope="module")
def imagenet_like_shards(cifar_tree, tmp_path_factory):
    wnids = imagenet_wnids()
    root = tmp_path_factory.mktemp("imagenet_like")
    jpegs = sorted(cifar_tree.glob("test/*/*.jpg")) + sorted(cifar_tree.glob("train/*/*.jpg"))
    it = iter(jpegs)
    for cls, numbers in VAL.items():
        for split, names in (
            ("val", [f"ILSVRC2012_val_{n:08d}.JPEG" for n in numbers]),
            ("train", [f"{wnids[cls]}_{i}.JPEG" for i in range(8)]),
        ):
            folder = root / "tree" / split / wnids[cls]
            folder.mkdir(parents=True)
            for name in names:
                (folder / name).write_bytes(next(it).read_bytes())
    shard_image_tree(root / "tree", root / "shards", shard_size=10, seed=0, workers=1)
    return root


def test_real_accuracy_per_class(imagenet_like_shards, tmp_path, capsys):
    root = imagenet_like_shards
    rc = main(
        [
            "fit",
            f"data.root={root / 'shards'}",
            f"out_dir={tmp_path}",
            "name=real",
            "data.image_size=32",
            "data.batch_size=8",
            "data.num_workers=0",
            "model.arch=resnet20",
            "trainer.max_epochs=1",
            "trainer.progress_bar=false",
            "logger.wandb=false",
            "metrics.real_labels=imagenet-x",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ReaL" in printed and "top-5" in printed  # the per-class table printed after the fit
    rows = {r["class_name"]: r for r in csv.DictReader(open(tmp_path / "real" / "per_class.csv"))}

    # Independent answer: the checkpoint's prediction on each JPEG file, looked up in the ReaL file directly.
    wnids = imagenet_wnids()
    real = json.loads((_imagenet_x_annotations() / "imagenet_real_labels.jsonl").read_text())
    model = Classifier.load_from_checkpoint(tmp_path / "real" / "checkpoints" / "last.ckpt").eval()
    cfg = load_config(tmp_path / "real" / "config.yaml").data
    transform = eval_transform(cfg.image_size, cfg.mean, cfg.std)
    for cls, numbers in VAL.items():
        files = [root / "tree" / "val" / wnids[cls] / f"ILSVRC2012_val_{n:08d}.JPEG" for n in numbers]
        with torch.no_grad():
            batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
            predicted = [wnids.index(model.class_names[i]) for i in model(batch).argmax(1).tolist()]
        in_run = [[c for c in real[n - 1] if c in VAL] for n in numbers]
        row = rows[wnids[cls]]
        assert int(row["total"]) == 8 and int(row["correct"]) == sum(p == cls for p in predicted)
        assert int(row["real_total"]) == REAL_TOTAL[cls] == sum(bool(s) for s in in_run)
        assert int(row["real_correct"]) == sum(p in s for p, s in zip(predicted, in_run))

    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())["last"]
    assert metrics["real_samples"] == sum(REAL_TOTAL.values())
    assert metrics["real_accuracy"] == pytest.approx(
        sum(int(r["real_correct"]) for r in rows.values()) / sum(REAL_TOTAL.values())
    )


def test_real_accuracy_on_the_dali_backend(imagenet_like_shards, tmp_path):
    """DALI evaluation batches carry the sample keys, so ReaL labels work there too, epoch after epoch."""
    from datamodules.dali_backend.datamodule import DaliDataModule
    from lightning_modules.augment import ImageTransforms

    root = imagenet_like_shards
    args = [f"data.root={root / 'shards'}", f"out_dir={tmp_path}", "name=dali", "data.backend=dali"]
    args += ["data.image_size=32", "data.batch_size=8", "data.num_workers=1", "model.arch=resnet20"]
    args += [
        "trainer.max_epochs=2",
        "trainer.progress_bar=false",
        "logger.wandb=false",
        "metrics.real_labels=imagenet-x",
    ]
    assert main(["fit", *args]) == 0
    rows = [r for r in csv.DictReader(open(tmp_path / "dali" / "per_class.csv")) if r["epoch"] == "1"]
    wnids = imagenet_wnids()
    by_wnid = {r["class_name"]: r for r in rows}
    assert {w: int(by_wnid[wnids[c]]["real_total"]) for c, w in ((c, wnids[c]) for c in VAL)} == {
        wnids[c]: n for c, n in REAL_TOTAL.items()
    }

    # Independent answer: the final checkpoint on the same DALI evaluation batches, looked up in the ReaL file.
    real = json.loads((_imagenet_x_annotations() / "imagenet_real_labels.jsonl").read_text())
    model = Classifier.load_from_checkpoint(tmp_path / "dali" / "checkpoints" / "last.ckpt").eval()
    cfg = load_config(tmp_path / "dali" / "config.yaml")
    dm = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data), eval_keys=True)
    dm.setup()
    real_correct = dict.fromkeys(model.class_names, 0)
    with torch.no_grad():
        for images, labels, keys in dm.val_dataloader():
            for label, predicted, key in zip(labels.tolist(), model(dm.normalize(images)).argmax(1).tolist(), keys):
                number = int(key.rsplit("_", 1)[1])
                in_run = {c for c in real[number - 1] if c in VAL}
                real_correct[model.class_names[label]] += wnids.index(model.class_names[predicted]) in in_run
    assert {name: int(r["real_correct"]) for name, r in by_wnid.items()} == real_correct
