"""W&B offline-first: a real fit logs to an offline run; wandb's own reader (`wandb leet inspect`) reads it back."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch.cli import main
from lightning_modules.wandb_logging import resolve_mode, run_id

SECRET = "local-0123456789abcdef0123456789abcdef01234567"


def read_records(wandb_file: Path) -> list[dict]:
    """Every record of a run's .wandb transaction log, decoded by wandb's own inspector."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def fit(shards, tmp_path, *extra):
    return main(
        [
            "fit",
            "-c",
            "configs/fashion_mnist_demo.yaml",
            f"data.root={shards}",
            f"out_dir={tmp_path}",
            "name=wd5e-4",
            "logger.group=sweep-a",
            "data.image_size=32",
            "data.batch_size=16",
            "data.num_workers=0",
            "model.arch=resnet20",
            "trainer.limit_train_batches=2",
            "trainer.progress_bar=false",
            *extra,
        ]
    )


@pytest.mark.slow
def test_offline_run_has_scalars_histogram_table_artifact_and_resumes(cifar_shards, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert fit(cifar_shards, tmp_path, "trainer.max_epochs=2") == 0
    run = tmp_path / "wd5e-4"
    expected_id = run_id("sweep-a", "wd5e-4")
    [wandb_file] = offline_runs(run)
    assert f"wandb sync {wandb_file.parent}" in capsys.readouterr().out

    records = read_records(wandb_file)
    by_type = {}
    for r in records:
        by_type.setdefault(r["type"], []).append(r[r["type"]])
    [run_record] = by_type["run"]
    assert run_record["run_id"] == expected_id and run_record["run_group"] == "sweep-a"
    assert run_record["display_name"] == "wd5e-4" and run_record["resume"] is True
    config = {k: v for c in by_type["config"] for k, v in c["update"].items()}
    assert config["config"]["logger"]["group"] == "sweep-a" and config["config"]["model"]["arch"] == "resnet20"

    history = [h["item"] for h in by_type["history"]]
    scalars = [h for h in history if "val/acc" in h]
    assert len(scalars) == 2  # one per validation
    for key in (
        "val/mean_class_acc",
        "val/worst_class_acc",
        "val/worst_fraction_mean_class_acc",
        "val/class_acc_std",
        "val/top5_acc",
    ):
        assert all(key in h for h in scalars), key
    tables = [h for h in history if h.get("val/per_class._type") == "table-file"]
    assert len(tables) == 2 and all(h["val/class_acc_hist._type"] == "histogram" for h in tables)
    assert all(sum(h["val/class_acc_hist.values"]) == 10 for h in tables)  # one entry per class

    rows = [r for r in csv.DictReader(open(run / "per_class.csv")) if r["epoch"] == "1"]
    last = tables[-1]
    assert last["val/per_class.nrows"] == 10
    table = json.loads((wandb_file.parent / "files" / last["val/per_class.path"]).read_text())
    assert table["columns"][:5] == ["class_index", "class_name", "correct", "total", "accuracy"]
    assert [(d[1], d[2], d[3]) for d in table["data"]] == [
        (r["class_name"], int(r["correct"]), int(r["total"])) for r in rows
    ]

    summary = {}
    for s in by_type["summary"]:
        summary.update(s["update"])
    metrics = json.loads((run / "metrics.json").read_text())["last"]
    assert summary["val/acc"] == pytest.approx(metrics["accuracy"])
    assert summary["val/worst_class_acc"] == pytest.approx(metrics["worst_class_accuracy"])
    [artifact] = [a for a in by_type["artifact"] if a["type"] == "per_class_results"]
    assert artifact["name"] == f"per_class-{expected_id}"
    assert {c["path"] for c in artifact["manifest"]["contents"]} == {"per_class.csv", "metrics.json"}

    # The same grid point again, now in auto mode with an API key set but no reachable server: it goes offline
    # by itself, continues the same run id, and the key is written nowhere.
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert fit(cifar_shards, tmp_path, "trainer.max_epochs=1") == 0
    runs = offline_runs(run)
    assert len(runs) == 2
    resumed = [r["run"] for r in read_records(runs[1]) if r["type"] == "run"]
    assert [r["run_id"] for r in resumed] == [expected_id]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_run_id_is_deterministic_per_grid_point():
    assert run_id("sweep", "wd1e-4_seed0") == run_id("sweep", "wd1e-4_seed0")
    assert run_id("sweep", "wd1e-4_seed0") != run_id("sweep", "wd1e-4_seed1") != run_id("other", "wd1e-4_seed1")
    assert run_id("s", "a/b c").startswith("a-b-c-")


def test_auto_mode_goes_offline_without_key_or_server(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("auto") == ("offline", "no W&B API key (WANDB_API_KEY or ~/.netrc)")
    (tmp_path / "netrc").write_text(f"machine 127.0.0.1\n  login user\n  password {SECRET}\n")
    (tmp_path / "netrc").chmod(0o600)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    mode, why = resolve_mode("auto")
    assert mode == "offline" and "not reachable" in why and SECRET not in why
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode("auto")[0] == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto")[0] == "disabled"
    assert resolve_mode("offline")[0] == "offline"


def test_bad_logger_and_metrics_keys_are_named():
    from datamodules.configkit import ConfigError
    from launch.config import load_config

    with pytest.raises(ConfigError, match="logger.mode.*'cloud'.*auto, online, offline"):
        load_config(overrides=["logger.mode=cloud"])
    with pytest.raises(ConfigError, match="metrics.worst_fraction"):
        load_config(overrides=["metrics.worst_fraction=0"])
    cfg = load_config(overrides=["logger.wandb=false", "metrics.real_labels=imagenet-x"])
    assert cfg.logger.wandb is False and cfg.metrics.real_labels == "imagenet-x"
