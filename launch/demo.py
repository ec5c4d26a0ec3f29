"""`classreg demo`: Fashion-MNIST -> shards -> one short training run -> per-class table."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from datamodules.fashion_mnist import shard_fashion_mnist
from datamodules.shard_writer import MANIFEST
from launch.config import load_config
from launch.fit import fit
from launch.per_class_table import print_per_class

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "fashion_mnist_demo.yaml"


def run_demo(args) -> int:
    console = Console()
    workdir = Path(args.workdir)
    shards = workdir / "shards" / "fashion-mnist"
    if (shards / MANIFEST).exists():
        console.print(f"[bold]1/2[/bold] using existing shards in {shards}")
    else:
        console.print(f"[bold]1/2[/bold] writing Fashion-MNIST shards to {shards}")
        shard_fashion_mnist(shards, folder=args.fashion_mnist_dir, download_root=workdir / "download")
    cfg = load_config(DEMO_CONFIG, [f"data.root={shards}", f"out_dir={workdir / 'runs'}", *args.overrides])
    console.print(f"[bold]2/2[/bold] training {cfg.model.arch} for {cfg.trainer.max_epochs} epochs -> {cfg.run_dir}")
    fit(cfg)
    print_per_class(cfg.run_dir, console)
    return 0
