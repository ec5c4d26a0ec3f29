"""Per-class counts under real 2-process DDP (gloo, CPU) equal a single-process evaluation, class by class."""

import csv
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
