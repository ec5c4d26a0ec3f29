"""`fit` restarts from the newest intact checkpoint in its run folder; the local executor runs sweeps here."""

import csv
import json
import os
import time

import pytest
import torch
from sweep_helpers import TINY, assert_never_ran_twice, statuses, write_spec

from launch.cli import main
from launch.resume import find_resume_checkpoint
from lightning_modules.run_record import read_record, run_completed


def _touch_ckpt(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_newest_intact_checkpoint_is_chosen(tmp_path):
    assert find_resume_checkpoint(tmp_path) is None  # first run: no ckpt_path at all (Lightning #20347)
    now = time.time()
    last = _touch_ckpt(tmp_path / "checkpoints" / "last.ckpt", now - 100)
    assert find_resume_checkpoint(tmp_path) == last
    _touch_ckpt(tmp_path / "hpc_ckpt_1.ckpt", now - 300)
    assert find_resume_checkpoint(tmp_path) == last  # an old hpc checkpoint from an earlier requeue
    hpc2 = _touch_ckpt(tmp_path / "hpc_ckpt_2.ckpt", now - 50)
    _touch_ckpt(tmp_path / "hpc_ckpt_10.ckpt", now - 40)
    assert find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_10.ckpt"  # by version, not by name order
    (tmp_path / "hpc_ckpt_10.ckpt").unlink()
    assert find_resume_checkpoint(tmp_path) == hpc2
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # killed while saving: cut short
    os.utime(last, (now, now))
    assert find_resume_checkpoint(tmp_path) == hpc2


@pytest.mark.slow
def test_fit_resumes_from_last_checkpoint(cifar_shards, tmp_path):
    args = [
        "fit",
        "-c",
        "configs/fashion_mnist_demo.yaml",
        f"data.root={cifar_shards}",
        f"out_dir={tmp_path}",
        "name=run",
        "trainer.limit_train_batches=3",
        *TINY,
    ]
    assert main([*args, "trainer.max_epochs=1"]) == 0
    run = tmp_path / "run"
    assert run_completed(run)
    assert main([*args, "trainer.max_epochs=2"]) == 0  # same folder, one more epoch: continues
    starts = [r for r in read_record(run) if r["event"] == "start"]
    assert [s["ckpt"] for s in starts] == [None, str(run / "checkpoints" / "last.ckpt")]
    assert (starts[1]["epoch"], starts[1]["global_step"]) == (1, 3)
    assert read_record(run)[-1]["epoch"] == 2 and run_completed(run)
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1]
    before = list(csv.DictReader(open(run / "logs" / "metrics.1.csv")))  # the first fit's scalars are kept
    after = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    assert {r["epoch"] for r in before if r.get("val/acc")} == {"0"}
    assert {r["epoch"] for r in after if r.get("val/acc")} == {"1"}


@pytest.mark.slow
def test_local_executor_runs_points_with_the_same_status_files(cifar_shards, tmp_path, capsys):
    spec = write_spec(
        tmp_path / "local.yaml",
        cifar_shards,
        "local",
        {"product": {"optim.lr": [0.1, 0.05]}},
        extra=("trainer.limit_train_batches=2",),
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["sweep", "run", str(sweep_dir), "--local", "-j", "2"]) == 0
    assert "local run finished: 2 done" in capsys.readouterr().out
    for pid, s in statuses(sweep_dir).items():
        assert [h["state"] for h in s["history"]] == ["pending", "running", "done"]
        assert s["owner"]["kind"] == "local" and (sweep_dir / "points" / pid / "per_class.csv").is_file()
        assert s["result"]["accuracy"] is not None
        assert_never_ran_twice(s)
    assert main(["sweep", "run", str(sweep_dir), "--local"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert main(["sweep", "plan", str(spec), "--dir", str(sweep_dir), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["estimate_source"] == f"measured in {sweep_dir}" and plan["epoch_minutes"] > 0
