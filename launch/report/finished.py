"""Which runs are finished (the only replicates the report uses), and how many seeds a setting should have.

A run is finished when its sweep point's ``status.json`` says ``done``; outside a sweep, when its
``resume.json`` ends with a complete fit (lightning_modules/run_record.py), or, in a folder without either
file, when its last validation is the last one its schedule has (``trainer.max_epochs``,
``trainer.check_val_every_n_epoch``). A ``"diverged"`` record in
``metrics.json`` (``{"epoch": E, "step": S}``, written when the training loss became non-finite) makes a run
diverged whatever else it says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from lightning_modules.run_record import read_record

STATUS = "status.json"  # a sweep point's (launch/sweep/status.py)
TRANSFER = "transfer.yaml"  # a linear probe's own schedule (launch/transfer.py)


@dataclass
class RunState:
    state: str  # done, or why not: running, queued, pending, failed, cancelled, diverged, incomplete, no results
    last_epoch: Optional[int] = None  # the last validated epoch (0-based); None before the first validation
    max_epochs: Optional[int] = None
    reason: str = ""
    diverged: Optional[dict] = None  # metrics.json's {"epoch": E, "step": S}

    @property
    def finished(self) -> bool:
        return self.state == "done"

    @property
    def progress(self) -> str:
        done = 0 if self.last_epoch is None else self.last_epoch + 1
        return f"{done}/{self.max_epochs if self.max_epochs is not None else '?'} epochs validated"

    def describe(self) -> str:
        if self.diverged is not None:
            return f"diverged at epoch {self.diverged.get('epoch')} step {self.diverged.get('step')}"
        return f"{self.state}, {self.progress}" + (f": {self.reason}" if self.reason else "")


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _schedule(folder: Path, config: dict) -> tuple[Optional[int], int]:
    """(trainer.max_epochs, trainer.check_val_every_n_epoch) the run trained with."""
    if (folder / TRANSFER).is_file():  # a probe's config.yaml is its upstream run's
        try:
            trainer = OmegaConf.to_container(OmegaConf.load(folder / TRANSFER)).get("trainer") or {}
        except Exception:
            trainer = {}
        return trainer.get("max_epochs"), trainer.get("check_val_every_n_epoch") or 1
    return config.get("trainer.max_epochs"), config.get("trainer.check_val_every_n_epoch") or 1


def last_validated_epoch(folder: Path, metrics) -> Optional[int]:
    last = (metrics or {}).get("last") if isinstance(metrics, dict) else None
    if isinstance(last, dict) and isinstance(last.get("epoch"), int):
        return last["epoch"]
    csv = folder / "per_class.csv"
    if not csv.is_file():
        return None
    import pandas as pd

    epochs = pd.read_csv(csv, usecols=["epoch"])["epoch"]
    return int(epochs.max()) if len(epochs) else None


def run_state(folder: Path, config: dict) -> RunState:
    metrics = _json(folder / "metrics.json")
    max_epochs, every = _schedule(folder, config)
    last = last_validated_epoch(folder, metrics)
    diverged = metrics.get("diverged") if isinstance(metrics, dict) else None
    if isinstance(diverged, dict):
        return RunState("diverged", last, max_epochs, "training loss became non-finite", diverged)
    status = _json(folder / STATUS)
    if isinstance(status, dict) and "state" in status:
        reason = status.get("reason") or ""
        if status["state"] == "failed" and "diverg" in reason.lower():
            return RunState("diverged", last, max_epochs, reason, {})
        return RunState(status["state"], last, max_epochs, "" if status["state"] == "done" else reason)
    record = read_record(folder)
    if record:
        if record[-1].get("event") == "end" and record[-1].get("complete"):
            return RunState("done", last, max_epochs)
        why = (
            "resume.json: the fit ended before trainer.max_epochs"
            if record[-1].get("event") == "end"
            else "resume.json: started, no end recorded (still running, or stopped without a trace)"
        )
        return RunState("incomplete", last, max_epochs, why)
    final = (max_epochs // every) * every - 1 if isinstance(max_epochs, int) else None
    if final is not None and final >= 0 and last is not None and last >= final:
        return RunState("done", last, max_epochs)
    if max_epochs is None:
        why = "config.yaml has no trainer.max_epochs, so the run cannot be known to be finished"
    elif last is None:
        why = "no validation yet"
    else:
        why = f"validated up to epoch {last}; the schedule's last validation is epoch {final}"
    return RunState("incomplete", last, max_epochs, why)


def sweep_folder(path: Path) -> Optional[Path]:
    """The sweep folder (holding sweep.json and spec.yaml) that ``path`` is or lies in, if any."""
    for p in (path, *path.parents):
        if (p / "sweep.json").is_file() and (p / "spec.yaml").is_file():
            return p
    return None


def spec_seeds(sweep: Path) -> Optional[int]:
    """Seeds per setting of a sweep, from its spec: ``seeds``, or a product axis ``seed``; None if unreadable."""
    from datamodules.configkit import ConfigError
    from launch.sweep.spec import load_spec

    try:
        spec = load_spec(sweep / "spec.yaml")
    except ConfigError:
        return None
    if spec.seeds:
        return len(set(spec.seeds))
    if "seed" in spec.axes.product:
        return len(set(spec.axes.product["seed"]))
    return 1
