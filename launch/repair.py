"""`classreg repair`: the class-conditional setting that gives the classes a regularizer hurts their old augmentation.

From a sweep (or a report over one) the report's analysis names the classes that the ``--from`` setting (default:
the best-mean one) significantly lowers against the ``--to`` setting (default: the reference). The repaired
setting is the ``--from`` setting's config with ``aug.class_overrides[<class>]`` giving each of those classes the
``aug`` keys of the ``--to`` setting (Kirichenko et al. 2023). It is written as a sweep spec with the source
sweep's base, overrides, seeds, resources and executor, and submitted, run here, or printed. The repair sweep's
``repair.json`` says what it repairs; the report over both sweeps reads it (launch/report/repair.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from datamodules.configkit import ClassregError, atomic_write_text, did_you_mean, dump_yaml
from launch.config import join_key

REPAIR_FILE = "repair.json"  # in the repair sweep's folder: what it repairs (launch/report/repair.py reads it)
NOT_SETTINGS = ("name", "out_dir", "seed", "logger.")  # keys that differ between points without being a setting


class RepairError(ClassregError):
    """A repair cannot be built from what was given; the message says what to give instead."""


@dataclass
class RepairPlan:
    source: Path  # the source sweep folder
    spec: dict  # the repair sweep spec, as YAML-ready containers
    out_dir: Path
    classes: list[str]
    from_label: str
    to_label: str
    from_runs: list[str]
    to_runs: list[str]
    patch: dict  # the aug keys (dotted, without `aug.`) every repaired class gets, -> the --to values
    kept: dict = field(default_factory=dict)  # non-aug keys that differ: key -> (--from value kept, --to value)
    executor: str = "slurm"

    def record(self) -> dict:
        return {
            "source": str(self.source),
            "from": self.from_label,
            "to": self.to_label,
            "from_runs": self.from_runs,
            "to_runs": self.to_runs,
            "classes": self.classes,
            "aug": self.patch,
            "kept_from": {k: list(v) for k, v in self.kept.items()},
        }


def source_sweep(path: Path) -> tuple[Path, dict]:
    """(the sweep folder, the report options saved with a report) for a sweep folder or a report folder."""
    from launch.report.finished import sweep_folder

    path = Path(path).resolve()
    if not path.exists():
        raise RepairError(f"'{path}' does not exist: give a sweep folder or the report folder of one")
    options = {}
    report_json = path / "report.json"
    if report_json.is_file():
        try:
            saved = json.loads(report_json.read_text())
            options = saved.get("options") or {}
            sources = saved.get("sources") or []
        except (OSError, ValueError, AttributeError):
            raise RepairError(f"{report_json} is not a report.json that `classreg report` writes") from None
        sweep = sweep_folder(path) or (sweep_folder(Path(sources[0])) if len(sources) == 1 else None)
    else:
        sweep = sweep_folder(path)
    if sweep is None:
        raise RepairError(
            f"{path} is neither a sweep folder (with sweep.json and spec.yaml) nor a report of one: a repair is "
            "written as a sweep like its source; give the folder of `classreg sweep submit --dir`"
        )
    return sweep, options


def _pick(study, analysis, text: str, option: str) -> int:
    from launch.report.runs import parse_selector

    if text == "best":
        return analysis.best
    if text == "reference":
        return analysis.ref
    labels = [s.label for s in study.settings]
    if text in labels:  # a setting's label as the report prints it (list values cannot be written key=value)
        return labels.index(text)
    return parse_selector(text, study.keys, [s.values for s in study.settings], option)


def _differences(a: dict, b: dict) -> dict:
    """Flattened config keys whose values differ between two runs (bookkeeping keys left out)."""
    keys = sorted(set(a) | set(b))
    return {
        k: (a.get(k), b.get(k))
        for k in keys
        if not k.startswith(NOT_SETTINGS) and k not in NOT_SETTINGS and repr(a.get(k)) != repr(b.get(k))
    }


def class_key(name: str, key: str) -> str:
    """The sweep key of an aug key for one class, the class name in brackets unless it is a plain word."""
    head = join_key(["aug", "class_overrides", name])
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) and "[" not in head:
        head = f"aug.class_overrides[{name}]"
    return f"{head}.{key}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _point_params(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())["params"]
    except (OSError, ValueError, KeyError):
        raise RepairError(
            f"{run_dir} has no status.json of a sweep point: give the sweep folder it came from"
        ) from None


def _executor(sweep: Path) -> str:
    """The source sweep's executor: SLURM when it submitted job arrays, else the local one."""
    return "slurm" if (sweep / "submissions" / "jobs.txt").is_file() else "local"


def plan_repair(
    path,
    classes: list[str] = (),
    from_: str = "best",
    to: str = "reference",
    out_dir=None,
    local: bool = False,
    console: Console | None = None,
) -> RepairPlan:
    """Everything a repair needs, checked; nothing written."""
    from launch.report.build import ReportOptions
    from launch.report.compare import analyse, compare_settings
    from launch.report.read import read_study
    from launch.sweep.spec import load_spec, resolve_base

    console = console or Console(stderr=True, soft_wrap=True)
    sweep, saved = source_sweep(path)
    known = {f.name for f in dataclasses.fields(ReportOptions)}
    options = ReportOptions(**{k: v for k, v in saved.items() if k in known and k != "wandb"})
    study = read_study([sweep], options, console, False)
    analysis = analyse(study, options, console, False)
    frm, dst = _pick(study, analysis, from_, "--from"), _pick(study, analysis, to, "--to")
    settings, names = study.settings, study.class_names
    if frm == dst:
        raise RepairError(
            f"--from {from_} and --to {to} are the same setting ({settings[frm].label}): nothing to repair"
            + ("; the reference already has the best mean" if frm == analysis.ref else "")
        )
    if classes:
        for c in classes:
            if c not in names:
                raise RepairError(
                    f"--classes: '{c}' is not a class of {sweep}."
                    + did_you_mean(c, names)
                    + f" Classes: {', '.join(names)}"
                )
        chosen = list(dict.fromkeys(classes))
    else:
        comp = compare_settings(settings[dst], settings[frm], "", options)
        if comp.exploratory:
            raise RepairError(
                f"{settings[frm].label} against {settings[dst].label} is not tested ({comp.reason}): name the "
                "classes to repair with --classes, or finish the sweep (`classreg sweep resume`)"
            )
        chosen = [names[c] for c in range(len(names)) if comp.significant[c] and comp.delta[c] < 0]
        if not chosen:
            raise RepairError(
                f"{settings[frm].label} significantly lowers no class against {settings[dst].label} "
                f"(FDR {options.fdr:g}, test {options.test}): nothing to repair; name classes with --classes"
            )
    diff = _differences(settings[frm].runs[0].config, settings[dst].runs[0].config)
    patch = {
        k[len("aug.") :]: _plain(v[1])
        for k, v in diff.items()
        if k.startswith("aug.") and not k.startswith("aug.class_overrides.")
    }
    kept = {k: v for k, v in diff.items() if not k.startswith("aug.")}
    if not patch:
        raise RepairError(
            f"{settings[frm].label} and {settings[dst].label} differ only outside `aug` ({', '.join(kept)}): only "
            "augmentation can differ per class, so there is no class-conditional repair of these settings"
        )
    spec = load_spec(sweep / "spec.yaml")
    meta = json.loads((sweep / "sweep.json").read_text())
    original = Path(meta.get("spec", ""))
    base = resolve_base(spec, original if original.is_file() else sweep / "spec.yaml")
    params = _point_params(settings[frm].runs[0].path)
    product = {k: [v] for k, v in params.items() if k != "seed"}
    if "seed" in params and not spec.seeds:
        product["seed"] = list(spec.axes.product.get("seed") or spec.axes.zip.get("seed") or [params["seed"]])
    for name in chosen:
        for key, value in patch.items():
            product[class_key(name, key)] = [value]
    repair_spec = {
        "name": f"{spec.name}-repair",
        "base": str(base),
        "overrides": list(spec.overrides),
        "axes": {"product": product, "zip": {}},
        "seeds": list(spec.seeds),
        "resources": dataclasses.asdict(spec.resources),
        "estimate": dataclasses.asdict(spec.estimate),
    }
    out = Path(out_dir).resolve() if out_dir else sweep.parent / f"{sweep.name}-repair"
    return RepairPlan(
        sweep,
        repair_spec,
        out,
        chosen,
        settings[frm].label,
        settings[dst].label,
        [str(r.path) for r in settings[frm].runs],
        [str(r.path) for r in settings[dst].runs],
        patch,
        kept,
        "local" if local else _executor(sweep),
    )


def describe(plan: RepairPlan) -> list[str]:
    keys = ", ".join(f"aug.{k}={v}" for k, v in plan.patch.items())
    lines = [
        f"repair of {plan.source}: {len(plan.classes)} class(es) of {plan.from_label} get the augmentation of "
        f"{plan.to_label} ({keys}): {', '.join(plan.classes)}"
    ]
    for k, (kept, other) in plan.kept.items():
        lines.append(
            f"note: {k} is {kept} in {plan.from_label} and {other} in {plan.to_label}; a class cannot get its own "
            f"{k} (only aug keys differ per class), so the repair keeps {kept}"
        )
    return lines


def _check_existing(plan: RepairPlan) -> None:
    old = plan.out_dir / REPAIR_FILE
    if not old.is_file():
        return
    try:
        recorded = json.loads(old.read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != plan.record():
        raise RepairError(
            f"{plan.out_dir} holds another repair ({old}); give another --dir, or `classreg sweep resume "
            f"{plan.out_dir}` to continue that one"
        )


def prepare_repair(plan: RepairPlan, spec_path: Path):
    """The repair sweep planned from its spec, each point checked to be the ``--from`` setting plus the class
    overrides (a base preset edited since the source sweep ran would change more)."""
    from launch.report.runs import BOOKKEEPING_KEYS, flatten
    from launch.sweep.folder import prepare

    ignored = tuple(k.rstrip("*") for k in BOOKKEEPING_KEYS if k.endswith("*")) + ("aug.class_overrides.",)

    def compared(config: dict) -> dict:  # what trains: the report's bookkeeping keys and class overrides left out
        return {k: v for k, v in flatten(config).items() if k not in BOOKKEEPING_KEYS and not k.startswith(ignored)}

    atomic_write_text(spec_path, dump_yaml(plan.spec))
    prepared = prepare(spec_path, plan.out_dir)
    source = compared(yaml.safe_load((Path(plan.from_runs[0]) / "config.yaml").read_text()))
    for point in prepared.points:
        repaired = compared(point.plain)
        changed = sorted(_differences(source, repaired))
        if changed:
            raise RepairError(
                f"the repair of {plan.source} would differ from {plan.from_label} in more than the class overrides: "
                f"{', '.join(changed)} (was its base preset edited since the sweep ran?); restore it, or run the "
                "repaired setting as a sweep of your own"
            )
    return prepared


def write_repair(plan: RepairPlan):
    """The repair sweep's folder and its repair.json: (sweep, points new, points in all); nothing is run."""
    _check_existing(plan)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    sweep, new, total = prepare_repair(plan, plan.out_dir / "spec.yaml").write()
    atomic_write_text(plan.out_dir / REPAIR_FILE, json.dumps(plan.record(), indent=1))
    return sweep, new, total


def run_repair(plan: RepairPlan, dry_run: bool = False, jobs: int = 1) -> int:
    """Write the repair sweep and submit it (SLURM) or run it here, as `classreg sweep submit|run` do."""
    from launch.sweep.cli import _submit_and_report
    from launch.sweep.local import LocalExecutor
    from launch.sweep.submit import array_limit

    for line in describe(plan):
        print(line)
    _check_existing(plan)
    with tempfile.TemporaryDirectory() as tmp:  # every point validated before anything is written
        prepared = prepare_repair(plan, Path(tmp) / "spec.yaml")
        if dry_run:
            print(dump_yaml(plan.spec), end="")
            how = "submitted as SLURM job arrays" if plan.executor == "slurm" else f"run here, {jobs} at a time"
            print(f"dry run: would write {plan.out_dir} with {len(prepared.points)} points, {how}; nothing written")
            return 0
    limit = array_limit() if plan.executor == "slurm" else None  # SLURM answers before anything is written
    sweep, new, total = write_repair(plan)
    print(
        f"sweep {sweep.name} in {sweep.dir}: {total} points ({new} new); "
        f"report: `classreg report {plan.source} {sweep.dir}`"
    )
    if plan.executor == "slurm":
        return _submit_and_report(sweep, False, max_array_size=limit)
    counts = LocalExecutor(sweep, jobs=jobs).run()
    print("local run finished: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing to run"))
    return 0 if not counts.get("failed") else 1


def cmd_repair(args) -> int:
    plan = plan_repair(args.path, args.classes or [], args.from_, args.to, args.dir, args.local)
    return run_repair(plan, args.dry_run, args.jobs)


def add_repair_parser(sub) -> None:
    p = sub.add_parser(
        "repair",
        help="class-conditional augmentation for the classes a setting hurts, as a sweep (Kirichenko et al. 2023)",
    )
    p.add_argument("path", help="a sweep folder, or the report folder of one")
    p.add_argument(
        "--classes", nargs="+", metavar="NAME", help="the classes to repair (default: those significantly lowered)"
    )
    p.add_argument(
        "--from",
        dest="from_",
        metavar="SETTING",
        default="best",
        help="best (default), reference, key=value[,key=value], or a setting's label as the report prints it",
    )
    p.add_argument(
        "--to",
        metavar="SETTING",
        default="reference",
        help="reference (default), key=value[,key=value] or a label: the augmentation given back",
    )
    p.add_argument("--dir", default=None, help="the repair sweep's folder (default: SWEEP-repair next to the sweep)")
    p.add_argument("--dry-run", action="store_true", help="print the spec and what would run; write nothing")
    p.add_argument("--local", action="store_true", help="run the points here (default: the source sweep's executor)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="with --local: points at once (default 1)")
    p.set_defaults(func=cmd_repair)
