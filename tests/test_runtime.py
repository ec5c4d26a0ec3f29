"""GPU features fall back on CPU, the choices land in runtime.json, and the lr follows the linear scaling rule."""

import csv
import json

import pytest
import torch
from conftest import REPO

from datamodules.configkit import ConfigError
from launch.cli import main
from launch.config import load_config
from lightning_modules import runtime
from lightning_modules.optim import scaled_lr

TINY = [
    "data.image_size=32",
    "data.batch_size=32",
    "data.num_workers=0",
    "model.arch=resnet20",
    "trainer.progress_bar=false",
    "logger.wandb=false",
]


def test_cpu_fallbacks_and_cuda_choices():
    cfg = load_config(overrides=["trainer.precision=bf16-mixed", "trainer.deterministic=false"])
    cpu = runtime.resolve(cfg.trainer, cuda=False)
    assert (cpu.precision, cpu.channels_last, cpu.pin_memory, cpu.cudnn_benchmark) == ("32-true", False, False, False)
    assert any("bf16-mixed needs CUDA" in n for n in cpu.notes)
    gpu = runtime.resolve(cfg.trainer, cuda=True)
    assert (gpu.precision, gpu.channels_last, gpu.pin_memory, gpu.cudnn_benchmark) == ("bf16-mixed", True, True, True)
    assert gpu.notes == []
    # cudnn.benchmark picks kernels by timing them: not with deterministic training.
    strict = runtime.resolve(load_config(overrides=["trainer.deterministic=true"]).trainer, cuda=True)
    assert not strict.cudnn_benchmark and any("deterministic" in n for n in strict.notes)
    # An explicit CPU run never uses CUDA features, even where CUDA exists.
    assert not runtime.cuda_in_use(load_config(overrides=["trainer.accelerator=cpu"]).trainer)


def test_linear_lr_scaling_rule():
    o = load_config(overrides=["optim.lr=0.1", "optim.lr_scaling=linear"]).optim
    assert scaled_lr(o, 128, 8) == (pytest.approx(0.4), 1024)
    assert scaled_lr(o, 32, 1) == (pytest.approx(0.0125), 32)
    assert scaled_lr(load_config().optim, 128, 8) == (0.1, 1024)  # "none" keeps optim.lr
    with pytest.raises(ConfigError, match="optim.lr_scaling"):
        load_config(overrides=["optim.lr_scaling=sqrt"])


def test_imagenet_preset_is_the_paper_recipe():
    cfg = load_config(REPO / "configs" / "imagenet_resnet50.yaml")
    lr, global_batch = scaled_lr(cfg.optim, cfg.data.batch_size, cfg.trainer.devices * cfg.trainer.num_nodes)
    assert (global_batch, lr) == (1024, pytest.approx(0.4))
    assert cfg.model.arch == "resnet50" and cfg.optim.momentum == 0.9 and cfg.optim.schedule == "cosine"
    assert cfg.optim.label_smoothing == 0.1 and cfg.wd.value == 1e-4 and cfg.wd.exclude == "norm_and_bias"
    assert 88 <= cfg.trainer.max_epochs <= 90 and cfg.aug.policy[0] == "rrc"


def test_fit_on_cpu_records_fallbacks_and_scaled_lr(cifar_shards, tmp_path, capsys):
    rc = main(
        [
            "fit",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=rt",
            *TINY,
            "trainer.max_epochs=1",
            "trainer.precision=bf16-mixed",
            "trainer.channels_last=true",
            "optim.lr=0.2",
            "optim.lr_scaling=linear",
            "optim.lr_reference_batch=64",
            "optim.warmup_epochs=0",
            "optim.schedule=constant",
            "trainer.log_every_n_steps=1",
        ]
    )
    assert rc == 0
    info = json.loads((tmp_path / "rt" / "runtime.json").read_text())
    assert (info["precision"], info["channels_last"], info["pin_memory"], info["cudnn_benchmark"]) == (
        "32-true",
        False,
        False,
        False,
    )
    assert (info["world_size"], info["global_batch"], info["effective_lr"]) == (1, 32, pytest.approx(0.1))
    out = capsys.readouterr().out
    assert "trainer.precision=bf16-mixed needs CUDA; training in 32-true on CPU" in out
    assert "global batch 32, lr 0.1 (linear scaling from 0.2 at batch 64)" in out
    # The optimizer really ran at the scaled lr (Lightning's LearningRateMonitor), in fp32.
    rows = [r for r in csv.DictReader(open(tmp_path / "rt" / "logs" / "metrics.csv")) if r.get("lr-SGD/decay")]
    assert rows and all(float(r["lr-SGD/decay"]) == pytest.approx(0.1) for r in rows)
    state = torch.load(tmp_path / "rt" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.1)
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_compile_flag_compiles_the_module_on_cpu(cifar_shards, tmp_path):
    # Real dynamo graph capture and AOTAutograd forward/backward graphs. The default backend, Inductor, works
    # here too but needs minutes of C++ compilation on 2 shared CPU cores, hence aot_eager in the test.
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    rc = main(
        [
            "fit",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=compiled",
            *TINY,
            "trainer.max_epochs=1",
            "trainer.compile=true",
            "trainer.compile_backend=aot_eager",
            "trainer.limit_train_batches=2",
        ]
    )
    assert rc == 0
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo captured and compiled the forward
    info = json.loads((tmp_path / "compiled" / "runtime.json").read_text())
    assert (info["compile"], info["compile_backend"]) == (True, "aot_eager")
    # Checkpoints hold the plain module's keys (Lightning unwraps the compiled module).
    state = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    rows = list(csv.DictReader(open(tmp_path / "compiled" / "per_class.csv")))
    assert sum(int(r["total"]) for r in rows) == 70
