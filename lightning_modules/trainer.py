"""The ``trainer`` section and the Lightning Trainer built from it (checkpoints, CSV log, progress bar).

Lightning is imported in ``build_trainer``, not with the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.configkit import bounded, choice, setting


@dataclass
class TrainerConfig:
    max_epochs: int = bounded(90, 1, help="epochs to train")
    accelerator: str = choice("auto", ["auto", "cpu", "gpu"], help="Lightning's `accelerator`")
    devices: int = bounded(1, 1, help="processes (GPUs) per node; set by `resources.tasks_per_node` in a sweep")
    num_nodes: int = bounded(1, 1, help="nodes; set by `resources.nodes` in a sweep")
    precision: str = choice(
        "32-true",
        ["32-true", "bf16-mixed", "16-mixed"],
        help="AMP (`bf16-mixed`, `16-mixed`) only on CUDA; CPU runs fall back to `32-true` and say so",
    )
    deterministic: bool = setting(True, help="deterministic algorithms where torch has them (warns where not)")
    limit_train_batches: float = bounded(
        1.0, 0.0, None, low_inclusive=False, help="fraction (<= 1) or count (> 1) of training batches per epoch"
    )
    limit_val_batches: float = bounded(
        1.0, 0.0, None, low_inclusive=False, help="fraction (<= 1) or count (> 1) of validation batches"
    )
    check_val_every_n_epoch: int = bounded(1, 1, help="validate after every n-th epoch")
    log_every_n_steps: int = bounded(50, 1, help="scalar logging interval, in steps")
    progress_bar: bool = setting(True, help="show Lightning's progress bar")
    channels_last: bool = setting(True, help="CUDA runs only: NHWC weights and activations (tensor cores)")
    cudnn_benchmark: bool = setting(
        True, help="CUDA runs only: autotuned cuDNN kernels (needs `trainer.deterministic=false`)"
    )
    compile: bool = setting(
        False, help="`torch.compile` the module (CPU too; the first steps are slow while it compiles)"
    )
    compile_backend: str = choice("inductor", ["inductor", "aot_eager", "cudagraphs"], help="`torch.compile(backend=)`")
    requeue_signal: str = choice(
        "USR1",
        ["USR1", "USR2"],
        help="under SLURM: the signal (sbatch `--signal=<sig>@<seconds>`) at which Lightning saves an hpc checkpoint "
        "and requeues the job; set by `resources.requeue_signal` in a sweep",
    )


def build_trainer(
    t: TrainerConfig,
    run_dir: Path,
    callbacks: list,
    loggers: list = (),
    *,
    precision: str,
    cudnn_benchmark: bool,
    trust_checkpoints: bool = False,
):
    """A ``pl.Trainer``; ``precision``, ``cudnn_benchmark``: what the run really gets (see runtime.py).

    Checkpoints are loaded as tensors and plain values only, unless ``trust_checkpoints`` (checkpoint_io.py)."""
    import signal

    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from lightning_modules.checkpoint_io import SafeCheckpointIO

    # loads as tensors and plain values only; an interrupted save never replaces the previous checkpoint
    plugins = [SafeCheckpointIO(trust=trust_checkpoints)]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(requeue_signal=getattr(signal, f"SIG{t.requeue_signal}")))

    run_dir = Path(run_dir)
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:03d}",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    # checkpoints/last.ckpt after every validation, what a restart resumes from (launch/resume.py). Not
    # `save_last=True`: since Lightning 2.6 that writes last.ckpt only when the best checkpoint changes.
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    if t.progress_bar:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=10)]
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=precision,
        benchmark=cudnn_benchmark,
        deterministic="warn" if t.deterministic else False,
        limit_train_batches=t.limit_train_batches if t.limit_train_batches != 1.0 else None,
        limit_val_batches=t.limit_val_batches if t.limit_val_batches != 1.0 else None,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=0,
        reload_dataloaders_every_n_epochs=1,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        logger=[CSVLogger(run_dir, name="logs", version=""), *loggers],
        callbacks=[best, last, LearningRateMonitor("step"), *callbacks],
        plugins=plugins,
    )


def build_evaluator(t: TrainerConfig, callbacks: list, *, precision: str):
    """A ``pl.Trainer`` for one evaluation after fit (the test split): the same devices and precision, no
    logger, checkpoints or progress bar; the whole split, whatever ``limit_val_batches``."""
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=precision,
        deterministic="warn" if t.deterministic else False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
