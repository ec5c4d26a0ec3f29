"""Train one configuration: the run folder gets config.yaml, checkpoints/, per_class.csv, metrics.json."""

from __future__ import annotations

import contextlib
import json
import warnings

import pytorch_lightning as pl

from launch.config import RunConfig, save_resolved
from launch.resume import find_resume_checkpoint, keep_previous_log
from lightning_modules import runtime
from lightning_modules.augment import ImageTransforms
from lightning_modules.callbacks.divergence import DivergenceGuard
from lightning_modules.callbacks.param_groups import ParamGroupReport
from lightning_modules.callbacks.per_class_results import PerClassResultsWriter
from lightning_modules.callbacks.run_folder_gate import RunFolderGate
from lightning_modules.callbacks.run_record import ResumeRecorder
from lightning_modules.callbacks.runtime_report import RuntimeReport
from lightning_modules.callbacks.test_results import FinalEvaluationWriter
from lightning_modules.checkpoint_io import check_checkpoint
from lightning_modules.classifier import Classifier
from lightning_modules.trainer import build_evaluator, build_trainer
from lightning_modules.wandb_logging import wandb_loggers_and_callbacks

# Warnings that are wrong about a classreg fit, silenced only while it runs (`quiet_known_warnings`).
KNOWN_WARNINGS = (
    # outside SLURM, Lightning warns about every `srun` on PATH; inside it, SLURMEnvironment is used anyway
    ".*`srun` command is available.*",
    # ShardStream splits its data per rank and worker itself, so its __len__ is right
    ".*Your `IterableDataset` has `__len__` defined.*",
)


@contextlib.contextmanager
def quiet_known_warnings(*extra: str):
    with warnings.catch_warnings():
        for message in (*KNOWN_WARNINGS, *extra):
            warnings.filterwarnings("ignore", message=message)
        yield


def build_datamodule(cfg: RunConfig, choices: runtime.RuntimeChoices | None = None):
    """The datamodule of ``cfg.data.backend`` with the run's transforms (call ``setup()`` before use)."""
    choices = choices or runtime.resolve(cfg.trainer)
    transforms = ImageTransforms.of(cfg.aug, cfg.data)
    if cfg.data.backend == "dali":
        from datamodules.dali_backend.datamodule import DaliDataModule

        return DaliDataModule(cfg.data, transforms, seed=cfg.seed, eval_keys=bool(cfg.metrics.real_labels))
    from datamodules.torchvision_backend.datamodule import ShardDataModule

    return ShardDataModule(
        cfg.data, transforms, seed=cfg.seed, eval_keys=bool(cfg.metrics.real_labels), pin_memory=choices.pin_memory
    )


def _start_run_folder(cfg: RunConfig, ckpt_path, trust_checkpoints: bool) -> None:
    """Global rank 0, holding the run folder's lock: check the resume checkpoint, then write config.yaml."""
    run_dir = cfg.run_dir
    if ckpt_path is not None:
        check_checkpoint(ckpt_path, trust_checkpoints)  # before it is loaded: a planted one must not run code
        print(f"resuming {run_dir} from {ckpt_path}", flush=True)
        keep_previous_log(run_dir)  # the CSV logger would delete the scalars logged before the restart
    save_resolved(cfg, run_dir / "config.yaml")


def fit(cfg: RunConfig, extra_callbacks: list = (), trust_checkpoints: bool = False) -> dict:
    """Train ``cfg`` and return the final metrics summary (also in run_dir/metrics.json).

    The run folder is locked for the whole fit (a second fit into it stops, naming the holder); checkpoints
    are loaded as tensors and plain values only unless ``trust_checkpoints`` (lightning_modules/checkpoint_io.py)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    choices = runtime.resolve(cfg.trainer)
    data = build_datamodule(cfg, choices)
    data.setup("fit")  # reads the shards' classes and checks the transforms before any work
    run_dir = cfg.run_dir
    model = Classifier.from_config(cfg, data.class_names)
    ckpt_path = find_resume_checkpoint(run_dir)  # hpc checkpoint after a requeue, else last.ckpt, else None
    gate = RunFolderGate(run_dir)
    loggers, callbacks = wandb_loggers_and_callbacks(cfg.logger, cfg.name, run_dir)
    callbacks = [
        gate,
        PerClassResultsWriter(run_dir, data.class_names, cfg.metrics.worst_fraction),
        DivergenceGuard(run_dir),
        ParamGroupReport(run_dir, cfg.wd),
        ResumeRecorder(run_dir, ckpt_path),
        RuntimeReport(run_dir, cfg.optim, cfg.data.batch_size, choices),
        *callbacks,
        *extra_callbacks,
    ]
    with quiet_known_warnings():
        trainer = build_trainer(
            cfg.trainer,
            run_dir,
            callbacks,
            loggers,
            precision=choices.precision,
            cudnn_benchmark=choices.cudnn_benchmark,
            trust_checkpoints=trust_checkpoints,
        )
        module = runtime.prepare_module(model, choices)
        try:
            gate.open(trainer, lambda: _start_run_folder(cfg, ckpt_path, trust_checkpoints))
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=not trust_checkpoints)
            if data.test_split and trainer.current_epoch >= cfg.trainer.max_epochs:  # the final model, once
                writer = FinalEvaluationWriter(
                    run_dir, data.test_split, trainer.current_epoch - 1, trainer.global_step, cfg.metrics.worst_fraction
                )
                build_evaluator(cfg.trainer, [writer], precision=choices.precision).test(module, datamodule=data)
        finally:
            gate.close()
    metrics_path = run_dir / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
