"""`classreg demo` end to end on the real Fashion-MNIST files, with tiny runs."""

import json

import pytest

from launch.cli import main


@pytest.mark.slow
def test_demo_shards_runs_the_sweep_here_and_reports(tmp_path, capsys):
    tiny = [
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=4",
        "logger.wandb=false",
    ]
    assert main(["demo", "--workdir", str(tmp_path), "-j", "2", *tiny]) == 0
    out = capsys.readouterr().out
    shards = tmp_path / "shards" / "fashion-mnist-50-per-class"
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["train_per_class"] == 50 and manifest["splits"]["train"]["drawn_from"] == 60000
    assert manifest["splits"]["train"]["samples"] == 500 and manifest["splits"]["test"]["samples"] == 10000

    points = sorted((tmp_path / "sweep" / "points").iterdir())
    assert len(points) == 8  # (no augmentation, pad-crop + flip) x 4 seeds
    settings = set()
    for p in points:
        status = json.loads((p / "status.json").read_text())
        assert status["state"] == "done"
        assert [h["state"] for h in status["history"]].count("running") == 1
        cfg = (p / "config.yaml").read_text()
        assert str(shards.resolve()) in cfg  # the demo's own shards
        settings.add((status["params"]["aug.pad_crop.padding"], status["params"]["aug.flip.p"], status["params"]["seed"]))
        rows = (p / "per_class.csv").read_text().splitlines()
        assert len(rows) == 1 + 10  # one validation, ten classes
    assert settings == {(pad, p, seed) for pad, p in [(0, 0.0), (2, 0.5)] for seed in range(4)}

    assert (tmp_path / "report" / "report.html").is_file()
    assert "report: " in out and "demo finished in" in out
    assert "raises mean accuracy" in out or "already has the best mean accuracy" in out

    # a second demo reuses the shards and the finished sweep: nothing is trained again
    assert main(["demo", "--workdir", str(tmp_path), "-j", "2", *tiny]) == 0
    assert "using the Fashion-MNIST shards" in capsys.readouterr().out
    for p in points:
        history = json.loads((p / "status.json").read_text())["history"]
        assert [h["state"] for h in history].count("running") == 1
