"""Find run folders, read their config and per-class results, and tell their settings apart.

A run folder holds ``config.yaml`` (written when `classreg fit` starts, or by `classreg sweep submit` for a
point not run yet); after its first validation ``per_class.csv`` (every validation), and at the end of a fit
whose model selection used a separate validation split, ``per_class_test.csv`` (the final model on the test
split). A *setting* is the tuple of config values at the dotted keys that differ between runs, leaving out
the seed (seeds are the replicates) and the bookkeeping keys below.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
from omegaconf import OmegaConf

from datamodules.configkit import ConfigError, read_yaml_file
from launch.config import run_key_facts
from launch.report.errors import ReportError  # noqa: F401  (raised here, importable from here)
from launch.report.finished import RunState
from lightning_modules.metrics.results_files import read_per_class_table

SEED_KEY = "seed"
# Keys that provably change neither what a run trains on nor how, nor which results it writes: never a
# setting. Each with the reason. Every other key is a setting, among them (once bookkeeping here):
#   data.backend: torchvision's and DALI's augmentations are not shown to draw from the same distribution;
#   data.num_workers: ShardStream splits the shards and seeds the shuffle buffer per (rank, worker), so
#     another count gives another order and other batches;
#   trainer.devices, trainer.num_nodes: the world size sets the global batch (and the lr, with linear
#     scaling) and splits the data per rank;
#   trainer.accelerator: CPU runs fall back to 32-bit precision; other kernels;
#   trainer.check_val_every_n_epoch: which epoch the last per_class.csv rows come from, and every validation
#     draws from the global RNG that seeds the next training loader's workers.
# data.root is compared by content instead (``data_identity``): two folders holding the same shards
# (every shard's sha256, the class names) are one setting; otherwise, or when a manifest cannot be read, the
# paths are compared.
BOOKKEEPING_KEYS = {
    "name": "names the run folder and the W&B run; nothing that trains reads it",
    "out_dir": "the folder that holds the run folder",
    "trainer.progress_bar": "display only",
    "trainer.log_every_n_steps": "how often scalars are logged; nothing that trains reads it",
    "logger.*": "where and whether W&B logs go (project, entity, group, mode)",
    "metrics.confusion_matrix": "writes one more file after each validation; the counts are the same",
    "metrics.worst_fraction": "one summary number of metrics.json; per_class.csv is the same",
    "data.max_pixels": "a run reads every image under the limit or stops: it never trains on fewer images",
}
WEAK_WORDS = {"none", "off", "false", "", "null", "identity"}
RESULTS = {"validation": "per_class.csv", "test": "per_class_test.csv"}
COLUMNS = ["class_index", "class_name", "correct", "total"]
REAL_COLUMNS = ["real_correct", "real_total"]


@dataclass
class Run:
    path: Path
    config: dict  # flattened: dotted key -> value
    state: RunState
    per_class: Optional[pd.DataFrame] = None  # COLUMNS (+ REAL_COLUMNS when ReaL was on) of the report's split
    epoch: Optional[int] = None  # the epoch of those results

    @property
    def seed(self):
        return self.config.get(SEED_KEY)

    @property
    def has_real(self) -> bool:
        return self.per_class is not None and set(REAL_COLUMNS) <= set(self.per_class.columns)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders with results (config.yaml and per_class.csv), given directly or found under the folders."""
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


def _load_tree(path: Path):
    return OmegaConf.to_container(read_yaml_file(path, "run config"), resolve=False)


def read_run_folders(paths: list[str | Path]) -> list[tuple[Path, dict]]:
    """(folder, flattened config) of every run folder given or under the given folders, finished or not.

    A run folder holds a run's config.yaml (with ``data`` and ``trainer`` sections); other config.yaml files
    are not runs, unless a per_class.csv next to one says it should be (then it must parse)."""
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"'{p}' does not exist: give a sweep folder or run folders")
        found += [p] if (p / "config.yaml").is_file() else sorted(c.parent for c in p.rglob("config.yaml"))
    out, taken = [], set()
    for folder in sorted(dict.fromkeys(f.resolve() for f in found)):
        if any(parent in taken for parent in folder.parents):
            continue  # inside a run folder: W&B's own files/config.yaml, not a run
        cfg_path = folder / "config.yaml"
        try:
            tree = _load_tree(cfg_path)
        except Exception as e:
            if (folder / "per_class.csv").is_file():
                what = str(e) if isinstance(e, ConfigError) else f"cannot read {cfg_path}: {e}"
                raise ReportError(f"{what}, or leave the run out") from None
            continue
        if isinstance(tree, dict) and ({"data", "trainer"} <= set(tree) or (folder / "per_class.csv").is_file()):
            out.append((folder, flatten(tree)))
            taken.add(folder)
    if not out:
        raise ReportError(
            f"no run folders under {', '.join(map(str, paths))}: a run folder holds config.yaml and, after "
            "its first validation, per_class.csv (`classreg fit`, `classreg sweep submit`)"
        )
    return out


def flatten(tree, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = tuple(value) if isinstance(value, list) else value
    return out


def read_results(path: Path, split: str) -> tuple[pd.DataFrame, int]:
    """The last epoch's per-class counts of ``split`` (a repeated epoch: its last rows), and that epoch."""
    csv_path = path / RESULTS[split]
    try:
        table = read_per_class_table(csv_path)  # complete validation blocks only, the last one of each epoch
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise ReportError(f"{csv_path} is not a per-class results file of `classreg fit` ({e})") from None
    missing = {"epoch", *COLUMNS} - set(table.columns)
    if missing:
        raise ReportError(f"{csv_path} lacks the columns {sorted(missing)}; rewrite it with `classreg fit`")
    if table.empty:
        raise ReportError(f"{csv_path} has no rows yet: the run has not finished a validation")
    epoch = int(table["epoch"].max())
    last = table[table["epoch"] == epoch].drop_duplicates("class_index", keep="last").sort_values("class_index")
    with_real = set(REAL_COLUMNS) <= set(last.columns) and last[REAL_COLUMNS].notna().all().all()
    last = last[COLUMNS + (REAL_COLUMNS if with_real else [])].reset_index(drop=True)
    return last.astype({c: int for c in last.columns if c != "class_name"}), epoch


def data_identity(root) -> Optional[str]:
    """A fingerprint of a shard folder's content (every shard's sha256, the class names); None if unreadable."""
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text())
        classes = json.loads((Path(root) / "classes.json").read_text())
        shards = {split: [s["sha256"] for s in info["shards"]] for split, info in manifest["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return hashlib.sha256(json.dumps([shards, classes], sort_keys=True).encode()).hexdigest()


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
    # a class without an override (a repair sweep's key, in the other settings) is not a value to show
    shown = [(n, v) for k, n, v in zip(keys, names, values) if not (v is None and k.startswith("aug.class_overrides."))]
    return ", ".join(f"{n}={_fmt(v)}" for n, v in shown) or "no class overrides"


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
