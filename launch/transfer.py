"""`classreg transfer`: linear probes on the frozen checkpoints of a sweep, trained on a downstream dataset.

Each upstream run folder gets a probe run folder (same relative path under the output folder) holding the
upstream ``config.yaml`` (so that `classreg report` groups the probes by the upstream setting), the probe's
own ``transfer.yaml``, ``source.json``, and ``per_class.csv``/``metrics.json`` on the downstream classes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape

from datamodules.config import DataConfig
from datamodules.configkit import ClassregError, atomic_write_text, choice, dump_yaml, setting
from launch.config import RunConfig, load_config
from launch.report.runs import find_runs
from lightning_modules.augment import AugConfig
from lightning_modules.metrics.config import MetricsConfig
from lightning_modules.optim import OptimConfig
from lightning_modules.trainer import TrainerConfig
from lightning_modules.weight_decay import WeightDecayConfig

# The frozen backbone is in eval mode on purpose (its batch-norm statistics stay the upstream ones).
EVAL_MODE_WARNING = r".*module\(s\) in eval mode at the start of training.*"


class TransferError(ClassregError):
    """An upstream run cannot be probed; the message names the run and the fix."""


@dataclass
class TransferConfig:
    seed: int = setting(0, help="seeds the head and the data order")
    checkpoint: str = choice("last", ["last", "best"], help="which upstream checkpoint to freeze")
    data: DataConfig = field(default_factory=DataConfig)  # the downstream shards
    optim: OptimConfig = field(default_factory=OptimConfig)  # the probe's SGD
    wd: WeightDecayConfig = field(default_factory=lambda: WeightDecayConfig(value=0.0))
    # The probe's own augmentation: the upstream one may name upstream classes (class_overrides).
    aug: AugConfig = field(default_factory=lambda: AugConfig(policy=["flip"]))
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=10))


def checkpoint_of(run_dir: Path, which: str) -> Path:
    folder = run_dir / "checkpoints"
    found = [folder / "last.ckpt"] if which == "last" else sorted(folder.glob("best-*.ckpt"))
    found = [p for p in found if p.is_file()]
    if not found:
        raise TransferError(
            f"{run_dir} has no {which} checkpoint in {folder}: finish or resume the run "
            f"(`classreg fit -c {run_dir / 'config.yaml'}`), or use checkpoint=last|best"
        )
    return found[-1]


def probe_config(upstream: RunConfig, transfer: TransferConfig, run_dir: Path) -> RunConfig:
    """The upstream model with the downstream data and the probe's optimizer, trainer, seed and folder."""
    from lightning_modules.models import use_small_stem

    stem = "small" if use_small_stem(upstream.model.stem, upstream.data.image_size) else "imagenet"
    return dataclasses.replace(
        upstream,
        name=run_dir.name,
        out_dir=str(run_dir.parent),
        seed=transfer.seed,
        data=transfer.data,
        optim=transfer.optim,
        wd=transfer.wd,
        aug=transfer.aug,
        metrics=transfer.metrics,
        trainer=transfer.trainer,
        model=dataclasses.replace(upstream.model, stem=stem),
    )


def finished(run_dir: Path, max_epochs: int) -> bool:
    metrics = run_dir / "metrics.json"
    return metrics.is_file() and json.loads(metrics.read_text())["last"]["epoch"] >= max_epochs - 1


def probe_one(upstream_dir: Path, out_dir: Path, transfer: TransferConfig, trust_checkpoints: bool = False) -> Path:
    import pytorch_lightning as pl

    from datamodules.torchvision_backend.datamodule import ShardDataModule
    from launch.fit import quiet_known_warnings
    from lightning_modules import runtime
    from lightning_modules.augment import ImageTransforms
    from lightning_modules.callbacks.per_class_results import PerClassResultsWriter
    from lightning_modules.linear_probe import LinearProbe, backbone_state
    from lightning_modules.trainer import build_trainer

    ckpt = checkpoint_of(upstream_dir, transfer.checkpoint)
    backbone = backbone_state(ckpt, trust_checkpoints)  # first: a refused checkpoint leaves no probe folder
    upstream = load_config(upstream_dir / "config.yaml")
    cfg = probe_config(upstream, transfer, out_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = ShardDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data), seed=cfg.seed)  # the probe's own aug
    data.setup("fit")
    if out_dir.exists():  # an unfinished probe restarts from scratch (it is cheap)
        if not (out_dir / "transfer.yaml").is_file():
            raise TransferError(
                f"{out_dir} exists and is not a probe run folder (it has no transfer.yaml): classreg deletes only "
                "its own unfinished probes; move it, or give another --out"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    atomic_write_text(out_dir / "config.yaml", (upstream_dir / "config.yaml").read_text(encoding="utf-8"))
    atomic_write_text(out_dir / "transfer.yaml", dump_yaml(transfer))
    atomic_write_text(
        out_dir / "source.json", json.dumps({"run": str(upstream_dir), "checkpoint": str(ckpt)}, indent=1)
    )
    try:
        model = LinearProbe(OmegaConf.to_container(OmegaConf.structured(cfg)), data.class_names, backbone)
    except ValueError as e:
        raise TransferError(f"{ckpt}: {e}; was it written by `classreg fit` with this config.yaml?") from None
    choices = runtime.resolve(cfg.trainer)
    with quiet_known_warnings(EVAL_MODE_WARNING):
        trainer = build_trainer(
            cfg.trainer,
            out_dir,
            [PerClassResultsWriter(out_dir, data.class_names)],
            precision=choices.precision,
            cudnn_benchmark=choices.cudnn_benchmark,
        )
        trainer.fit(model, datamodule=data)
    return out_dir


def transfer_all(
    sweep: str | Path,
    transfer: TransferConfig,
    out: str | Path | None = None,
    console: Console | None = None,
    trust_checkpoints: bool = False,
) -> list[Path]:
    """Probe every run under ``sweep``; finished probes are kept. Returns the probe run folders.

    ``trust_checkpoints``: unpickle the upstream checkpoints fully (lightning_modules/checkpoint_io.py)."""
    console = console or Console()
    sweep = Path(sweep)
    out = Path(out) if out else sweep.with_name(sweep.name + "-transfer")
    runs = [r for r in find_runs([sweep]) if not (r / "transfer.yaml").is_file()]
    if not transfer.data.root:
        raise TransferError("the downstream config sets no data.root: point it at a `classreg shard` folder")
    done = []
    for i, run in enumerate(runs, 1):
        rel = run.relative_to(sweep.resolve()) if run != sweep.resolve() else Path(run.name)
        target = out / rel
        if finished(target, transfer.trainer.max_epochs):
            console.print(f"[{i}/{len(runs)}] {escape(str(rel))}: probe already finished")
        else:
            console.print(
                f"[{i}/{len(runs)}] probing {escape(str(rel))} ({transfer.checkpoint} checkpoint) "
                f"on {escape(transfer.data.root)}"
            )
            probe_one(run, target, transfer, trust_checkpoints)
        done.append(target)
    return done


def run_transfer(args) -> int:
    transfer = load_config(args.downstream, args.overrides, schema=TransferConfig)
    console = Console(soft_wrap=True)
    out = args.out or Path(args.path).resolve().with_name(Path(args.path).resolve().name + "-transfer")
    transfer_all(args.path, transfer, out, console, trust_checkpoints=args.trust_checkpoints)
    console.print(f"probe runs in {escape(str(out))}")
    if args.report:
        from launch.report import build_report

        report = build_report([out])
        print(report.headline)
        print(f"report: {report.html}")
    return 0
