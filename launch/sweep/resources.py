"""The SLURM resources of a sweep point, checked against the points' trainer settings at plan/submit time.

The job runs ``#SBATCH --nodes=<nodes> --ntasks-per-node=<tasks_per_node>`` and Lightning with
``num_nodes=<nodes> devices=<tasks_per_node>`` (Lightning refuses anything else under SLURM). Settings that
contradict the resources would fail, or silently change the global batch and the scaled lr, only once the job
has waited in the queue; this module refuses them before anything is queued.

Every string here ends up in an ``#SBATCH`` line of the job-array script, so each one is checked against what
sbatch accepts for it (sweep specs come from colleagues and strangers): nothing can leave its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.configkit import ConfigError, bounded, choice, setting

# sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (and no limit at all)
TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|INFINITE|UNLIMITED")
MEM = re.compile(r"\d+([KMGT]B?)?", re.I)
NAME = re.compile(r"[A-Za-z0-9_.,:-]+")  # partition, account, qos (a partition may be a comma list)
OPTION = re.compile(r"--([a-z][a-z0-9-]*)(=([A-Za-z0-9_.,:@%+=/&|!*\[\]-]+))?")
# Options the job-array script sets itself (from these resources or for the sweep's bookkeeping), and
# options that move its files or change what runs: refused in extra_sbatch, with the key to use instead.
# sbatch takes any unambiguous prefix of a long option (`--out` is `--output`), so prefixes are refused too.
OWN_OPTIONS = {
    "array": "the sweep sets it (one task per point; resources.throttle)",
    "job-name": "the sweep sets it (its name in sweep.json)",
    "output": "the sweep's logs/ folder holds every task's log",
    "error": "the sweep's logs/ folder holds every task's log",
    "input": "array tasks read no input",
    "open-mode": "the sweep appends to each log across requeues",
    "requeue": "the sweep requeues preempted points",
    "no-requeue": "the sweep requeues preempted points",
    "signal": "use resources.requeue_signal and resources.signal_seconds",
    "nodes": "use resources.nodes",
    "ntasks-per-node": "use resources.tasks_per_node",
    "ntasks": "use resources.nodes and resources.tasks_per_node",
    "cpus-per-task": "use resources.cpus_per_task",
    "mem": "use resources.mem",
    "time": "use resources.time",
    "gpus-per-node": "use resources.gpus_per_node",
    "gpus": "use resources.gpus_per_node",
    "partition": "use resources.partition",
    "account": "use resources.account",
    "qos": "use resources.qos",
    "chdir": "array tasks run from where the sweep was submitted",
    "export": "the sweep passes the submitting environment",
    "export-file": "the sweep passes the submitting environment",
    "get-user-env": "the sweep passes the submitting environment",
    "wrap": "the sweep's script is the job",
    "container": "the sweep's script is the job",
    "bb": "the sweep's script is the job",
    "bbf": "the sweep's script is the job",
    "uid": "jobs run as the submitting user",
    "gid": "jobs run as the submitting user",
}


def _no_control(key: str, value: str) -> None:
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(
            f"bad value for resources.{key}: {value!r} contains the control character {bad!r}; "
            "every resource is one line of the job script: remove it"
        )


def check_extra_sbatch(entry: str) -> None:
    _no_control("extra_sbatch", entry)
    m = OPTION.fullmatch(entry)
    if not m:
        raise ConfigError(
            f"resources.extra_sbatch entry {entry!r} must be an sbatch long option, '--option' or '--option=value', "
            "the value of letters, digits and _.,:@%+=/&|!*[]- (e.g. '--constraint=volta32gb', '--exclusive')"
        )
    name = m.group(1)
    own = next((o for o in OWN_OPTIONS if o.startswith(name)), None)
    if own:
        raise ConfigError(
            f"resources.extra_sbatch entry {entry!r} sets sbatch's --{own}, which a sweep sets itself: "
            f"{OWN_OPTIONS[own]}; remove the entry"
        )


@dataclass
class Resources:
    nodes: int = bounded(1, 1, help="`--nodes`; sets `trainer.num_nodes` of every point")
    tasks_per_node: int = bounded(1, 1, help="`--ntasks-per-node`, one task per GPU; sets `trainer.devices`")
    gpus_per_node: int = bounded(0, 0, help="`--gpus-per-node`; 0: CPU-only points, else equal to `tasks_per_node`")
    cpus_per_task: int = bounded(4, 1, help="`--cpus-per-task`")
    mem: str = setting("16G", help="`--mem` per node: a number with an optional K, M, G or T (e.g. 32G, 4000M)")
    time: str = setting(
        "24:00:00",
        help="`--time` per job: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (or INFINITE)",
    )
    partition: str = setting("", help="`--partition`, when set: letters, digits and `_.,:-`")
    account: str = setting("", help="`--account`, when set: letters, digits and `_.,:-`")
    qos: str = setting("", help="`--qos`, when set: letters, digits and `_.,:-`")
    throttle: int = bounded(
        16, 1, help="array tasks of the sweep running at once (`--array=0-N%throttle`, shared across its arrays)"
    )
    requeue_signal: str = choice(
        "USR1",
        ["USR1", "USR2"],
        help="the signal (`--signal`) at which a point saves a checkpoint and requeues; sets "
        "`trainer.requeue_signal`. USR2 where NCCL or a launcher takes USR1",
    )
    signal_seconds: int = bounded(90, 1, help="send `requeue_signal` this long before the time limit")
    extra_sbatch: list[str] = setting(
        default_factory=list,
        help='more sbatch long options, `--option` or `--option=value`, e.g. `["--constraint=volta32gb"]`; '
        "not those the sweep sets itself",
    )

    def validate(self) -> None:
        for key in ("mem", "time", "partition", "account", "qos"):
            _no_control(key, getattr(self, key))
        for entry in self.extra_sbatch:
            check_extra_sbatch(entry)
        if not MEM.fullmatch(self.mem):
            raise ConfigError(f"bad value for resources.mem: {self.mem!r}. Use sbatch syntax, e.g. 32G or 4000M.")
        if not TIME.fullmatch(self.time):
            raise ConfigError(
                f"bad value for resources.time: {self.time!r}. Use one of sbatch's forms: minutes, MM:SS, HH:MM:SS, "
                "D-HH, D-HH:MM or D-HH:MM:SS (e.g. '04:00:00', '2-00:00:00')."
            )
        for key in ("partition", "account", "qos"):
            value = getattr(self, key)
            if value and not NAME.fullmatch(value):
                bad = next(c for c in value if not NAME.fullmatch(c))
                raise ConfigError(
                    f"bad value for resources.{key}: {value!r} contains {bad!r}; SLURM names are letters, "
                    "digits and _.,:-"
                )


PLACED = {
    "trainer.num_nodes": ("nodes", "--nodes"),
    "trainer.devices": ("tasks_per_node", "--ntasks-per-node"),
    "trainer.requeue_signal": ("requeue_signal", "--signal"),
}


def _explicit(base_path: Path, overrides: list[str]) -> dict[str, tuple[object, str]]:
    """The trainer keys set from the resources, as written in the base config or the spec's overrides."""
    from launch.config import canonical_key

    found = {}
    base = OmegaConf.load(base_path)
    for key in PLACED:
        value = OmegaConf.select(base, key)
        if value is not None:
            found[key] = (value, f"base config {base_path}")
    for item in overrides:
        key = canonical_key(item.partition("=")[0].strip())
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
                f"{key} = resources.{field} (#SBATCH {sbatch}), so that the job script and the run agree: "
                f"set resources.{field}: {value}, or drop {key} from {source}."
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
