"""Helpers shared by the sweep tests: tiny specs on the CIFAR shards, waiting, reading statuses."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

SMALL_RESNET = [  # a small ResNet on the 32 px test images, decoded in the training process
    "model.arch=resnet20",
    "data.image_size=32",
    "data.batch_size=32",
    "data.num_workers=0",
    "trainer.progress_bar=false",
]
TINY = [
    *SMALL_RESNET,
    "trainer.limit_val_batches=1",
    # A requeued task restarts while the killed one's W&B service may still hold the run id on this
    # one-machine cluster ("run ID in use"); W&B resume is tested in tests/test_wandb_offline.py.
    "logger.wandb=false",
]


def write_spec(
    path: Path,
    shards: Path,
    name: str,
    axes: dict,
    seeds=(),
    epochs: int = 1,
    extra: tuple[str, ...] = (),
    throttle: int = 2,
    resources: dict | None = None,
) -> Path:
    spec = {
        "name": name,
        "base": "configs/fashion_mnist_demo.yaml",
        "overrides": [f"data.root={shards}", f"trainer.max_epochs={epochs}", *TINY, *extra],
        "axes": axes,
        "seeds": list(seeds),
        "resources": {"cpus_per_task": 1, "mem": "500M", "time": "00:10:00", "throttle": throttle, **(resources or {})},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def statuses(sweep_dir: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((sweep_dir / "points").glob("*/status.json")):
        s = json.loads(f.read_text())
        out[s["id"]] = s
    return out


def wait_for(predicate, timeout: float, what: str, sweep_dir: Path | None = None, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    detail = ""
    if sweep_dir is not None:
        detail = "\n".join(f"{k}: {s['state']} {s.get('reason') or ''}" for k, s in statuses(sweep_dir).items())
        for log in sorted((sweep_dir / "logs").glob("*.out")) if (sweep_dir / "logs").is_dir() else []:
            detail += f"\n--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
        detail += "\n--- squeue\n" + subprocess.run(["squeue", "-r"], capture_output=True, text=True).stdout
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")


def assert_never_ran_twice(status: dict) -> None:
    """Between two 'running' entries there is an end (done/failed/cancelled) or it is the same job's requeue."""
    last_running = None
    for entry in status["history"]:
        if entry["state"] == "running":
            if last_running is not None:
                same_job = entry.get("job_id") and entry.get("job_id") == last_running.get("job_id")
                assert same_job and entry.get("restart_count", 0) > last_running.get("restart_count", 0), (
                    f"point {status['id']} ran twice at once: {status['history']}"
                )
            last_running = entry
        elif entry["state"] in ("done", "failed", "cancelled"):
            last_running = None
