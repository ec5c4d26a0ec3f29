"""An interrupted checkpoint save never becomes the checkpoint a restart resumes from (Lightning #21406)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import REPO
from sweep_helpers import TINY

from lightning_modules.checkpoint_io import SafeCheckpointIO, partial_path
from lightning_modules.run_record import read_record

# A real `classreg fit` whose second last.ckpt is killed (SIGKILL, as by the time limit or the OOM killer) while
# its bytes are being written: ballast makes the file large, and a watcher thread kills the process as soon as
# that save has written anything next to checkpoints/last.ckpt (the file itself or its partial).
KILLED_FIT = r"""
import os, signal, sys, threading, time
import pytorch_lightning as pl
import torch
from launch.config import load_config
from launch.fit import fit

class KillDuringSave(pl.Callback):
    def on_save_checkpoint(self, trainer, module, checkpoint):
        if trainer.current_epoch < 1:
            return  # epoch 0's last.ckpt is what a restart must find intact
        checkpoint["ballast"] = torch.ones(100_000_000, dtype=torch.uint8)
        last = os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
        before = os.stat(last)

        def watch():
            while True:
                for path in (last, os.path.join(os.path.dirname(last), ".last.ckpt.partial")):
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        continue
                    changed = (st.st_mtime_ns, st.st_size) != (before.st_mtime_ns, before.st_size)
                    if st.st_size and (path != last or changed):
                        print(f"killing while {path} holds {st.st_size} bytes", flush=True)
                        os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.0005)

        threading.Thread(target=watch, daemon=True).start()

cfg = load_config("configs/fashion_mnist_demo.yaml", sys.argv[1:])
fit(cfg, extra_callbacks=[KillDuringSave()])
"""


@pytest.mark.slow
def test_a_kill_during_the_save_leaves_the_previous_checkpoint(cifar_shards, tmp_path):
    args = [
        f"data.root={cifar_shards}",
        f"out_dir={tmp_path}",
        "name=run",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        *TINY,
    ]
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    # Lightning's own save goes through a file in the temporary folder; on clusters that is another filesystem
    # than the run folder (node-local /tmp, NFS or Lustre), as /dev/shm is here.
    other_fs = Path(tempfile.mkdtemp(dir="/dev/shm"))
    assert os.stat(other_fs).st_dev != os.stat(tmp_path).st_dev
    env = {**os.environ, "TMPDIR": str(other_fs), "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_FIT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert "killing while" in killed.stdout
    assert torch.load(last, weights_only=False)["epoch"] == 0  # epoch 0's checkpoint, whole

    restarted = subprocess.run(
        [sys.executable, "-m", "launch.cli", "fit", "-c", "configs/fashion_mnist_demo.yaml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    starts = [r for r in read_record(run) if r["event"] == "start"]
    assert [s["ckpt"] for s in starts] == [None, str(last)]
    assert (starts[1]["epoch"], starts[1]["global_step"]) == (1, 2)  # resumed after epoch 0, not from scratch
    assert read_record(run)[-1]["complete"] and not partial_path(last).exists()
    shutil.rmtree(other_fs)


def test_a_failed_save_keeps_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"epoch": 0, "w": torch.arange(3)}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 0
    with pytest.raises((AttributeError, TypeError, RuntimeError)):
        io.save_checkpoint({"epoch": 1, "bad": lambda: 0}, target)  # cannot be pickled: fails mid-save
    assert torch.load(target, weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    io.save_checkpoint({"epoch": 1}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 1
