"""Hardware choices for one run: AMP, channels_last, torch.compile, pinned memory, cudnn.benchmark.

GPU-only features are switched on only when the run will use CUDA; on CPU each one falls back (and says so).
lightning_modules/callbacks/runtime_report.py writes every choice to ``run_dir/runtime.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch

from lightning_modules.trainer import TrainerConfig


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


def cuda_in_use(t: TrainerConfig) -> bool:
    return t.accelerator in ("auto", "gpu") and torch.cuda.is_available()


def resolve(t: TrainerConfig, cuda: bool | None = None) -> RuntimeChoices:
    """The features this run gets; ``cuda`` defaults to whether the run will actually use CUDA."""
    cuda = cuda_in_use(t) if cuda is None else cuda
    notes = []
    precision = t.precision
    if precision != "32-true" and not cuda:
        # bf16 autocast runs on CPU but is slower than fp32 on CPUs without bf16 units, and fp16 AMP is GPU-only.
        notes.append(f"trainer.precision={precision} needs CUDA; training in 32-true on CPU")
        precision = "32-true"
    benchmark = t.cudnn_benchmark and cuda
    if t.cudnn_benchmark and cuda and t.deterministic:
        notes.append(
            "trainer.cudnn_benchmark is off because trainer.deterministic=true "
            "(set trainer.deterministic=false for the fastest cuDNN kernels)"
        )
        benchmark = False
    return RuntimeChoices(
        cuda=cuda,
        precision=precision,
        channels_last=t.channels_last and cuda,
        compile=t.compile,
        compile_backend=t.compile_backend,
        pin_memory=cuda,
        cudnn_benchmark=benchmark,
        notes=notes,
    )


def prepare_module(module: pl.LightningModule, choices: RuntimeChoices):
    """The module to hand to ``Trainer.fit``: channels_last weights, and compiled if asked (Lightning unwraps it)."""
    if choices.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if choices.compile:
        module = torch.compile(module, backend=choices.compile_backend)
    return module
