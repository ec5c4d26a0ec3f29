"""A run whose training loss stops being finite stops, says where, and is recorded as diverged (fit and sweep)."""

import json
import re

import pytest
from sweep_helpers import SMALL_RESNET, statuses, write_spec

from launch.cli import main

TINY = [
    *SMALL_RESNET,
    "trainer.max_epochs=2",
    "logger.wandb=false",
]
ABSURD_LR = "optim.lr=1e8"  # SGD overflows the weights within a few steps


def test_fit_stops_says_where_and_records_the_divergence(cifar_shards, tmp_path, capsys):
    rc = main(["fit", f"data.root={cifar_shards}", f"out_dir={tmp_path}", "name=div", *TINY, ABSURD_LR])
    assert rc == 2
    err = capsys.readouterr().err
    found = re.search(
        r"^classreg fit: error: training diverged at epoch (\d+) step (\d+): the training loss is nan", err, re.M
    )
    assert found, err[-2000:]
    assert "Traceback" not in err
    run = tmp_path / "div"
    record = json.loads((run / "metrics.json").read_text())["diverged"]
    assert record == {"epoch": int(found.group(1)), "step": int(found.group(2)), "loss": "nan"}
    assert record["epoch"] == 0 and 0 < record["step"] < 8  # 240 images in batches of 32: within the first epoch
    # it stopped before validating or checkpointing the diverged model
    assert not (run / "per_class.csv").exists() and not list(run.glob("checkpoints/*.ckpt"))


@pytest.mark.slow
def test_a_diverged_sweep_point_fails_with_the_reason(cifar_shards, tmp_path, capsys):
    spec = write_spec(
        tmp_path / "div.yaml",
        cifar_shards,
        "div",
        {"product": {"optim.lr": [0.05, 1e8]}},
        extra=("trainer.limit_train_batches=5",),
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--dry-run"]) == 0
    assert main(["sweep", "run", str(sweep_dir), "--local", "-j", "2"]) == 1
    assert "1 done" in capsys.readouterr().out
    by_lr = {s["params"]["optim.lr"]: s for s in statuses(sweep_dir).values()}
    assert by_lr[0.05]["state"] == "done"
    failed = by_lr[1e8]
    point = sweep_dir / "points" / failed["id"]
    record = json.loads((point / "metrics.json").read_text())["diverged"]
    assert failed["state"] == "failed"
    assert failed["reason"] == f"diverged at epoch {record['epoch']} step {record['step']} (training loss nan)"
