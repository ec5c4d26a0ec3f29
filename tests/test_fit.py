"""A short real training run on real JPEG shards, through the command line."""

import csv
import json

import torch
import yaml

from launch.cli import main
from launch.config import load_config
from lightning_modules.classifier import Classifier
from lightning_modules.optim import warmup_cosine


def test_fit_writes_results_config_and_checkpoints(cifar_shards, tmp_path, capsys):
    rc = main(
        [
            "fit",
            "-c",
            "configs/fashion_mnist_demo.yaml",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=tiny",
            "data.image_size=32",
            "data.batch_size=32",
            "data.num_workers=0",
            "trainer.max_epochs=2",
            "trainer.progress_bar=false",
            "optim.label_smoothing=0.1",
        ]
    )
    assert rc == 0
    run = tmp_path / "tiny"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["image_size"] == 32 and resolved["optim"]["label_smoothing"] == 0.1
    assert load_config(run / "config.yaml").trainer.max_epochs == 2

    rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert [r["class_name"] for r in rows[:3]] == ["airplane", "automobile", "bird"]
    assert {int(r["epoch"]) for r in rows} == {0, 1}
    for r in rows:
        assert int(r["total"]) == 7  # every test image counted once
        assert abs(float(r["accuracy"]) - int(r["correct"]) / 7) < 1e-6

    metrics = json.loads((run / "metrics.json").read_text())
    last = [r for r in rows if r["epoch"] == "1"]
    assert metrics["last"]["samples"] == 70
    assert abs(metrics["last"]["accuracy"] - sum(int(r["correct"]) for r in last) / 70) < 1e-9
    assert metrics["last"]["worst_class_accuracy"] == min(float(r["accuracy"]) for r in last)
    assert len(metrics["history"]) == 2

    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert model.class_names[0] == "airplane"
    assert "Per-class validation accuracy" in capsys.readouterr().out


def test_same_seed_same_result(cifar_shards, tmp_path):
    args = [
        f"data.root={cifar_shards}",
        "data.image_size=32",
        "data.batch_size=32",
        "data.num_workers=1",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "model.arch=resnet20",
        "seed=5",
    ]
    for name in ("a", "b"):
        assert main(["fit", f"out_dir={tmp_path}", f"name={name}", *args]) == 0
    state_a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    state_b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10, 0.1, "cosine") == 0.1
    assert abs(warmup_cosine(5, 100, 10, 0.1, "cosine") - 0.55) < 1e-9
    assert warmup_cosine(10, 100, 10, 0.1, "cosine") == 1.0
    assert abs(warmup_cosine(55, 100, 10, 0.1, "cosine") - 0.5) < 1e-9
    assert warmup_cosine(100, 100, 10, 0.1, "cosine") < 1e-12
    assert warmup_cosine(80, 100, 10, 0.1, "constant") == 1.0


def test_last_checkpoint_is_the_final_model_when_validation_stops_improving(cifar_shards, tmp_path):
    rc = main(
        [
            "fit",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=last",
            "model.arch=resnet20",
            "data.image_size=32",
            "data.batch_size=32",
            "data.num_workers=0",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=2",
            "trainer.progress_bar=false",
            "logger.wandb=false",
            "optim.lr=1e-9",  # the weights hardly move: validation accuracy stops improving after epoch 0
        ]
    )
    assert rc == 0
    run = tmp_path / "last"
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert history[-1]["accuracy"] <= max(h["accuracy"] for h in history[:-1])  # no new best at the end
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 6)  # the model after the last epoch, not the best one


def test_a_fit_without_a_validation_says_so_instead_of_a_traceback(cifar_shards, tmp_path, capsys):
    args = [
        *("fit", "-c", "configs/cifar10_resnet18.yaml", f"data.root={cifar_shards}", f"out_dir={tmp_path}"),
        *("name=noval", "model.arch=resnet20", "data.image_size=32", "data.num_workers=0"),
        *("trainer.max_epochs=1", "trainer.check_val_every_n_epoch=2", "trainer.limit_train_batches=1"),
        *("trainer.progress_bar=false", "logger.wandb=false"),
    ]
    assert main(args) == 0
    assert "no validation ran, so no per-class table" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "noval" / "per_class.csv").exists()
