"""Weights & Biases, offline-first: a WandbLogger with a deterministic run id per grid point, and a callback
that logs the per-class table, a histogram of per-class accuracy and the final per-class files.

Only rank 0 talks to W&B (Lightning's WandbLogger creates the run on rank 0 only). The API key is never
read into the config or the logs: we only check whether one is configured.
"""
from __future__ import annotations

import hashlib
import json
import netrc
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from launch.config import LoggerConfig, RunConfig
from lightning_modules.per_class_metrics import PerClassResult

DEFAULT_BASE_URL = "https://api.wandb.ai"


def run_id(group: str, name: str) -> str:
    """The same grid point (sweep group + run name) always maps to the same W&B run id."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:40]
    return f"{slug}-{hashlib.sha256(f'{group}/{name}'.encode()).hexdigest()[:10]}"


def _api_key_configured(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _server_reachable(base_url: str, timeout: float = 3.0) -> bool:
    url = urlparse(base_url)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def resolve_mode(mode: str) -> tuple[str, str]:
    """(online|offline|disabled, why). ``auto``: WANDB_MODE if set, else online only with an API key and a reachable server."""
    if mode != "auto":
        return mode, f"logger.mode={mode}"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline"):
        return env, f"WANDB_MODE={env}"
    if env == "dryrun":
        return "offline", f"WANDB_MODE={env}"
    if env == "disabled":
        return "disabled", f"WANDB_MODE={env}"
    base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    if not _api_key_configured(urlparse(base_url).hostname or ""):
        return "offline", "no W&B API key (WANDB_API_KEY or ~/.netrc)"
    if not _server_reachable(base_url):
        return "offline", f"{base_url} is not reachable"
    return "online", "API key configured and server reachable"


def build_wandb_logger(cfg: RunConfig) -> WandbLogger:
    lc: LoggerConfig = cfg.logger
    mode, why = resolve_mode(lc.mode)
    rank_zero_info(f"W&B: {mode} ({why})")
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        name=cfg.name, save_dir=str(run_dir), id=run_id(lc.group, cfg.name), project=lc.project,
        entity=lc.entity or None, group=lc.group or None, mode=mode, resume="allow",
        job_type="fit",
    )


class WandbPerClassLogger(pl.Callback):
    """After each validation: a per-class wandb.Table and a histogram of per-class accuracy (the summary scalars
    come from the LightningModule's ``self.log``). At the end: per_class.csv and metrics.json as an artifact,
    ``wandb.finish()``, and for offline runs the ``wandb sync`` command."""

    def __init__(self, logger: WandbLogger, run_dir: str | Path):
        self.logger, self.run_dir = logger, Path(run_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        result: PerClassResult | None = pl_module.last_results
        if trainer.sanity_checking or not trainer.is_global_zero or result is None:
            return
        import wandb

        real = result.real_accuracy
        table = wandb.Table(columns=["class_index", "class_name", "correct", "total", "accuracy",
                                     "top5_accuracy", "real_accuracy"])
        for i, name in enumerate(result.class_names):
            table.add_data(i, name, int(result.correct[i]), int(result.total[i]), _num(result.accuracy[i]),
                           _num(result.top5_accuracy[i]), None if real is None else _num(real[i]))
        logged = {"val/per_class": table}
        acc = result.accuracy[result.total > 0]
        if len(acc):
            logged["val/class_acc_hist"] = wandb.Histogram(acc.tolist())
        self.logger.log_metrics(logged, step=trainer.global_step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        import wandb

        run = self.logger.experiment
        metrics = self.run_dir / "metrics.json"
        artifact = wandb.Artifact(f"per_class-{run.id}", type="per_class_results",
                                  metadata=json.loads(metrics.read_text())["last"] if metrics.is_file() else None)
        for name in ("per_class.csv", "metrics.json"):
            if (self.run_dir / name).is_file():
                artifact.add_file(str(self.run_dir / name))
        if (self.run_dir / "confusion_matrices").is_dir():
            artifact.add_dir(str(self.run_dir / "confusion_matrices"), name="confusion_matrices")
        run.log_artifact(artifact)
        offline = run.settings.mode in ("offline", "dryrun")
        sync_dir = run.settings.sync_dir
        wandb.finish()
        if offline:
            print(f"W&B run {run.id} was logged offline; upload it with:\n  wandb sync {sync_dir}")


def _num(x: float):
    return None if np.isnan(x) else float(x)


def wandb_loggers_and_callbacks(cfg: RunConfig) -> tuple[list, list]:
    """([WandbLogger], [WandbPerClassLogger]) when logger.wandb is on, else ([], [])."""
    if not cfg.logger.wandb:
        return [], []
    logger = build_wandb_logger(cfg)
    return [logger], [WandbPerClassLogger(logger, cfg.run_dir)]
