"""Log the weight decay of every parameter group at the start of fit, and write run_dir/param_groups.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from datamodules.configkit import atomic_write_text
from lightning_modules.weight_decay import WeightDecayConfig, describe


class ParamGroupReport(pl.Callback):
    """At the start of fit: log the weight decay of every parameter group and write run_dir/param_groups.json."""

    def __init__(self, run_dir: str | Path, wd: WeightDecayConfig):
        self.path, self.wd = Path(run_dir) / "param_groups.json", wd

    def on_fit_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        report = describe(trainer.optimizers[0], self.wd)
        atomic_write_text(self.path, json.dumps(report, indent=2) + "\n")
        lines = [f"weight decay ({report['mode']}, {report['schedule']}, exclude={report['exclude']}):"]
        for g in report["groups"]:
            lines.append(
                f"  {g['name']:>8}: decay {g['weight_decay']:g} on {g['parameters']} tensors ({g['elements']:,} values)"
            )
        rank_zero_info("\n".join(lines))
