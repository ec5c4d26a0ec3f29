"""Weights & Biases, offline-first: the ``logger`` section and a WandbLogger with a deterministic run id per
grid point (the per-class table, histogram and files: lightning_modules/callbacks/wandb_per_class.py).

Only rank 0 talks to W&B (Lightning's WandbLogger creates the run on rank 0 only). The API key is never
read into the config or the logs: we only check whether one is configured.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from datamodules.configkit import bounded, choice, setting

DEFAULT_BASE_URL = "https://api.wandb.ai"


@dataclass
class LoggerConfig:
    wandb: bool = setting(True, help="stream to Weights & Biases (local results files are written either way)")
    project: str = setting("classreg", help="W&B project")
    entity: str = setting("", help='W&B entity; `""`: your default entity')
    group: str = setting("", help="W&B group: the sweep name (set by `classreg sweep`)")
    mode: str = choice(
        "auto",
        ["auto", "online", "offline"],
        help="`auto`: online when an API key is configured and the W&B server answers, else offline "
        "(`wandb sync` later)",
    )
    class_scalars: int = bounded(
        100,
        0,
        None,
        help="per-class accuracy scalars `val/class_acc/<class>` per validation, to chart classes over epochs: "
        "every class when there are at most this many, else (n = this value) the ceil(n/2) worst and n//2 best "
        "classes of that validation; 0: none",
    )


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
    """(online|offline|disabled, why).

    ``auto``: WANDB_MODE if set, else online only with an API key and a reachable server."""
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


def build_wandb_logger(lc: LoggerConfig, name: str, run_dir: Path):
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities import rank_zero_info

    mode, why = resolve_mode(lc.mode)
    rank_zero_info(f"W&B: {mode} ({why})")
    run_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        name=name,
        save_dir=str(run_dir),
        id=run_id(lc.group, name),
        project=lc.project,
        entity=lc.entity or None,
        group=lc.group or None,
        mode=mode,
        resume="allow",
        job_type="fit",
    )


def wandb_loggers_and_callbacks(lc: LoggerConfig, name: str, run_dir: Path) -> tuple[list, list]:
    """([WandbLogger], [WandbPerClassLogger]) when logger.wandb is on, else ([], [])."""
    if not lc.wandb:
        return [], []
    from lightning_modules.callbacks.wandb_per_class import WandbPerClassLogger

    logger = build_wandb_logger(lc, name, run_dir)
    return [logger], [WandbPerClassLogger(logger, run_dir, lc.class_scalars)]
