"""Sweep spec (YAML in configs/sweeps/): a base config, axes, seeds and the SLURM resources of each point.

    name: wd_x_rrc                         # W&B group and SLURM job name
    base: configs/cifar10_resnet18.yaml    # relative to the current folder or the spec's folder, or a packaged preset
    overrides: [data.root=/data/cifar10-shards, trainer.max_epochs=100]   # every point
    axes:
      product: {wd.value: [0, 5.0e-5, 5.0e-4], aug.rrc.min_scale: [0.08, 0.5, 1.0]}   # every combination
      zip: {optim.lr: [0.1, 0.05], optim.warmup_epochs: [1, 2]}   # side by side (equal lengths), x product
    seeds: [0, 1, 2]                       # innermost axis over `seed`
    resources: {nodes: 1, tasks_per_node: 1, gpus_per_node: 1, cpus_per_task: 8, mem: 32G, time: "08:00:00"}
    estimate: {epoch_minutes: 1.5}         # wall-clock minutes per epoch of one point, for `sweep plan`

Every point's config is checked before anything is written or submitted: each distinct axis value is
merged into the base config by the same code as `classreg fit` overrides (unknown key, wrong type), and
each point's full config is validated (ranges, choices, cross-field checks) like `load_config` does.

Keys are OmegaConf key paths, as in `classreg fit` overrides: dotted names, and brackets for a name that holds
dots, slashes or spaces, e.g. a class-conditional setting ``aug.class_overrides[T-shirt/top].rrc.min_scale``
(or by class index, ``aug.class_overrides.0.rrc.min_scale``). Class names are checked against the shards'
classes.json here when ``data.root`` can be read, else when the point's fit starts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from datamodules.configkit import ClassregError, ConfigError, bounded, merge, setting, validate
from datamodules.shards.format import read_manifest
from launch import resources
from launch.config import RunConfig, canonical_key, key_parts, load_config
from launch.sweep.resources import Resources, check_resources
from lightning_modules.augment.config import class_index

# Set per point by the sweep itself (run folder) or by `resources` (Lightning: --nodes/--ntasks-per-node).
RESERVED_KEYS = {"name", "out_dir", "trainer.num_nodes", "trainer.devices", "trainer.requeue_signal"}


@dataclass
class Axes:
    product: dict[str, list[Any]] = setting(
        default_factory=dict, help="dotted config key -> list of values: every combination (the first varies slowest)"
    )
    zip: dict[str, list[Any]] = setting(
        default_factory=dict, help="dotted config key -> list of values; equal-length lists that vary together"
    )

    def validate(self) -> None:
        for group in ("product", "zip"):
            for key, values in getattr(self, group).items():
                if not values:
                    raise ConfigError(f"sweep axis '{key}' (axes.{group}) has no values; give at least one")
                key_parts(key)  # a key path, or a ConfigError saying how to write one
                if canonical_key(key) in RESERVED_KEYS:
                    raise ConfigError(
                        f"sweep axis '{key}' is set by the sweep itself; use resources.* instead"
                        if canonical_key(key).startswith("trainer.")
                        else f"sweep axis '{key}' is set by the sweep itself (each point's run folder)"
                    )
        spelled: dict[str, str] = {}
        for key in (*self.product, *self.zip):
            if canonical_key(key) in spelled:
                raise ConfigError(
                    f"sweep axes {spelled[canonical_key(key)]!r} and {key!r} are the same key "
                    "(in axes.product and axes.zip, or spelled twice); keep one"
                )
            spelled[canonical_key(key)] = key
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"axes.zip lists must have equal lengths, got {lengths}")


@dataclass
class Estimate:
    epoch_minutes: float = bounded(
        0.0, 0.0, help="wall-clock minutes per epoch of one point (`sweep plan`); 0: unknown"
    )


@dataclass
class SweepSpec:
    name: str = setting("", help="(required) letters, digits, `_.-`; names the SLURM jobs and the W&B group")
    base: str = setting("", help="(required) the config every point starts from (a path, or a packaged preset)")
    overrides: list[str] = setting(default_factory=list, help="`key.path=value` for every point")
    axes: Axes = field(default_factory=Axes)
    seeds: list[int] = setting(default_factory=list, help="values of `seed`, the innermost axis")
    resources: Resources = field(default_factory=Resources)
    estimate: Estimate = field(default_factory=Estimate)

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(
                f"sweep spec needs a 'name' of letters, digits, '_', '.', '-' (got {self.name!r}); "
                "it names the SLURM jobs and the W&B group"
            )
        if not self.base:
            raise ConfigError(
                "sweep spec needs 'base': the config every point starts from (e.g. configs/cifar10_resnet18.yaml)"
            )
        if self.seeds and "seed" in {canonical_key(k) for k in (*self.axes.product, *self.axes.zip)}:
            raise ConfigError("sweep spec sets both 'seeds' and an axis 'seed'; keep one")

    def param_lists(self) -> list[dict[str, Any]]:
        """Every point's axis values, in order: product axes (first varies slowest), then zip, then seeds."""
        product = list(itertools.product(*self.axes.product.values())) if self.axes.product else [()]
        zipped = list(zip(*self.axes.zip.values())) if self.axes.zip else [()]
        seeds = [(s,) for s in self.seeds] or [()]
        keys = [*self.axes.product, *self.axes.zip, *(["seed"] if self.seeds else [])]
        return [dict(zip(keys, p + z + s)) for p in product for z in zipped for s in seeds]

    @property
    def axis_keys(self) -> list[str]:
        return [*self.axes.product, *self.axes.zip, *(["seed"] if self.seeds else [])]


@dataclass
class Point:
    """One point of a sweep. Its config shares the sections that no axis varies with the other points': read it,
    never change it in place."""

    index: int
    id: str  # stable: a hash of the resolved config without name/out_dir
    params: dict[str, Any]
    config: RunConfig
    plain: dict = field(default_factory=dict, repr=False, compare=False)  # the config as plain containers


def locate_spec(name_or_path: str | Path) -> Path:
    """A sweep spec file, or the packaged spec of that name (`paper_grid`, `configs/sweeps/paper_grid.yaml`)."""
    found = resources.find_config(name_or_path, resources.SWEEPS)
    if found is None:
        raise ConfigError(
            f"sweep spec '{name_or_path}' does not exist (packaged specs, from configs/sweeps/: "
            f"{', '.join(resources.packaged(resources.SWEEPS))})"
        )
    return found


def load_spec(path: str | Path) -> SweepSpec:
    """The spec in the file ``path`` (`locate_spec` resolves a packaged name first)."""
    if not Path(path).is_file():
        locate_spec(path)  # the error, naming the packaged specs
    try:
        return load_config(path, schema=SweepSpec)
    except ConfigError as e:
        raise ConfigError(f"sweep spec {path}: {e}") from None


def resolve_base(spec: SweepSpec, spec_path: str | Path) -> Path:
    base = Path(spec.base)
    tried = [base] if base.is_absolute() else [Path.cwd() / base, Path(spec_path).resolve().parent / base]
    for p in tried:
        if p.is_file():
            return p.resolve()
    packaged = None if base.is_absolute() else resources.find_config(spec.base)
    if packaged is not None:
        return packaged.resolve()
    raise ConfigError(
        f"sweep spec {spec_path}: base config '{spec.base}' does not exist (looked in "
        + ", ".join(str(p.parent) for p in tried)
        + f", and among the packaged presets: {', '.join(resources.packaged())})"
    )


def _nested(parts: list[str], value: Any) -> dict:
    for part in reversed(parts):
        value = {part: value}
    return value


def _set_path(obj: Any, parts: list[str], value: Any) -> None:
    """Set ``value`` at ``parts`` in a config tree: dataclass fields, then (inside ``aug.class_overrides`` and
    ``aug.custom``) dicts, created where missing; a dict key matches by its text (class ``3`` is ``"3"``)."""
    for i, part in enumerate(parts):
        leaf = i == len(parts) - 1
        if dataclasses.is_dataclass(obj):
            if leaf:
                setattr(obj, part, copy.deepcopy(value))
            else:
                obj = getattr(obj, part)
            continue
        key = next((k for k in obj if str(k) == part), part)
        if leaf:
            obj[key] = copy.deepcopy(value)
        else:
            if not isinstance(obj.get(key), dict):
                obj[key] = {}
            obj = obj[key]


def _clone(obj: Any) -> Any:
    """A copy of a config dataclass tree (nested dataclasses and lists copied; ~10x faster than deepcopy)."""
    new = copy.copy(obj)
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            setattr(new, f.name, _clone(v))
        elif isinstance(v, (list, dict)):
            setattr(new, f.name, copy.deepcopy(v))
    return new


def _point_config(base: RunConfig, values: dict[tuple[str, ...], Any]) -> RunConfig:
    """``base`` with ``values`` (key parts -> typed value) set; the sections no value touches are ``base``'s own
    objects, shared between points (a point's config is read, never changed in place)."""
    cfg = copy.copy(base)
    for section in {parts[0] for parts in values}:
        value = getattr(base, section)
        if dataclasses.is_dataclass(value):
            setattr(cfg, section, _clone(value))
    for parts, v in values.items():
        _set_path(cfg, list(parts), v)
    return cfg


def plain_id(plain: dict) -> str:
    """The point id: a hash of the config as plain containers, without its name and out_dir."""
    d = {k: v for k, v in plain.items() if k not in ("name", "out_dir")}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_id(cfg: RunConfig) -> str:
    return plain_id(dataclasses.asdict(cfg))


def _axis_value(base_omega, parts: list[str], value: Any, source: str) -> Any:
    """``value`` at ``parts`` merged into its section of the base config, typed as `fit` overrides are (a merge
    into the section alone, which keeps its place in the config for messages, takes a fraction of the time)."""
    node, rest = (base_omega[parts[0]], parts[1:]) if len(parts) > 1 else (base_omega, parts)
    merged = merge(node, OmegaConf.create(_nested(rest, value)), source, RunConfig)
    for part in rest:
        merged = merged[part]
    return OmegaConf.to_container(merged) if OmegaConf.is_config(merged) else merged


def _shard_classes(root: str) -> Optional[list[str]]:
    """The class names of the shards at ``root``, or None when they cannot be read here (checked at fit start)."""
    if not root:
        return None
    try:
        return read_manifest(root)[1]
    except (ClassregError, OSError, ValueError, KeyError):
        return None


def _check_class_names(points: list[Point], where: str) -> None:
    """Every aug.class_overrides key names a class of the points' shards, when those can be read here."""
    checked: dict[tuple[str, tuple[str, ...]], None] = {}
    for p in points:
        keys = tuple(map(str, p.config.aug.class_overrides))
        if not keys or (p.config.data.root, keys) in checked:
            continue
        checked[p.config.data.root, keys] = None
        names = _shard_classes(p.config.data.root)
        if names is None:
            continue
        seen: dict[int, str] = {}
        for key in keys:
            try:
                index = class_index(key, names)
            except ConfigError as e:
                raise ConfigError(
                    f"{where}: point {p.index} ({_fmt(p.params)}): {e} (classes of {p.config.data.root}; a name with "
                    "dots, slashes or spaces is written aug.class_overrides[T-shirt/top].<key>)"
                ) from None
            if index in seen:
                raise ConfigError(
                    f"{where}: point {p.index}: aug.class_overrides names class {index} ('{names[index]}') twice "
                    f"('{seen[index]}' and '{key}'); keep one"
                )
            seen[index] = key


def resolve_points(spec: SweepSpec, spec_path: str | Path, out_dir: str | Path = "points") -> list[Point]:
    """Every point with its validated config (run folder ``out_dir/<id>``); ConfigError names the point."""
    base_path = resolve_base(spec, spec_path)
    r = spec.resources
    common = [
        *spec.overrides,
        f"trainer.num_nodes={r.nodes}",
        f"trainer.devices={r.tasks_per_node}",
        f"trainer.requeue_signal={r.requeue_signal}",
    ]
    try:
        base = load_config(base_path, common)
    except ConfigError as e:
        raise ConfigError(f"sweep spec {spec_path}: base config {base_path} with the spec's overrides: {e}") from None
    base_omega = OmegaConf.structured(base)
    parts_of = {key: tuple(key_parts(key)) for key in spec.axis_keys}
    typed: dict[tuple[str, str], Any] = {}  # each distinct axis value, merged and type-checked once
    for group in ("product", "zip"):
        for key, values in getattr(spec.axes, group).items():
            for v in values:
                typed[key, repr(v)] = _axis_value(
                    base_omega, list(parts_of[key]), v, f"sweep spec {spec_path}, axes.{group}.{key}"
                )
    for s in spec.seeds:
        typed["seed", repr(s)] = s
    logger = dataclasses.replace(base.logger, group=base.logger.group or spec.name)
    base_plain = dataclasses.asdict(base)
    logger_plain = dataclasses.asdict(logger)
    points, seen = [], {}
    for i, params in enumerate(spec.param_lists()):
        values = {parts_of[k]: typed[k, repr(v)] for k, v in params.items()}
        cfg = _point_config(base, values)
        try:
            validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"sweep spec {spec_path}: point {i} ({_fmt(params)}): {e}") from None
        plain = dict(base_plain)  # the sections no axis touches are the base's
        for section in {parts[0] for parts in values}:
            value = getattr(cfg, section)
            plain[section] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        pid = plain_id(plain)
        if pid in seen:
            raise ConfigError(
                f"sweep spec {spec_path}: points {seen[pid]} and {i} ({_fmt(params)}) have the same "
                "config; remove the duplicate axis value"
            )
        seen[pid] = i
        # The W&B group is the sweep; the run id follows from (group, name), so a resumed point continues its run.
        cfg.out_dir, cfg.name = str(out_dir), pid
        plain.update(out_dir=cfg.out_dir, name=pid)
        if cfg.logger is base.logger:  # no axis touches it: every point shares the one with the group set
            cfg.logger, plain["logger"] = logger, logger_plain
        else:
            cfg.logger.group = cfg.logger.group or spec.name
            plain["logger"] = dataclasses.asdict(cfg.logger)
        points.append(Point(i, pid, params, cfg, plain))
    check_resources(spec, spec_path, base_path, points)  # before anything is written or queued
    _check_class_names(points, f"sweep spec {spec_path}")
    return points


def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
