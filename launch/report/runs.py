"""Find run folders, read their last per-class results, and group them into regularization settings.

A run folder holds ``config.yaml`` and ``per_class.csv``. A *setting* is the tuple of config values at the
dotted keys that differ between runs, leaving out the seed (seeds are the replicates) and bookkeeping keys.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from datamodules.configkit import ConfigError, read_yaml_file
from launch.config import run_key_facts
from launch.report.errors import ReportError  # noqa: F401  (raised here, importable from here)

SEED_KEY = "seed"
# Keys that name, place or display a run, or only change how fast it runs: never a regularization setting.
BOOKKEEPING_KEYS = (
    "name",
    "out_dir",
    "data.root",
    "data.num_workers",
    "data.backend",
    "trainer.progress_bar",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "wandb.*",
    "slurm.*",
    "sweep.*",
    "executor.*",
    "launcher.*",
)
WEAK_WORDS = {"none", "off", "false", "", "null", "identity"}


@dataclass
class Run:
    path: Path
    config: dict  # flattened: dotted key -> value
    per_class: pd.DataFrame  # class_index, class_name, correct, total, accuracy of the last epoch
    epoch: int

    @property
    def seed(self):
        return self.config.get(SEED_KEY)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders given directly, or found (recursively) under the given folders, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"'{p}' does not exist: give a sweep folder or run folders")
        if (p / "config.yaml").is_file() and (p / "per_class.csv").is_file():
            found.append(p)
            continue
        found += sorted(c.parent for c in p.rglob("per_class.csv") if (c.parent / "config.yaml").is_file())
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if not unique:
        raise ReportError(
            f"no run folders under {', '.join(map(str, paths))}: a run folder holds config.yaml and "
            "per_class.csv (written by `classreg fit` after its first validation)"
        )
    return unique


def unfinished_runs(paths: list[str | Path]) -> list[Path]:
    """Folders holding a run config (written when `classreg fit` starts) but no per_class.csv yet."""
    pending = []
    for p in map(Path, paths):
        for cfg in sorted(p.rglob("config.yaml")) if p.is_dir() else []:
            if (cfg.parent / "per_class.csv").is_file():
                continue
            try:
                tree = OmegaConf.to_container(OmegaConf.load(cfg))
            except Exception:
                continue
            if isinstance(tree, dict) and {"data", "trainer"} <= set(tree):
                pending.append(cfg.parent)
    return pending


def flatten(tree, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = tuple(value) if isinstance(value, list) else value
    return out


def read_run(path: Path) -> Run:
    cfg_path, csv_path = path / "config.yaml", path / "per_class.csv"
    try:
        config = flatten(OmegaConf.to_container(read_yaml_file(cfg_path, "run config"), resolve=False))
    except ConfigError as e:
        raise ReportError(f"{e}, or leave the run out") from None
    table = pd.read_csv(csv_path)
    missing = {"epoch", "class_index", "class_name", "correct", "total"} - set(table.columns)
    if missing:
        raise ReportError(f"{csv_path} lacks the columns {sorted(missing)}; rewrite it with `classreg fit`")
    if table.empty:
        raise ReportError(f"{csv_path} has no rows yet: the run has not finished a validation")
    epoch = int(table["epoch"].max())
    last = table[table["epoch"] == epoch].sort_values("class_index").reset_index(drop=True)
    last = last[["class_index", "class_name", "correct", "total"]].astype({"correct": int, "total": int})
    last["accuracy"] = last["correct"] / last["total"].where(last["total"] > 0)
    return Run(path, config, last, epoch)


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in patterns)


def varying_keys(runs: list[Run], ignore: tuple[str, ...] = ()) -> list[str]:
    keys = sorted(set().union(*(r.config for r in runs)))
    skip = (SEED_KEY, *BOOKKEEPING_KEYS, *ignore)
    return [k for k in keys if not _matches(k, skip) and len({repr(r.config.get(k)) for r in runs}) > 1]


def setting_label(keys: list[str], values: tuple) -> str:
    if not keys:
        return "all runs"
    # The last two parts of each key ("wd.value", "rrc.min_scale"): short, and a leaf alone can be vague.
    short = [".".join(k.split(".")[-2:]) for k in keys]
    names = short if len(set(short)) == len(short) else keys
    return ", ".join(f"{n}={_fmt(v)}" for n, v in zip(names, values))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def strength_rank(key: str, values: list) -> dict:
    """0 for the weakest value of ``key`` to 1 for the strongest.

    Numbers: the config field's ``weaker`` fact says which end regularizes less (``aug.rrc.min_scale``: the
    largest, a crop keeping more of the image); without one, the smallest. Other values: WEAK_WORDS first."""
    distinct = sorted(set(values), key=repr)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        facts = run_key_facts(key) or {}
        ordered = sorted(distinct, reverse=facts.get("weaker") == "high")
    else:
        ordered = sorted(distinct, key=lambda v: (str(v).lower() not in WEAK_WORDS and v is not False, repr(v)))
    return {v: (i / (len(ordered) - 1) if len(ordered) > 1 else 0.0) for i, v in enumerate(ordered)}


def strength_order(keys: list[str], settings: list[tuple]) -> list[float]:
    """Overall regularization strength of each setting: the sum over keys of its value's rank in [0, 1]."""
    ranks = [strength_rank(k, [s[i] for s in settings]) for i, k in enumerate(keys)]
    return [sum(r[s[i]] for i, r in enumerate(ranks)) for s in settings]


def numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_selector(text: str, keys: list[str], settings: list[tuple], option: str) -> int:
    """The index of the one setting matching ``key=value[,key=value]`` (keys may be given by their last part)."""
    wanted = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ReportError(f"{option} '{text}': write key=value pairs, e.g. {option} wd.value=0")
        k, v = (s.strip() for s in part.split("=", 1))
        full = [key for key in keys if key == k or key.endswith("." + k)]
        if len(full) != 1:
            raise ReportError(f"{option} '{text}': '{k}' is not one of the keys that vary: {', '.join(keys)}")
        wanted[keys.index(full[0])] = _coerce(v)
    hits = [i for i, s in enumerate(settings) if all(_same(s[i_key], v) for i_key, v in wanted.items())]
    if len(hits) != 1:
        listing = "; ".join(setting_label(keys, s) for s in settings)
        what = "matches no setting" if not hits else f"matches {len(hits)} settings"
        raise ReportError(f"{option} '{text}' {what}. The settings are: {listing}")
    return hits[0]


def _coerce(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _same(a, b) -> bool:
    if numeric(a) and numeric(b):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)
