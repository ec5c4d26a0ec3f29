"""Hardware choices for one run: AMP, channels_last, torch.compile, pinned memory, cudnn.benchmark, LR scaling.

GPU-only features are switched on only when the run will use CUDA; on CPU each one falls back (and says so).
Every choice, the world size, the global batch and the effective learning rate go to ``run_dir/runtime.json``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from launch.config import OptimConfig, RunConfig, atomic_write_text

log = logging.getLogger("classreg.runtime")


@dataclass
class RuntimeChoices:
    cuda: bool
    precision: str  # what the Trainer gets (the config's trainer.precision, or "32-true" without CUDA)
    channels_last: bool
    compile: bool
    compile_backend: str
    pin_memory: bool
    cudnn_benchmark: bool
    notes: list[str] = field(default_factory=list)  # one line per fallback, also printed


def cuda_in_use(cfg: RunConfig) -> bool:
    return cfg.trainer.accelerator in ("auto", "gpu") and torch.cuda.is_available()


def resolve(cfg: RunConfig, cuda: bool | None = None) -> RuntimeChoices:
    """The features this run gets; ``cuda`` defaults to whether the run will actually use CUDA."""
    t = cfg.trainer
    cuda = cuda_in_use(cfg) if cuda is None else cuda
    notes = []
    precision = t.precision
    if precision != "32-true" and not cuda:
        # bf16 autocast runs on CPU but is slower than fp32 on CPUs without bf16 units, and fp16 AMP is GPU-only.
        notes.append(f"trainer.precision={precision} needs CUDA; training in 32-true on CPU")
        precision = "32-true"
    benchmark = t.cudnn_benchmark and cuda
    if t.cudnn_benchmark and cuda and t.deterministic:
        notes.append("trainer.cudnn_benchmark is off because trainer.deterministic=true "
                     "(set trainer.deterministic=false for the fastest cuDNN kernels)")
        benchmark = False
    return RuntimeChoices(cuda=cuda, precision=precision, channels_last=t.channels_last and cuda,
                          compile=t.compile, compile_backend=t.compile_backend, pin_memory=cuda, cudnn_benchmark=benchmark, notes=notes)


def prepare_module(module: pl.LightningModule, choices: RuntimeChoices):
    """The module to hand to ``Trainer.fit``: channels_last weights, and compiled if asked (Lightning unwraps it)."""
    if choices.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if choices.compile:
        module = torch.compile(module, backend=choices.compile_backend)
    return module


def scaled_lr(optim: OptimConfig, batch_size: int, world_size: int) -> tuple[float, int]:
    """(effective lr, global batch): ``optim.lr`` x global batch / ``optim.lr_reference_batch`` when linear."""
    global_batch = batch_size * world_size
    if optim.lr_scaling == "linear":
        return optim.lr * global_batch / optim.lr_reference_batch, global_batch
    return optim.lr, global_batch


class RuntimeReport(pl.Callback):
    """Prints the choices and writes runtime.json once the world size is known (rank 0 only)."""

    def __init__(self, run_dir: str | Path, cfg: RunConfig, choices: RuntimeChoices):
        self.path = Path(run_dir) / "runtime.json"
        self.cfg, self.choices = cfg, choices

    def summary(self, trainer: pl.Trainer) -> dict:
        lr, global_batch = scaled_lr(self.cfg.optim, self.cfg.data.batch_size, trainer.world_size)
        return {
            **dataclasses.asdict(self.choices),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if self.choices.cuda else "cpu",
            "world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
            "devices_per_node": trainer.num_devices,
            "distributed_backend": getattr(trainer.strategy, "process_group_backend", None),
            "batch_size_per_process": self.cfg.data.batch_size, "global_batch": global_batch,
            "lr_scaling": self.cfg.optim.lr_scaling, "lr_reference_batch": self.cfg.optim.lr_reference_batch,
            "base_lr": self.cfg.optim.lr, "effective_lr": lr,
        }

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        info = self.summary(trainer)
        for lg in trainer.loggers:
            lg.log_hyperparams({"runtime": {k: v for k, v in info.items() if k != "notes"}})
        self._report(info)

    @rank_zero_only
    def _report(self, info: dict) -> None:
        for note in info["notes"]:
            print(f"classreg runtime: {note}")
        print(f"classreg runtime: precision {info['precision']}, channels_last {info['channels_last']}, "
              f"compile {info['compile']}, pin_memory {info['pin_memory']}, "
              f"cudnn.benchmark {info['cudnn_benchmark']}; world size {info['world_size']}, "
              f"global batch {info['global_batch']}, lr {info['effective_lr']:g} " + (
                  f"(linear scaling from {info['base_lr']:g} at batch {info['lr_reference_batch']})"
                  if info["lr_scaling"] == "linear" else "(optim.lr_scaling=none)"))
        atomic_write_text(self.path, json.dumps(info, indent=2) + "\n")
