"""Per-class counts under real 2-process DDP (gloo, CPU) equal a single-process evaluation, class by class."""

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from launch.config import load_config
from launch.fit import build_datamodule
from lightning_modules.classifier import Classifier

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ddp_counts_equal_single_process(cifar_shards, tmp_path):
    # 70 validation images over 2 ranks x 2 loader workers = 4 consumers: 70 is not a multiple of 4.
    overrides = [
        f"data.root={cifar_shards}",
        f"out_dir={tmp_path}",
        "name=ddp",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=2",
        "model.arch=resnet20",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.progress_bar=false",
        "metrics.confusion_matrix=true",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "launch.cli", "fit", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stderr + proc.stdout  # Lightning really ran 2 ranks
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout

    run = tmp_path / "ddp"
    ddp_rows = [r for r in csv.DictReader(open(run / "per_class.csv")) if r["epoch"] == "0"]
    assert [int(r["total"]) for r in ddp_rows] == [7] * 10  # nothing duplicated or padded, nothing dropped
    matrix = np.loadtxt(
        run / "confusion_matrices" / "epoch_000.csv", delimiter=",", skiprows=1, usecols=range(1, 11), dtype=np.int64
    )
    assert matrix.sum() == 70 and np.diag(matrix).tolist() == [int(r["correct"]) for r in ddp_rows]
    assert len(list(run.glob("wandb/offline-run-*/run-*.wandb"))) == 1  # only rank 0 talked to W&B

    # The same checkpoint, evaluated in this single process.
    cfg = load_config(run / "config.yaml", ["trainer.devices=1", "data.num_workers=0"])
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(model, datamodule=build_datamodule(cfg))
    single = model.last_results
    for i, row in enumerate(ddp_rows):
        assert (int(row["correct"]), int(row["total"]), int(row["top5_correct"]), int(row["predicted"])) == (
            single.correct[i],
            single.total[i],
            single.top5_correct[i],
            single.predicted[i],
        ), row["class_name"]
    assert single.total.sum() == 70


DRIVER = '''
import hashlib, json, sys
from pathlib import Path
import pytorch_lightning as pl
from launch.config import load_config
from launch.fit import fit

class Recorder(pl.Callback):
    """Per training batch on this rank: epoch, global step and a digest of each image (which sample it is)."""
    def __init__(self, out):
        self.out, self.rows = Path(out), []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        digests = [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in batch[0]]
        self.rows.append([trainer.current_epoch, trainer.global_step, digests])
    def on_train_end(self, trainer, pl_module):
        record = {"len": trainer.num_training_batches, "global_step": trainer.global_step, "rows": self.rows}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

fit(load_config(None, sys.argv[2:]), extra_callbacks=[Recorder(sys.argv[1])])
'''


@pytest.fixture(scope="module")
def odd_shards(cifar_tree, tmp_path_factory):
    """239 training images in shards of 70, 70, 70 and 29; a validation split of 5 images (3 and 2 per rank:
    copies of test images, only the arithmetic matters here); the 70 test images as the test split."""
    import shutil

    from datamodules.sources.image_tree import shard_image_tree

    tree = tmp_path_factory.mktemp("odd") / "tree"
    shutil.copytree(cifar_tree / "train", tree / "train")
    next(iter(sorted((tree / "train" / "cat").iterdir()))).unlink()
    shutil.copytree(cifar_tree / "test", tree / "test")
    for name in sorted(p.name for p in (cifar_tree / "train").iterdir())[:5]:
        (tree / "val" / name).mkdir(parents=True)
        shutil.copy(sorted((cifar_tree / "test" / name).iterdir())[0], tree / "val" / name)
    out = tmp_path_factory.mktemp("odd_shards")
    shard_image_tree(tree, out, shard_size=70, seed=0, workers=1)
    return out


@pytest.mark.slow
def test_full_ddp_epochs_take_the_same_steps_on_every_rank_and_val_loss_is_exact(odd_shards, tmp_path):
    overrides = [
        f"data.root={odd_shards}",
        f"out_dir={tmp_path}",
        "name=ddp",
        "data.image_size=32",
        "data.batch_size=32",
        "data.num_workers=2",
        "data.shuffle_buffer=0",
        "aug.policy=[none]",  # a training image is then the sample's evaluation image: its digest names it
        "model.arch=resnet20",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.progress_bar=false",
        "logger.wandb=false",
    ]  # no trainer.limit_train_batches: whole epochs
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path), *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # Which sample each digest is: the same transform, on every training sample, here.
    cfg = load_config(tmp_path / "ddp" / "config.yaml", ["trainer.devices=1", "data.num_workers=0"])
    train_as_val = build_datamodule(load_config(tmp_path / "ddp" / "config.yaml", ["data.val_split=train"]))
    train_as_val.setup()
    digests = [
        hashlib.sha1(image.numpy().tobytes()).hexdigest()
        for images, _ in train_as_val.val_dataloader()
        for image in train_as_val.normalize(images)  # as the model gets them
    ]
    assert len(digests) == len(set(digests)) == 239

    assert ranks[0]["len"] == ranks[1]["len"] and ranks[0]["global_step"] == ranks[1]["global_step"]
    for epoch in (0, 1):
        per_rank = [[d for e, _, ds in r["rows"] if e == epoch for d in ds] for r in ranks]
        steps = [sum(1 for e, _, _ in r["rows"] if e == epoch) for r in ranks]
        assert steps[0] == steps[1] == ranks[0]["len"]  # the same steps on both ranks, all that len() promised
        seen = per_rank[0] + per_rank[1]
        assert set(seen) <= set(digests) and len(seen) == len(set(seen))  # no sample twice in an epoch
        assert len(per_rank[0]) == len(per_rank[1]) == 119  # one of 239 sits the epoch out
    assert ranks[0]["global_step"] == 2 * ranks[0]["len"]

    # val/loss of the last validation (3 images on one rank, 2 on the other) is the mean over all 5 images
    logged = [r for r in csv.DictReader(open(tmp_path / "ddp" / "logs" / "metrics.csv")) if r.get("val/loss")]
    model = Classifier.load_from_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (single,) = trainer.validate(model, datamodule=build_datamodule(cfg))
    assert float(logged[-1]["val/loss"]) == pytest.approx(single["val/loss"], rel=1e-5)

    # the final model on the test split, evaluated once by both ranks: every test image counted once, exactly
    test_rows = list(csv.DictReader(open(tmp_path / "ddp" / "per_class_test.csv")))
    assert [int(r["total"]) for r in test_rows] == [7] * 10
    trainer.test(model, datamodule=build_datamodule(cfg))
    assert [int(r["correct"]) for r in test_rows] == model.last_test_results.correct.tolist()
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["test"]["samples"] == 70
