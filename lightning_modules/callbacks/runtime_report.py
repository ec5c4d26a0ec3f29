"""Print a run's hardware choices and write run_dir/runtime.json once the world size is known."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from datamodules.configkit import atomic_write_text
from lightning_modules.optim import OptimConfig, scaled_lr
from lightning_modules.runtime import RuntimeChoices


class RuntimeReport(pl.Callback):
    """Prints the choices and writes runtime.json once the world size is known (rank 0 only)."""

    def __init__(self, run_dir: str | Path, optim: OptimConfig, batch_size: int, choices: RuntimeChoices):
        self.path = Path(run_dir) / "runtime.json"
        self.optim, self.batch_size, self.choices = optim, batch_size, choices

    def summary(self, trainer: pl.Trainer) -> dict:
        lr, global_batch = scaled_lr(self.optim, self.batch_size, trainer.world_size)
        return {
            **dataclasses.asdict(self.choices),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if self.choices.cuda else "cpu",
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "devices_per_node": trainer.num_devices,
            "distributed_backend": getattr(trainer.strategy, "process_group_backend", None),
            "batch_size_per_process": self.batch_size,
            "global_batch": global_batch,
            "lr_scaling": self.optim.lr_scaling,
            "lr_reference_batch": self.optim.lr_reference_batch,
            "base_lr": self.optim.lr,
            "effective_lr": lr,
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
        print(
            f"classreg runtime: precision {info['precision']}, channels_last {info['channels_last']}, "
            f"compile {info['compile']}, pin_memory {info['pin_memory']}, "
            f"cudnn.benchmark {info['cudnn_benchmark']}; world size {info['world_size']}, "
            f"global batch {info['global_batch']}, lr {info['effective_lr']:g} "
            + (
                f"(linear scaling from {info['base_lr']:g} at batch {info['lr_reference_batch']})"
                if info["lr_scaling"] == "linear"
                else "(optim.lr_scaling=none)"
            )
        )
        atomic_write_text(self.path, json.dumps(info, indent=2) + "\n")
