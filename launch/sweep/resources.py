"""The SLURM resources of a sweep point, checked against the points' trainer settings at plan/submit time.

The job runs ``#SBATCH --nodes=<nodes> --ntasks-per-node=<tasks_per_node>`` and Lightning with
``num_nodes=<nodes> devices=<tasks_per_node>`` (Lightning refuses anything else under SLURM). Settings that
contradict the resources would fail, or silently change the global batch and the scaled lr, only once the job
has waited in the queue; this module refuses them before anything is queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.configkit import ConfigError, bounded, setting


@dataclass
class Resources:
    nodes: int = bounded(1, 1, help="`--nodes`; sets `trainer.num_nodes` of every point")
    tasks_per_node: int = bounded(1, 1, help="`--ntasks-per-node`, one task per GPU; sets `trainer.devices`")
    gpus_per_node: int = bounded(0, 0, help="`--gpus-per-node`; 0: CPU-only points, else equal to `tasks_per_node`")
    cpus_per_task: int = bounded(4, 1, help="`--cpus-per-task`")
    mem: str = setting("16G", help="`--mem` per node, sbatch syntax (e.g. 32G, 4000M)")
    time: str = setting("24:00:00", help="`--time` per job, sbatch syntax")
    partition: str = setting("", help="`--partition`, when set")
    account: str = setting("", help="`--account`, when set")
    qos: str = setting("", help="`--qos`, when set")
    throttle: int = bounded(16, 1, help="array tasks running at once (`--array=0-N%throttle`)")
    signal_seconds: int = bounded(90, 1, help="SIGUSR1 (checkpoint and requeue) this long before the time limit")
    extra_sbatch: list[str] = setting(
        default_factory=list, help='more sbatch options, e.g. `["--constraint=volta32gb"]`'
    )

    def validate(self) -> None:
        for line in self.extra_sbatch:
            if not line.startswith("--"):
                raise ConfigError(f"resources.extra_sbatch entry {line!r} must be an sbatch option like '--qos=high'")
        if not re.fullmatch(r"\d+([KMGT]B?)?", self.mem, re.I):
            raise ConfigError(f"bad value for resources.mem: {self.mem!r}. Use sbatch syntax, e.g. 32G or 4000M.")


PLACED = {"trainer.num_nodes": ("nodes", "--nodes"), "trainer.devices": ("tasks_per_node", "--ntasks-per-node")}


def _explicit(base_path: Path, overrides: list[str]) -> dict[str, tuple[int, str]]:
    """trainer.num_nodes / trainer.devices as written in the base config or the spec's overrides."""
    found = {}
    base = OmegaConf.load(base_path)
    for key in PLACED:
        value = OmegaConf.select(base, key)
        if value is not None:
            found[key] = (value, f"base config {base_path}")
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in PLACED:
            found[key] = (OmegaConf.select(OmegaConf.from_dotlist([item]), key), "the spec's overrides")
    return found


def check_resources(spec, spec_path, base_path: Path, points: list) -> None:
    """Raise ConfigError naming the key and the fix when the resources and the trainer settings disagree."""
    r = spec.resources
    where = f"sweep spec {spec_path}"
    for key, (value, source) in _explicit(base_path, spec.overrides).items():
        field, sbatch = PLACED[key]
        want = getattr(r, field)
        if value != want:
            raise ConfigError(
                f"{where}: {source} sets {key}={value} but resources.{field}={want}. Each point runs with "
                f"{key} = resources.{field} (#SBATCH {sbatch}={want}), which sets the global batch and the scaled "
                f"lr: set resources.{field}: {value}, or drop {key} from {source}."
            )
    if r.gpus_per_node and r.tasks_per_node != r.gpus_per_node:
        raise ConfigError(
            f"{where}: resources.gpus_per_node={r.gpus_per_node} with resources.tasks_per_node={r.tasks_per_node}: "
            f"Lightning runs one process per GPU (trainer.devices = --ntasks-per-node); set "
            f"resources.tasks_per_node: {r.gpus_per_node}."
        )
    for p in points:
        acc = p.config.trainer.accelerator
        if r.gpus_per_node and acc == "cpu":
            raise ConfigError(
                f"{where}: point {p.index} has trainer.accelerator=cpu but resources.gpus_per_node="
                f"{r.gpus_per_node}: set trainer.accelerator=gpu (or auto), or gpus_per_node: 0."
            )
        if not r.gpus_per_node and acc == "gpu":
            raise ConfigError(
                f"{where}: point {p.index} has trainer.accelerator=gpu but resources.gpus_per_node=0: "
                "the job would fail on its node after queueing; set resources.gpus_per_node (one "
                "per task) or trainer.accelerator=cpu."
            )


def scale_summary(spec, points: list) -> str:
    """One line for `sweep plan`: processes per point, global batch and the lr each point trains with."""
    from lightning_modules.optim import scaled_lr

    r = spec.resources
    world = r.nodes * r.tasks_per_node
    lrs = sorted({scaled_lr(p.config.optim, p.config.data.batch_size, world)[0] for p in points})
    batches = sorted({p.config.data.batch_size * world for p in points})
    backend = "" if world == 1 else ", NCCL" if r.gpus_per_node else ", gloo on CPU"
    return (
        f"{r.nodes} node(s) x {r.tasks_per_node} task(s) = world size {world} per point{backend}; global batch "
        f"{', '.join(map(str, batches))}; lr {', '.join(f'{v:g}' for v in lrs)}"
    )
