"""Sweeps on a real local SLURM cluster (slurm/start_local_cluster.sh): job arrays, preemption, crash, resume."""

import json
import os
import signal
import subprocess
import sys

import pytest
from sweep_helpers import assert_never_ran_twice, statuses, wait_for, write_spec

from launch.cli import main
from launch.sweep.folder import Sweep
from lightning_modules.run_record import read_record

pytestmark = pytest.mark.slow


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch.cli", "sweep", *args], capture_output=True, text=True)


def _job_array_lines(sweep_dir):
    jobs = sweep_dir / "submissions" / "jobs.txt"
    return jobs.read_text().splitlines() if jobs.exists() else []


def test_six_point_sweep_runs_as_one_job_array(slurm_cluster, cifar_shards, tmp_path, capsys):
    spec = write_spec(
        tmp_path / "six.yaml", cifar_shards, "six", {"product": {"optim.lr": [0.1, 0.05, 0.02]}}, seeds=[0, 1]
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    assert "with 6 points" in capsys.readouterr().out
    ((_, array, n),) = (line.split() for line in _job_array_lines(sweep_dir))
    script = (sweep_dir / "submissions" / "001.sbatch").read_text()
    for line in (
        "#SBATCH --array=0-5%2",
        "#SBATCH --signal=USR1@90",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"srun {sys.executable} -m launch.cli fit",
    ):
        assert line in script

    wait_for(
        lambda: all(s["state"] in ("done", "failed") for s in statuses(sweep_dir).values()),
        600,
        "all 6 points to finish",
        sweep_dir,
    )
    points = statuses(sweep_dir)
    assert len(points) == 6 and {s["state"] for s in points.values()} == {"done"}
    assert n == "6" and {s["owner"]["job_id"] for s in points.values()} == {f"{array}_{i}" for i in range(6)}
    assert sorted((s["params"]["optim.lr"], s["params"]["seed"]) for s in points.values()) == sorted(
        (lr, seed) for lr in (0.1, 0.05, 0.02) for seed in (0, 1)
    )
    for pid, s in points.items():
        run = sweep_dir / "points" / pid
        rows = (run / "per_class.csv").read_text().splitlines()
        assert rows[0].startswith("epoch,class_index") and len(rows) == 11  # 10 classes, 1 epoch
        assert s["result"]["accuracy"] == json.loads((run / "metrics.json").read_text())["last"]["accuracy"]
        assert [h["state"] for h in s["history"]] == ["pending", "queued", "running", "done"]

    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["done"] == 6 and all(p["epoch"] == 1 == p["max_epochs"] for p in report["points"])
    assert main(["sweep", "resume", str(sweep_dir)]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert len(_job_array_lines(sweep_dir)) == 1


# NCCL and some launchers take SIGUSR1 (submitit moved to SIGUSR2, Lightning #14610): the requeue signal is a
# resource, told to both sbatch (--signal) and Lightning (SLURMEnvironment), and each works end to end.
@pytest.mark.parametrize("sig", ["USR1", "USR2"])
def test_preempted_point_requeues_and_resumes_from_hpc_checkpoint(slurm_cluster, cifar_shards, tmp_path, sig):
    spec = write_spec(
        tmp_path / "pre.yaml",
        cifar_shards,
        "pre",
        {"product": {"optim.lr": [0.1]}},
        epochs=4,
        extra=("trainer.limit_train_batches=4",),
        resources={"requeue_signal": sig},
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    assert f"#SBATCH --signal={sig}@90" in (sweep_dir / "submissions" / "001.sbatch").read_text()
    ((pid, _),) = statuses(sweep_dir).items()
    run = sweep_dir / "points" / pid
    job = wait_for(lambda: statuses(sweep_dir)[pid].get("job_id"), 30, "the point to be queued")
    # the signal once the first epoch is validated (Lightning's handler is installed by then)
    wait_for(lambda: (run / "metrics.json").exists(), 300, "epoch 0 to finish", sweep_dir, poll=0.2)
    subprocess.run(["scancel", f"--signal={sig}", job], check=True)

    wait_for(lambda: statuses(sweep_dir)[pid]["state"] in ("done", "failed"), 600, "the point to finish", sweep_dir)
    status = statuses(sweep_dir)[pid]
    assert status["state"] == "done", status
    running = [h for h in status["history"] if h["state"] == "running"]
    assert [h["restart_count"] for h in running] == [0, 1] and {h["job_id"] for h in running} == {job}
    assert_never_ran_twice(status)

    starts = [r for r in read_record(run) if r["event"] == "start"]
    assert len(starts) == 2
    assert starts[0]["ckpt"] is None and starts[0]["slurm_restart_count"] == 0
    # Lightning saved hpc_ckpt_1 on SIGUSR1; the restart took it or a newer last.ckpt (written while
    # SLURM's SIGTERM after the requeue was ignored): whichever holds more progress
    assert (run / "hpc_ckpt_1.ckpt").is_file() and starts[1]["slurm_restart_count"] == 1
    assert starts[1]["ckpt"] in (str(run / "hpc_ckpt_1.ckpt"), str(run / "checkpoints" / "last.ckpt"))
    assert starts[1]["epoch"] >= 1 and starts[1]["global_step"] >= 4  # continued, not restarted
    assert read_record(run)[-1] == {**read_record(run)[-1], "event": "end", "epoch": 4, "complete": True}
    log = (sweep_dir / "logs" / f"{job}.out").read_text()  # one log, appended across the requeue
    assert "restart 0" in log and "restart 1" in log
    assert f"Handling auto-requeue signal: {getattr(signal, 'SIG' + sig).value}" in log
    assert f"Requeued SLURM job: {job}" in log  # the array task, not the whole array (Lightning #15022)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2, 3]
    assert (run / "logs" / "metrics.1.csv").is_file()  # the scalars logged before the requeue are kept


def test_killed_point_is_failed_and_resume_resubmits_only_it(slurm_cluster, cifar_shards, tmp_path):
    spec = write_spec(
        tmp_path / "crash.yaml",
        cifar_shards,
        "crash",
        {"product": {"trainer.max_epochs": [1, 3]}},
        extra=("trainer.limit_train_batches=4",),
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    by_epochs = {s["max_epochs"]: pid for pid, s in statuses(sweep_dir).items()}
    short, long = by_epochs[1], by_epochs[3]
    run = sweep_dir / "points" / long
    wait_for(
        lambda: (run / "checkpoints" / "last.ckpt").exists(), 300, "epoch 0 of the long point", sweep_dir, poll=0.2
    )
    job = statuses(sweep_dir)[long]["job_id"]
    os.kill(read_record(run)[0]["pid"], signal.SIGKILL)  # the training process dies (as by the OOM killer)

    wait_for(lambda: statuses(sweep_dir)[long]["state"] == "failed", 120, "the killed point to be failed", sweep_dir)
    wait_for(lambda: statuses(sweep_dir)[short]["state"] == "done", 300, "the short point", sweep_dir)
    failed = statuses(sweep_dir)[long]
    assert failed["reason"] in ("killed by SIGKILL (exit code 137)", "exit code 9"), failed["reason"]
    assert failed["log"].endswith(f"{job}.out")

    # two resumes at once: exactly one job array, holding only the failed point
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "launch.cli", "sweep", "resume", str(sweep_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = sorted(p.communicate()[0] for p in both)
    assert all(p.returncode == 0 for p in both)
    assert "nothing to submit" in outs[0] and "with 1 points" in outs[1], outs
    assert (sweep_dir / "submissions" / "002.points").read_text().split() == [str(run)]
    assert "nothing to submit" in _cli("resume", str(sweep_dir)).stdout  # right after: queued, so nothing

    wait_for(lambda: statuses(sweep_dir)[long]["state"] == "done", 600, "the resubmitted point", sweep_dir)
    assert [line.split()[2] for line in _job_array_lines(sweep_dir)] == ["2", "1"]
    starts = [r for r in read_record(run) if r["event"] == "start"]
    assert starts[-1]["ckpt"] == str(run / "checkpoints" / "last.ckpt") and starts[-1]["epoch"] >= 1
    for s in statuses(sweep_dir).values():
        assert_never_ran_twice(s)
    assert [h["state"] for h in statuses(sweep_dir)[long]["history"]] == [
        "pending",
        "queued",
        "running",
        "failed",
        "queued",
        "running",
        "done",
    ]
    assert "nothing to submit" in _cli("resume", str(sweep_dir)).stdout


def test_cancel_and_jobs_that_leave_the_queue(slurm_cluster, cifar_shards, tmp_path, capsys):
    spec = write_spec(tmp_path / "c.yaml", cifar_shards, "cancel", {"product": {"optim.lr": [0.1, 0.05]}}, epochs=50)
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
    assert "cancelled 2 points" in capsys.readouterr().out
    assert {s["state"] for s in statuses(sweep_dir).values()} == {"cancelled"}
    wait_for(lambda: not Sweep.open(sweep_dir).queued_jobs(), 60, "the jobs to leave the queue", sweep_dir)

    assert main(["sweep", "resume", str(sweep_dir)]) == 0  # cancelled points are not done: submitted again
    assert "with 2 points" in capsys.readouterr().out
    array = _job_array_lines(sweep_dir)[-1].split()[1]
    subprocess.run(["scancel", array], check=True)  # behind the sweep's back
    wait_for(lambda: not Sweep.open(sweep_dir).queued_jobs(), 60, "the jobs to leave the queue", sweep_dir)
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert "2 points are queued but their job is not in the queue" in " ".join(capsys.readouterr().out.split())
    assert main(["sweep", "resume", str(sweep_dir)]) == 0
    for s in statuses(sweep_dir).values():
        states = [h["state"] for h in s["history"]]
        assert states[-2:] == ["failed", "queued"] and "left the queue" in s["history"][-2]["reason"]
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
