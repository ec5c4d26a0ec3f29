"""The files classreg ships inside its `launch` package: the presets, the sweep specs, the job-array template.

In a source checkout they are the repository's own `configs/` and `slurm/sweep_array.sbatch`, reached through
the symlinks `launch/configs` and `launch/sweep/sweep_array.sbatch`; a wheel holds copies of them
(docs/development.md). A packaged config is named like its path in the repository, `configs/` and `.yaml`
optional: `cifar10_resnet18`, `sweeps/paper_grid` (or `paper_grid` where a sweep spec is expected).
"""

from __future__ import annotations

import re
import sys
from importlib.resources import files
from pathlib import Path

from datamodules.configkit import ConfigError, did_you_mean

PRESETS, SWEEPS, TRANSFER = "", "sweeps", "transfer"  # folders of configs/
_KIND = {PRESETS: "preset", SWEEPS: "sweep spec", TRANSFER: "downstream config"}


def _on_disk(resource) -> Path:
    # pip installs packages as folders, so importlib.resources hands out real paths (setup.cfg: zip_safe = False)
    if not isinstance(resource, Path):
        raise RuntimeError(f"classreg's packaged files must be on disk, got {resource!r}")
    return resource


def configs_dir() -> Path:
    return _on_disk(files("launch") / "configs")


def sbatch_template() -> Path:
    return _on_disk(files("launch.sweep") / "sweep_array.sbatch")


def source_checkout() -> Path | None:
    """The repository holding the imported `launch` package when it is a source checkout (not an installed wheel)."""
    root = Path(sys.modules["launch"].__file__).resolve().parent.parent
    return root if (root / "setup.cfg").is_file() and (root / "launch" / "configs").is_symlink() else None


def packaged(folder: str = PRESETS) -> dict[str, Path]:
    """``{name: path}`` of the packaged configs in ``configs/<folder>``."""
    return {p.stem: p for p in sorted((configs_dir() / folder).glob("*.yaml"))}


def _packaged_path(name: str, folder: str) -> Path | None:
    rel = Path(name.removeprefix("configs/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    rel = rel if rel.suffix in (".yaml", ".yml") else rel.with_name(rel.name + ".yaml")
    for candidate in (configs_dir() / rel, configs_dir() / folder / rel):
        if candidate.is_file():
            return candidate
    return None


def find_config(name_or_path: str | Path, folder: str = PRESETS) -> Path | None:
    """An existing file ``name_or_path`` (relative to the current folder), else the packaged config of that
    name, else None."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    return _packaged_path(str(name_or_path), folder)


def resolve_config(name_or_path: str | Path, folder: str = PRESETS) -> Path:
    """`find_config`, or a ConfigError naming what was asked for and the packaged configs of that kind."""
    found = find_config(name_or_path, folder)
    if found is not None:
        return found
    kind, names = _KIND[folder], list(packaged(folder))
    raise ConfigError(
        f"{kind} '{name_or_path}' does not exist: it is neither a file nor a packaged {kind}."
        + did_you_mean(Path(str(name_or_path)).stem, names)
        + f" Packaged {kind}s (`classreg presets`): {', '.join(names)}"
    )


def summary(path: Path, width: int = 90) -> str:
    """The first sentence of a packaged config's leading comment, cut at ``width`` characters."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= width else sentence[: width - 3].rstrip() + "..."
