from pathlib import Path

import pytest
from conftest import REPO

from launch.config import load_config

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_loads_and_validates(preset: Path):
    cfg = load_config(preset)
    assert cfg.name == preset.stem


SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("spec", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_shipped_sweep_spec_plans(spec: Path):
    from launch.sweep.spec import load_spec, resolve_points

    points = resolve_points(load_spec(spec), spec)
    assert len(points) == len({p.id for p in points}) > 1
    assert all(p.config.logger.group == load_spec(spec).name for p in points)
