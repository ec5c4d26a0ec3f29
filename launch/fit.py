"""Train one configuration: the run folder gets config.yaml, checkpoints/, per_class.csv, metrics.json."""
from __future__ import annotations

import json
import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from datamodules.shard_datamodule import ShardDataModule
from launch.config import RunConfig, save_resolved
from launch.resume import find_resume_checkpoint, keep_previous_log
from lightning_modules import runtime
from lightning_modules.classifier import Classifier
from lightning_modules.per_class_results import PerClassResultsWriter
from lightning_modules.resume_recorder import ResumeRecorder
from lightning_modules.wandb_logging import wandb_loggers_and_callbacks
from lightning_modules.weight_decay import ParamGroupReport

# Outside SLURM, Lightning warns about every `srun` on PATH; inside it, SLURMEnvironment is used anyway.
warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
# ShardStream splits its data per rank and worker itself, so its __len__ is right.
warnings.filterwarnings("ignore", message=".*Your `IterableDataset` has `__len__` defined.*")


def build_trainer(cfg: RunConfig, callbacks: list, loggers: list = (),
                  choices: runtime.RuntimeChoices | None = None) -> pl.Trainer:
    t = cfg.trainer
    choices = choices or runtime.resolve(cfg)
    run_dir = cfg.run_dir
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor="val/acc", mode="max",
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )
    if t.progress_bar:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=10)]
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=choices.precision,
        benchmark=choices.cudnn_benchmark,
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
        callbacks=[checkpoint, LearningRateMonitor("step"), *callbacks],
    )


def fit(cfg: RunConfig, extra_callbacks: list = ()) -> dict:
    """Train ``cfg`` and return the final metrics summary (also in run_dir/metrics.json)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    choices = runtime.resolve(cfg)
    if cfg.data.backend == "dali":  # its batches carry no sample keys: ReaL labels need the torchvision backend
        from datamodules.dali_datamodule import DaliDataModule

        data = DaliDataModule(cfg.data, seed=cfg.seed, aug=cfg.aug)
    else:
        data = ShardDataModule(cfg.data, seed=cfg.seed, aug=cfg.aug, eval_keys=bool(cfg.metrics.real_labels),
                               pin_memory=choices.pin_memory)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / "config.yaml")
    model = Classifier.from_config(cfg, data.class_names)
    ckpt_path = find_resume_checkpoint(run_dir)  # hpc checkpoint after a requeue, else last.ckpt, else None
    if ckpt_path is not None:
        print(f"resuming {run_dir} from {ckpt_path}", flush=True)
        keep_previous_log(run_dir)  # the CSV logger would delete the scalars logged before the restart
    loggers, callbacks = wandb_loggers_and_callbacks(cfg)
    callbacks = [PerClassResultsWriter(run_dir, data.class_names, cfg.metrics.worst_fraction),
                 ParamGroupReport(run_dir, cfg.wd), ResumeRecorder(run_dir, ckpt_path),
                 runtime.RuntimeReport(run_dir, cfg, choices), *callbacks, *extra_callbacks]
    trainer = build_trainer(cfg, callbacks, loggers, choices)
    trainer.fit(runtime.prepare_module(model, choices), datamodule=data, ckpt_path=ckpt_path)
    metrics_path = run_dir / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
