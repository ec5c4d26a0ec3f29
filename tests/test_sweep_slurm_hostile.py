"""Hostile sweep folders and large sweeps on a real local SLURM cluster (slurm/start_local_cluster.sh)."""

import json
import re
import subprocess

import pytest
from conftest import local_slurm_cluster
from sweep_helpers import assert_never_ran_twice, statuses, wait_for, write_spec

from launch.cli import main
from launch.sweep.folder import Sweep

pytestmark = pytest.mark.slow


def _arrays(sweep_dir) -> list[tuple[str, str, str]]:
    return [tuple(line.split()) for line in (sweep_dir / "submissions" / "jobs.txt").read_text().splitlines()]


def test_a_sweep_folder_with_spaces_and_shell_characters_runs_end_to_end(
    slurm_cluster, cifar_shards, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the jobs start here: where a `$(touch X)` that ran would leave X
    spec = write_spec(
        tmp_path / "s.yaml",
        cifar_shards,
        "quoted",
        {"product": {"optim.lr": [0.1]}},
        extra=("trainer.limit_train_batches=2",),
    )
    sweep_dir = tmp_path / "my sweep 100% $(touch X) `touch Y`"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    assert "with 1 points" in capsys.readouterr().out
    ((pid, _),) = statuses(sweep_dir).items()
    wait_for(lambda: statuses(sweep_dir)[pid]["state"] in ("done", "failed"), 600, "the point to finish", sweep_dir)
    status = statuses(sweep_dir)[pid]
    assert status["state"] == "done", status
    ((_, array, _),) = _arrays(sweep_dir)
    log = sweep_dir / "logs" / f"{array}_0.out"  # sbatch wrote the log where the sweep expects it ('%' kept)
    assert status["log"] == str(log) and f"point {pid}: done" in log.read_text()
    assert (sweep_dir / "points" / pid / "per_class.csv").is_file()
    assert not (tmp_path / "X").exists() and not (tmp_path / "Y").exists()
    assert not list(tmp_path.glob("**/X")) and not list(tmp_path.glob("**/Y"))


def test_a_sweep_over_max_array_size_runs_as_several_arrays(cifar_shards, tmp_path, capsys):
    with local_slurm_cluster(max_array_size="3"):
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
        assert re.search(r"^MaxArraySize\s*=\s*3$", config, re.M)
        spec = write_spec(
            tmp_path / "big.yaml",
            cifar_shards,
            "big",
            {"product": {"optim.lr": [0.1, 0.05, 0.02, 0.01, 0.005]}},
            extra=("trainer.limit_train_batches=2",),
            throttle=2,
        )
        sweep_dir = tmp_path / "sweep"
        assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--hold"]) == 0
        out = capsys.readouterr().out
        assert "submitted 2 job arrays" in out and "with 5 points" in out
        (n1, a1, c1), (n2, a2, c2) = _arrays(sweep_dir)
        assert (c1, c2) == ("3", "2")
        scripts = [(sweep_dir / "submissions" / f"{n}.sbatch").read_text() for n in (n1, n2)]
        assert [re.search(r"--array=(\S+)", s).group(1) for s in scripts] == ["0-2%1", "0-1%1"]  # 2 at once in all
        queued = Sweep.open(sweep_dir).queued_jobs()
        assert sorted(queued) == sorted([f"{a1}_{i}" for i in range(3)] + [f"{a2}_{i}" for i in range(2)])

        # status, cancel and resume see one sweep across both arrays
        assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["counts"]["queued"] == 5 and {r["job_id"] for r in report["points"]} == set(queued)
        assert main(["sweep", "cancel", str(sweep_dir)]) == 0
        assert "cancelled 5 points" in capsys.readouterr().out
        wait_for(lambda: not Sweep.open(sweep_dir).queued_jobs(), 60, "the arrays to leave the queue", sweep_dir)
        assert main(["sweep", "resume", str(sweep_dir)]) == 0
        assert "submitted 2 job arrays" in capsys.readouterr().out
        wait_for(
            lambda: all(s["state"] in ("done", "failed") for s in statuses(sweep_dir).values()),
            900,
            "all 5 points to finish",
            sweep_dir,
        )
        points = statuses(sweep_dir)
        assert {s["state"] for s in points.values()} == {"done"}, points
        (_, b1, _), (_, b2, _) = _arrays(sweep_dir)[2:]
        assert {s["owner"]["job_id"] for s in points.values()} == {f"{b1}_{i}" for i in range(3)} | {
            f"{b2}_{i}" for i in range(2)
        }
        for s in points.values():  # each task ran the point its own array's list gave it
            assert s["owner"]["job_id"] == s["job_id"]
            assert_never_ran_twice(s)
        assert main(["sweep", "resume", str(sweep_dir)]) == 0
        assert "nothing to submit" in capsys.readouterr().out
