"""Sweep specs, plans, sweep folders, status files and claims (no training, no SLURM needed)."""

import json
import multiprocessing
import subprocess
import sys

import pytest
import yaml
from sweep_helpers import write_spec

from launch.cli import main
from launch.config import load_config
from launch.sweep.folder import materialise
from launch.sweep.spec import load_spec, resolve_points
from launch.sweep.status import claim, local_owner, read_status, transition


def _spec(tmp_path, **changes):
    spec = {
        "name": "grid",
        "base": "configs/cifar10_resnet18.yaml",
        "overrides": ["trainer.max_epochs=4"],
        "axes": {
            "product": {"optim.lr": [0.1, 0.05, 0.02], "optim.label_smoothing": [0.0, 0.1]},
            "zip": {"optim.warmup_epochs": [0, 1], "optim.momentum": [0.9, 0.8]},
        },
        "seeds": [0, 1],
        "resources": {"gpus_per_node": 4, "tasks_per_node": 4, "nodes": 2},
    }
    for key, value in changes.items():
        node = spec
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _plan_error(path, capsys) -> str:
    assert main(["sweep", "plan", str(path)]) == 2
    return capsys.readouterr().err


def test_bad_specs_fail_at_plan_with_clear_messages(tmp_path, capsys):
    err = _plan_error(_spec(tmp_path, axes={"product": {"optim.lrr": [0.1]}}), capsys)
    assert "unknown config key 'optim.lrr'" in err and "axes.product.optim.lrr" in err and "'optim.lr'" in err
    err = _plan_error(_spec(tmp_path, axes={"product": {"optim.lr": []}}), capsys)
    assert "sweep axis 'optim.lr' (axes.product) has no values" in err
    err = _plan_error(_spec(tmp_path, base="configs/no_such.yaml"), capsys)
    assert "base config 'configs/no_such.yaml' does not exist" in err
    err = _plan_error(_spec(tmp_path, axes={"product": {"optim.lr": [0.1, -1.0]}}), capsys)
    assert "point 2 (optim.lr=-1.0, seed=0)" in err and "bad value for config key 'optim.lr'" in err
    err = _plan_error(_spec(tmp_path, axes={"product": {"optim.lr": ["fast"]}}), capsys)
    assert "optim.lr" in err and "fast" in err
    err = _plan_error(_spec(tmp_path, axes={"zip": {"optim.lr": [0.1, 0.2], "seed": [1]}}), capsys)
    assert "axes.zip lists must have equal lengths" in err
    err = _plan_error(_spec(tmp_path, resources={"nodes": 0}), capsys)
    assert "resources.nodes" in err
    err = _plan_error(_spec(tmp_path, axes={"product": {"trainer.devices": [1, 2]}}), capsys)
    assert "use resources.* instead" in err
    err = _plan_error(tmp_path / "missing.yaml", capsys)
    assert "sweep spec" in err and "does not exist" in err and "configs/sweeps/" in err


def test_plan_counts_points_and_estimates_gpu_hours(tmp_path, capsys):
    path = _spec(tmp_path)
    assert main(["sweep", "plan", str(path), "--epoch-minutes", "3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["points"] == 3 * 2 * 2 * 2  # product 3 x 2, zip 2, seeds 2
    assert plan["epochs_total"] == 24 * 4 and plan["gpus_per_point"] == 8
    assert plan["gpu_hours"] == pytest.approx(24 * 4 * 3 / 60 * 2 * 4)
    assert len({p["id"] for p in plan["points_list"]}) == 24
    assert main(["sweep", "plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "24 points" in out and "no cost estimate" in out


def test_points_get_validated_configs_and_stable_ids(tmp_path):
    path = _spec(tmp_path)
    points = resolve_points(load_spec(path), path, out_dir=tmp_path / "pts")
    first = points[0]
    assert first.params == {
        "optim.lr": 0.1,
        "optim.label_smoothing": 0.0,
        "optim.warmup_epochs": 0,
        "optim.momentum": 0.9,
        "seed": 0,
    }
    assert first.config.trainer.devices == 4 and first.config.trainer.num_nodes == 2  # from resources
    assert points[-1].config.optim.momentum == 0.8 and points[-1].config.seed == 1
    assert isinstance(points[5].config.optim.warmup_epochs, float)  # typed like `fit` overrides
    again = resolve_points(load_spec(path), path, out_dir=tmp_path / "elsewhere")
    assert [p.id for p in again] == [p.id for p in points]  # the id depends on the config, not the folder


def test_materialise_is_idempotent_and_extends(tmp_path, capsys):
    path = _spec(tmp_path, axes={"product": {"optim.lr": [0.1, 0.05]}}, seeds=[0])
    sweep_dir = tmp_path / "sweep"
    sweep, new, total = materialise(path, sweep_dir)
    assert (new, total) == (2, 2)
    points = {p.id: p for p in resolve_points(load_spec(path), path, out_dir=sweep_dir.resolve() / "points")}
    for pdir in sweep.point_dirs():
        cfg = load_config(pdir / "config.yaml")
        assert cfg == points[pdir.name].config  # the fast YAML writer round-trips
        assert cfg.run_dir == pdir and cfg.optim.lr in (0.1, 0.05) and cfg.trainer.max_epochs == 4
        assert read_status(pdir)["state"] == "pending"
    transition(sweep.point_dirs()[0], "done")
    _spec(tmp_path, axes={"product": {"optim.lr": [0.1, 0.05, 0.2]}}, seeds=[0])
    sweep, new, total = materialise(path, sweep_dir)
    assert (new, total) == (1, 3)
    assert sorted(s["state"] for _, s in sweep.statuses()) == ["done", "pending", "pending"]

    assert main(["sweep", "submit", str(path), "--dir", str(sweep_dir), "--dry-run"]) == 0
    assert "would submit 2 points" in capsys.readouterr().out
    script = (sweep_dir / "submissions" / "001.sbatch").read_text()
    assert "#SBATCH --array=0-1%16" in script and "#SBATCH --gpus-per-node=4" in script
    assert "#SBATCH --ntasks-per-node=4" in script and "#SBATCH --nodes=2" in script
    assert f"srun {sys.executable} -m launch.cli fit" in script and "--signal=USR1@90" in script
    listed = (sweep_dir / "submissions" / "001.points").read_text().split()
    assert sorted(listed) == sorted(str(p) for p, s in sweep.statuses() if s["state"] == "pending")

    _spec(tmp_path, name="other")
    assert main(["sweep", "submit", str(path), "--dir", str(sweep_dir)]) == 2
    assert "holds sweep 'grid', not 'other'" in capsys.readouterr().err


def _claim_in_child(point_dir, queue):
    queue.put(claim(point_dir, local_owner()).granted)


def test_claims_never_let_a_point_run_twice(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path, "claims", {"product": {"optim.lr": [0.1]}})
    sweep, _, _ = materialise(spec, tmp_path / "sweep")
    point = sweep.point_dirs()[0]

    # a live local owner (a real process) holds the point: nobody else may claim it
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"kind": "local", "host": local_owner()["host"], "pid": holder.pid}
        assert claim(point, owner).granted
        refused = claim(point, local_owner())
        assert not refused.granted and f"pid {holder.pid}" in refused.reason
    finally:
        holder.kill()
        holder.wait()
    assert claim(point, local_owner()).granted  # its owner is gone: claimable again (e.g. after a crash)
    transition(point, "pending")

    # four processes race for the same point: exactly one wins
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(point, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert results.count(True) == 1  # the winner's process has exited, but its claim was first

    transition(point, "done")
    assert not claim(point, local_owner()).granted


def test_status_shows_states_progress_and_failures(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", tmp_path, "st", {"product": {"optim.lr": [0.1, 0.05, 0.02]}}, epochs=5)
    sweep, _, _ = materialise(spec, tmp_path / "sweep")
    done, failed, running = sweep.point_dirs()
    log = sweep.dir / "logs" / "7_1.out"  # status shows the end of logs inside the sweep folder only
    log.parent.mkdir()
    log.write_text("epoch 0\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    (running / "metrics.json").write_text(json.dumps({"last": {"epoch": 2, "accuracy": 0.4}}))
    transition(done, "done", result={"epoch": 4, "accuracy": 0.9})
    transition(failed, "failed", reason="exit code 1", log=str(log))
    transition(running, "running", owner={"kind": "slurm", "job_id": "7_2"}, job_id="7_2")

    assert main(["sweep", "status", str(sweep.dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"pending": 0, "queued": 0, "running": 1, "done": 1, "failed": 1, "cancelled": 0}
    rows = {r["id"]: r for r in report["points"]}
    assert (rows[done.name]["epoch"], rows[done.name]["accuracy"]) == (5, 0.9)
    assert (rows[running.name]["epoch"], rows[running.name]["max_epochs"]) == (3, 5)
    assert rows[failed.name]["log_tail"][-1] == "RuntimeError: CUDA out of memory"

    assert main(["sweep", "status", str(sweep.dir)]) == 0
    out = capsys.readouterr().out
    assert "1 done" in out and "1 failed" in out and "3/5" in out and "0.900" in out
    assert "exit code 1" in out and "CUDA out of memory" in out

    assert main(["sweep", "status", str(tmp_path / "nope")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_submit_without_slurm_says_so(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "s.yaml", tmp_path, "noslurm", {"product": {"optim.lr": [0.1]}})
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol/sbatch/squeue on PATH
    assert main(["sweep", "submit", str(spec), "--dir", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert "`scontrol` is not on PATH" in err and "sweep run DIR --local" in err
    assert not (tmp_path / "sweep").exists()  # asked before anything was written
