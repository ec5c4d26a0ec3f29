from pathlib import Path

import pytest

from launch.config import load_config

from conftest import REPO

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_loads_and_validates(preset: Path):
    cfg = load_config(preset)
    assert cfg.name == preset.stem
