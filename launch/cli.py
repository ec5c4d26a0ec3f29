"""`classreg`: the command-line entry point."""

from __future__ import annotations

import argparse
import sys

from datamodules.config import MAX_IMAGE_PIXELS
from datamodules.configkit import ClassregError
from launch.report.stats import DEFAULT_TEST, TESTS

DESCRIPTION = "classreg: measure how regularization changes a classifier class by class."


def _cmd_fit(args) -> int:
    from launch.config import load_config
    from launch.resources import resolve_config

    preset = resolve_config(args.config) if args.config else None
    cfg = load_config(preset, args.overrides)  # fails here, before any work, on a bad key or value
    if args.print_config:
        from datamodules.configkit import dump_yaml

        print(dump_yaml(cfg), end="")
        return 0
    from launch.fit import fit
    from launch.per_class_table import print_per_class

    fit(cfg, trust_checkpoints=args.trust_checkpoints)
    print_per_class(cfg.run_dir)
    return 0


def _cmd_presets(args) -> int:
    from launch import resources

    for folder, title, use in (
        (resources.PRESETS, "presets", "classreg fit -c NAME"),
        (resources.SWEEPS, "sweep specs", "classreg sweep plan NAME"),
        (resources.TRANSFER, "downstream configs", "classreg transfer D --downstream NAME"),
    ):
        print(f"{title} ({use}):")
        for name, path in resources.packaged(folder).items():
            print(f"  {name:<22} {resources.summary(path)}")
    print(f"(packaged in {resources.configs_dir()}; copy one to edit it)")
    return 0


def _presets_epilog() -> str:
    from launch import resources

    return "packaged presets (`classreg presets`): " + ", ".join(resources.packaged())


def _cmd_shard(args) -> int:
    from datamodules.shards.format import ShardError, printable
    from datamodules.sources.image_tree import shard_image_tree

    if args.check:
        return _check_shards(args)
    if len(args.paths) == 1 and args.source_format == "imagefolder":
        raise ShardError("`classreg shard SRC OUT` needs both SRC (an image-folder tree) and OUT")
    src, out = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    opts = dict(
        shard_size=args.shard_size,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        verify=args.verify,
        max_pixels=MAX_IMAGE_PIXELS if args.max_pixels is None else args.max_pixels,
        train_per_class=args.train_per_class,
    )
    if args.val_fraction:
        opts["val_fraction"] = args.val_fraction
    if args.source_format == "fashion-mnist":
        from datamodules.sources.fashion_mnist import shard_fashion_mnist

        manifest = shard_fashion_mnist(out, folder=src, download_root=args.download_root, **opts)
    else:
        manifest = shard_image_tree(src, out, follow_symlinks=args.follow_symlinks, **opts)
    for split, info in manifest["splits"].items():
        print(f"{split}: {info['samples']} samples in {len(info['shards'])} shards, {len(info['skipped'])} skipped")
        if "drawn_from" in info:
            print(f"  {manifest['train_per_class']} per class, drawn from {info['drawn_from']} images")
        if info.get("excluded_not_in_train_classes"):
            print(f"  {info['excluded_not_in_train_classes']} images left out: their class is not a train/ folder")
        if info.get("hidden_skipped"):
            print(f"  {info['hidden_skipped']} hidden files or folders (names starting with '.') left out")
        if info.get("keys_made_unique"):
            print(
                f"  {info['keys_made_unique']} images shared a sample key with another (e.g. a.b.png and a_b.png): "
                "their keys end in a hash of their path"
            )
        for bad in info["skipped"][:20]:
            print(f"  skipped {printable(bad['source'])}: {printable(bad['error'])}")
        if len(info["skipped"]) > 20:
            print(f"  ... and {len(info['skipped']) - 20} more, listed in {out}/manifest.json")
    print(f"wrote {out}/manifest.json and {out}/classes.json")
    return 0


def _check_shards(args) -> int:
    from datamodules.shards.check import check_folder
    from datamodules.shards.format import ShardError

    if len(args.paths) != 1:
        raise ShardError("`classreg shard --check OUT` takes one folder, the shards to check")
    results = check_folder(args.paths[0], workers=args.workers, max_pixels=args.max_pixels)
    bad = [r for r in results if r.problems]
    for r in bad:
        print(f"bad: {r.file}: {'; '.join(r.problems)}")
    size = sum(r.bytes for r in results)
    print(f"checked {len(results)} shards ({size / 1e9:.2f} GB) in {args.paths[0]}: {len(bad) or 'none'} bad")
    return 1 if bad else 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers, e.g. 0,1,2") from None


def _cmd_demo(args) -> int:
    from launch.demo import run_demo

    return run_demo(args)


def _cmd_report(args) -> int:
    from launch.report import ReportOptions, build_report

    options = ReportOptions(
        reference=args.reference,
        strength=args.strength,
        fdr=args.fdr,
        test=args.test,
        curves=args.curves,
        ignore=args.ignore,
        split=args.split,
        seeds=args.seeds,
        wandb=args.wandb,
    )
    report = build_report(args.paths, args.out, options, progress=not args.no_progress)
    print(report.headline)
    if report.repair_headline:
        print(report.repair_headline)
    print(f"report: {report.html}")
    return 0


def _cmd_transfer(args) -> int:
    from launch.resources import TRANSFER, resolve_config
    from launch.transfer import run_transfer

    args.downstream = resolve_config(args.downstream, TRANSFER)

    return run_transfer(args)


def _add_trust_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--trust-checkpoints",
        action="store_true",
        help=f"load {what} with full unpickling, which runs any code the file names: only for checkpoints "
        "from someone you trust (default: tensors and plain values only, docs/trust.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    from launch import __version__

    parser = argparse.ArgumentParser(prog="classreg", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"classreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="train one configuration", epilog=_presets_epilog())
    p.add_argument("--config", "-c", metavar="PRESET", help="a YAML file, or the name of a packaged preset")
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit (nothing is run)"
    )
    _add_trust_flag(p, "the resume checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="e.g. wd.value=5e-5 aug.rrc.min_scale=0.5")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("presets", help="list the packaged presets, sweep specs and downstream configs")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("shard", help="write WebDataset shards from an image-folder tree or Fashion-MNIST")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[SRC] OUT",
        help="SRC: folder with train/<class>/*.jpg (and val/ or test/); optional with --from fashion-mnist",
    )
    p.add_argument("--from", dest="source_format", choices=["imagefolder", "fashion-mnist"], default="imagefolder")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the shuffle across shards (and of --val-fraction, --train-per-class)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="carve a `val` split of this fraction of every class's training images (seeded), for model "
        "selection; the source's test split is then evaluated only once, at the end of fit",
    )
    p.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        metavar="N",
        help="keep only N training images of every class (a fixed subset drawn with --seed, recorded in "
        "manifest.json); validation and test splits stay whole",
    )
    p.add_argument("--workers", type=int, default=None, help="encoding processes (default: all cores)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite finished shards in OUT (otherwise an "
        "interrupted run in OUT is resumed: finished shards are kept)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="decode every image fully (default: check headers and that each JPEG is complete); "
        "corrupt images are skipped and listed",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help=f"skip (and list) images with more pixels, width x height (default {MAX_IMAGE_PIXELS:,}); with "
        "--check: the limit checked (default: the one the shards were written with)",
    )
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="read symbolic links that lead outside SRC (default: skip and list them)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="verify the shards in OUT against manifest.json (sizes, sha256, indexes, labels, image sizes); "
        "prints one line per bad shard, exits with 1 if any is bad",
    )
    p.add_argument(
        "--download-root",
        default=None,
        help="fashion-mnist only: let torchvision download it here when it is not installed",
    )
    p.set_defaults(func=_cmd_shard)

    p = sub.add_parser(
        "demo", help="shard Fashion-MNIST, run a small regularization sweep here, report it, repair the hurt classes"
    )
    p.add_argument("--workdir", default="demo", help="where shards, the sweep and the report go (default ./demo)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="runs at a time (default: one per core)")
    p.add_argument("--fashion-mnist-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="NAME",
        default=None,
        help="a class to repair, repeatable (default: those the sweep's report flags as significantly lowered)",
    )
    p.add_argument(
        "--seeds",
        type=_int_list,
        default=None,
        metavar="S,S,...",
        help="the seeds of every setting (default: the demo spec's four, 0,1,2,3); three still flag the class "
        "the demo is designed to show (docs/demo-design.md), two are exploratory",
    )
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="per-class statistics, figures and an HTML report over a sweep's runs")
    p.add_argument("paths", nargs="+", metavar="D", help="a sweep folder (searched for run folders) or run folders")
    p.add_argument("--out", "-o", default=None, help="output folder (default D/report, or ./report for run folders)")
    p.add_argument(
        "--reference",
        default="",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="the reference setting (default: the weakest regularization)",
    )
    p.add_argument(
        "--strength",
        default="",
        metavar="KEY",
        help="varying key on the x axis of the strength curves (default: the numeric one with most values)",
    )
    p.add_argument("--fdr", type=float, default=0.1, help="Benjamini-Hochberg false discovery rate (default 0.1)")
    p.add_argument(
        "--test",
        default=DEFAULT_TEST,
        choices=TESTS,
        help=f"per-class test (default {DEFAULT_TEST}: moderated t; see docs/statistics.md)",
    )
    p.add_argument("--curves", type=int, default=3, help="most hurt and most helped classes to draw (default 3)")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="a config key (glob) that is not a setting; repeatable",
    )
    p.add_argument(
        "--split",
        default="auto",
        choices=["auto", "test", "validation"],
        help="results to report: test (per_class_test.csv), validation (per_class.csv); default auto: test "
        "when every finished run has it",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="finished seeds a setting needs to be tested (default: the sweep spec's seeds, else the most any "
        "setting has)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--wandb",
        action="store_true",
        help="also log it to W&B as a job_type=report run in the sweep's group (offline unless online is possible)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("transfer", help="linear probes on frozen checkpoints, trained on a downstream dataset")
    p.add_argument(
        "path", metavar="D", help="a sweep folder (searched for run folders with checkpoints) or a run folder"
    )
    p.add_argument(
        "--downstream",
        "-d",
        required=True,
        metavar="CONFIG",
        help="YAML: the downstream data and probe training (a file or a packaged name, e.g. linear_probe)",
    )
    p.add_argument("--out", "-o", default=None, help="where the probe runs go (default D-transfer)")
    p.add_argument("--report", action="store_true", help="then run `classreg report` on the probe runs")
    _add_trust_flag(p, "the upstream checkpoints")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides of the downstream config")
    p.set_defaults(func=_cmd_transfer)

    from launch.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
    from launch.repair import add_repair_parser

    add_repair_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`classreg transfer D --downstream X data.root=...`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except ClassregError as e:
        print(f"classreg {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
