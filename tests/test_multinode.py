"""A sweep point spanning 2 processes under the real local SLURM cluster; resources vs trainer checked at submit."""

import csv
import json
import sys

import pytest
import pytorch_lightning as pl
import yaml
from sweep_helpers import TINY, statuses, wait_for

from launch.cli import main
from launch.config import load_config
from launch.fit import build_datamodule
from lightning_modules.classifier import Classifier

FULL_VAL = [o for o in TINY if not o.startswith("trainer.limit_val_batches")]  # every validation image


def _spec(path, shards, resources: dict, extra=()):
    spec = {
        "name": path.stem,
        "base": "configs/fashion_mnist_demo.yaml",
        "overrides": [
            f"data.root={shards}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.accelerator=cpu",
            "optim.lr_scaling=linear",
            "optim.lr_reference_batch=32",
            *FULL_VAL,
            *extra,
        ],
        "axes": {"product": {"optim.lr": [0.05]}},
        "resources": {"cpus_per_task": 1, "mem": "500M", "time": "00:10:00", **resources},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_two_task_point_trains_with_world_size_2_and_counts_match_one_process(
    slurm_cluster, cifar_shards, tmp_path, capsys
):
    spec = _spec(tmp_path / "ddp2.yaml", cifar_shards, {"nodes": 1, "tasks_per_node": 2})
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    script = (sweep_dir / "submissions" / "001.sbatch").read_text()
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks-per-node=2" in script
    assert f"srun {sys.executable} -m launch.cli fit" in script
    wait_for(
        lambda: all(s["state"] in ("done", "failed") for s in statuses(sweep_dir).values()),
        600,
        "the 2-process point to finish",
        sweep_dir,
    )
    ((pid, status),) = statuses(sweep_dir).items()
    assert status["state"] == "done", status
    run = sweep_dir / "points" / pid

    cfg = load_config(run / "config.yaml")
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (1, 2)  # = --nodes / --ntasks-per-node
    info = json.loads((run / "runtime.json").read_text())
    assert (info["world_size"], info["num_nodes"], info["devices_per_node"]) == (2, 1, 2)
    assert info["distributed_backend"] == "gloo"
    assert (info["global_batch"], info["effective_lr"]) == (64, pytest.approx(0.05 * 64 / 32))

    ddp_rows = [r for r in csv.DictReader(open(run / "per_class.csv")) if r["epoch"] == "0"]
    assert [int(r["total"]) for r in ddp_rows] == [7] * 10  # every image once over both ranks
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(model, datamodule=build_datamodule(load_config(run / "config.yaml", ["data.num_workers=0"])))
    single = model.last_results
    assert trainer.world_size == 1 and single.total.sum() == 70
    for i, row in enumerate(ddp_rows):
        assert (int(row["correct"]), int(row["total"]), int(row["top5_correct"]), int(row["predicted"])) == (
            single.correct[i],
            single.total[i],
            single.top5_correct[i],
            single.predicted[i],
        ), row["class_name"]


@pytest.mark.parametrize(
    "resources, extra, message",
    [
        (
            {"nodes": 1, "tasks_per_node": 2},
            ["trainer.devices=4"],
            "the spec's overrides sets trainer.devices=4 but resources.tasks_per_node=2",
        ),
        ({"nodes": 2, "tasks_per_node": 1}, ["trainer.num_nodes=1"], "sets trainer.num_nodes=1 but resources.nodes=2"),
        (
            {"tasks_per_node": 1, "gpus_per_node": 2},
            ["trainer.accelerator=gpu"],
            "resources.gpus_per_node=2 with resources.tasks_per_node=1",
        ),
        (
            {"tasks_per_node": 1, "gpus_per_node": 0},
            ["trainer.accelerator=gpu"],
            "trainer.accelerator=gpu but resources.gpus_per_node=0",
        ),
        ({"tasks_per_node": 2, "gpus_per_node": 2}, [], "trainer.accelerator=cpu but resources.gpus_per_node=2"),
    ],
)
def test_resources_that_contradict_the_trainer_fail_before_queueing(
    cifar_shards, tmp_path, capsys, resources, extra, message
):
    # No cluster here: the error must come before sbatch is ever called.
    spec = _spec(tmp_path / "bad.yaml", cifar_shards, resources, extra)
    for command in (["plan", str(spec)], ["submit", str(spec), "--dir", str(tmp_path / "sweep")]):
        assert main(["sweep", *command]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep" / "submissions").exists()


def test_paper_grid_spec_plans(capsys):
    assert main(["sweep", "plan", "configs/sweeps/paper_grid.yaml"]) == 0
    out = capsys.readouterr().out
    assert "105 points = aug.rrc.min_scale (7) x wd.value (5) x 3 seeds" in out
    assert "1 node(s) x 8 task(s) = world size 8 per point, NCCL; global batch 1024; lr 0.4" in out
