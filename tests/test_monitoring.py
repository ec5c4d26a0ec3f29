"""Monitoring a running sweep: `sweep status --watch`, `report --wandb`, `sweep sync`, per-class curves on W&B.

The end-to-end test runs a real sweep on the local SLURM cluster while the live view and the report read it;
W&B runs are offline and read back with wandb's own reader (`wandb leet inspect`)."""

from __future__ import annotations

import csv
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_helpers import statuses, wait_for, write_spec
from test_wandb_offline import fit, read_records

from launch.cli import main
from launch.sweep.folder import materialise
from launch.sweep.status import transition
from lightning_modules.callbacks.wandb_per_class import class_keys, class_scalar_items
from lightning_modules.wandb_logging import run_id

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def by_type(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["type"], []).append(r[r["type"]])
    return out


def wandb_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))


def cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class PtyWatch:
    """`classreg sweep status DIR --watch S` on a pseudo-terminal (rich's Live view), read in the background."""

    def __init__(self, sweep_dir: Path, every: float):
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "150", "LINES": "40", "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "launch.cli", "sweep", "status", str(sweep_dir), "--watch", str(every)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            # A terminal's Ctrl-C must reach it even where this suite runs in the background (a shell without job
            # control starts background commands with SIGINT ignored, and children inherit that).
            preexec_fn=_default_sigint,
        )
        os.close(slave)
        self.master, self.chunks = master, []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.chunks.append(data)
            elif self.proc.poll() is not None:
                return

    @property
    def text(self) -> str:
        return ANSI.sub("", b"".join(self.chunks).decode(errors="replace")).replace("\r", "")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rc = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        os.close(self.master)
        return rc


# ---------------------------------------------------------------- per-class scalars: keys and the budget


def test_class_keys_are_safe_for_wandb_and_unique():
    names = ["barn spider", "crane", "crane", "a/b", "a.b", "", "T-shirt/top", "a_b", "ö-class"]
    keys = class_keys(names)
    assert len(set(keys)) == len(keys) == len(names)
    assert all(k and "/" not in k and "." not in k and " " not in k for k in keys)
    assert keys[0] == "barn_spider" and keys[6] == "T-shirt_top" and keys[8] == "ö-class"
    assert keys[1:3] == ["crane_1", "crane_2"]  # ImageNet has two classes named "crane"
    assert keys[5] == "class_5"
    assert class_keys(names) == keys  # the same names give the same keys in every validation


def test_class_scalars_are_every_class_up_to_the_budget_then_worst_and_best():
    acc = np.array([0.5, 0.9, 0.1, np.nan, 0.7, 0.3])
    keys = [f"c{i}" for i in range(6)]
    every = class_scalar_items(acc, keys, 5)  # 5 classes evaluated (one has no images): all of them
    assert every == {f"val/class_acc/c{i}": acc[i] for i in (0, 1, 2, 4, 5)}
    assert set(class_scalar_items(acc, keys, 3)) == {"val/class_acc/c2", "val/class_acc/c5", "val/class_acc/c1"}
    assert set(class_scalar_items(acc, keys, 4)) == {f"val/class_acc/c{i}" for i in (2, 5, 4, 1)}
    assert class_scalar_items(acc, keys, 0) == {}


@pytest.mark.slow
def test_fit_logs_worst_and_best_class_scalars_above_the_budget(cifar_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert fit(cifar_shards, tmp_path, "trainer.max_epochs=1", "logger.class_scalars=3") == 0
    run = tmp_path / "wd5e-4"
    [wandb_file] = wandb_files(run)
    history = [h["item"] for h in by_type(read_records(wandb_file))["history"]]
    logged = [h for h in history if any(k.startswith("val/class_acc/") for k in h)]
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert len(logged) == 1
    for item in logged:
        epoch = int(item["epoch"])
        acc = {r["class_name"]: int(r["correct"]) / int(r["total"]) for r in rows if int(r["epoch"]) == epoch}
        ranked = sorted(acc, key=lambda n: (acc[n], CLASSES.index(n)))
        expected = {*ranked[:2], ranked[-1]}  # ceil(3/2) worst, 3//2 best
        got = {k.removeprefix("val/class_acc/"): v for k, v in item.items() if k.startswith("val/class_acc/")}
        assert set(got) == expected and all(got[n] == acc[n] for n in got)


# ---------------------------------------------------------------- the live view, on status files alone


def _sweep(tmp_path, name="w", epochs=4, seeds=(0, 1)):
    spec = write_spec(tmp_path / f"{name}.yaml", tmp_path, name, {"product": {"optim.lr": [0.1]}}, seeds, epochs)
    sweep, _, _ = materialise(spec, tmp_path / name)
    return sweep, sorted(sweep.point_dirs(), key=lambda p: json.loads((p / "status.json").read_text())["index"])


def _running(point: Path, epoch: int, accuracy: float, seconds_per_epoch: float, pid: int) -> None:
    owner = {"kind": "local", "host": socket.gethostname(), "pid": pid}
    transition(point, "running", owner=owner, log=str(point / "local.log"))
    started = time.time() - seconds_per_epoch * (epoch + 1)
    (point / "resume.json").write_text(json.dumps([{"event": "start", "time": started, "epoch": 0}]))
    (point / "metrics.json").write_text(json.dumps({"last": {"epoch": epoch, "accuracy": accuracy}}))


def test_watch_without_a_terminal_prints_a_line_per_refresh_until_every_point_is_done(tmp_path):
    sweep, (a, b) = _sweep(tmp_path)
    _running(a, epoch=1, accuracy=0.42, seconds_per_epoch=30, pid=os.getpid())
    transition(b, "failed", reason="exit code 1", log=str(b / "local.log"))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "launch.cli", "sweep", "status", str(sweep.dir), "--watch", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(3)
    transition(b, "running", owner={"kind": "local", "host": socket.gethostname(), "pid": os.getpid()})
    transition(b, "done", result={"epoch": 3, "accuracy": 0.8, "seconds_per_epoch": 20.0})
    transition(a, "done", result={"epoch": 3, "accuracy": 0.7, "seconds_per_epoch": 30.0})
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, out
    lines = out.splitlines()
    first = lines[0]
    assert "sweep w: 2 points: 1 running, 1 failed; epochs 2/8 (25.0%)" in first
    assert "30s/epoch, ETA 1m 00s (1 point at a time)" in first  # 2 epochs left of the running point, 30 s each
    assert lines[1] == f"failed {b.name} (lr=0.1 seed=1): exit code 1; log {b / 'local.log'}"
    assert sum(line.startswith("failed ") for line in lines) == 1  # each failure once
    assert len([ln for ln in lines if " sweep w: " in ln]) >= 3  # one line per refresh
    assert lines[-2].endswith("2 done; epochs 8/8 (100.0%); nothing queued or running")
    assert lines[-1] == f"sweep w: all 2 points done (`classreg report {sweep.dir}`)"


def test_watch_stops_with_code_1_when_nothing_runs_and_not_everything_is_done(tmp_path):
    sweep, (a, b) = _sweep(tmp_path)
    transition(a, "failed", reason="killed by SIGKILL (exit code 137)", log="/x/a.log")
    # b: running by its status file, but its process is gone (no process has this pid any more)
    gone = subprocess.Popen(["true"])
    gone.wait()
    _running(b, epoch=0, accuracy=0.3, seconds_per_epoch=10, pid=gone.pid)
    r = cli("sweep", "status", str(sweep.dir), "--watch", "0.2", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "(1 lost: their job or process is gone)" in r.stdout
    assert f"failed {a.name} (lr=0.1 seed=0): killed by SIGKILL (exit code 137); log /x/a.log" in r.stdout
    assert "nothing queued or running; 0 done, 1 running, 1 failed (1 lost)" in r.stdout
    assert f"`classreg sweep resume {sweep.dir}`" in r.stdout
    bad = cli("sweep", "status", str(sweep.dir), "--watch", "1", "--json")
    assert bad.returncode == 2 and "--watch" in bad.stderr


def test_watch_on_a_terminal_is_a_live_view_and_ctrl_c_exits_0(tmp_path):
    sweep, (a, b) = _sweep(tmp_path, epochs=10)
    _running(a, epoch=3, accuracy=0.625, seconds_per_epoch=12, pid=os.getpid())
    transition(b, "queued", job_id=None)
    view = PtyWatch(sweep.dir, 0.5)
    wait_for(lambda: view.text.count("refreshed ") >= 3, 60, f"three refreshes of the live view: {view.text}")
    assert view.interrupt() == 0
    text = view.text
    assert "sweep w (" in text and "2 points: 1 queued, 1 running" in text
    assert "4/20 epochs (20.0%)" in text and "12s/epoch, ETA 3m 12s (1 point at a time)" in text  # (6 + 10) x 12 s
    row = next(line for line in text.splitlines() if a.name in line)
    assert re.search(r"\b0\s.*lr=0.1 seed=0\s.*4/10\s.*0\.625\s.*12\.0\s.*1m 12s", row), row
    assert "stopped watching (the sweep runs on)" in text and "Traceback" not in text


# ---------------------------------------------------------------- end to end on the local SLURM cluster


@pytest.mark.slow
def test_a_running_sweep_watched_reported_to_wandb_and_synced(slurm_cluster, cifar_shards, tmp_path):
    spec = write_spec(
        tmp_path / "mon.yaml",
        cifar_shards,
        "mon",
        {"product": {"wd.value": [0.0, 0.05]}},
        seeds=[0, 1],
        epochs=2,
        extra=("trainer.limit_train_batches=3", "logger.wandb=true"),
        throttle=2,
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir)]) == 0
    live = PtyWatch(sweep_dir, 1)
    plain = subprocess.Popen(
        [sys.executable, "-m", "launch.cli", "sweep", "status", str(sweep_dir), "--watch", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    # the report of the sweep while it runs: it runs, and says what it leaves out
    wait_for(lambda: any(sweep_dir.glob("points/*/per_class.csv")), 600, "a first validation", sweep_dir)
    during = cli("report", str(sweep_dir), "--wandb", "--no-progress")
    print("---- report --wandb (sweep running)\n" + during.stdout + during.stderr)
    assert during.returncode == 0, during.stderr
    if not all(s["state"] == "done" for s in statuses(sweep_dir).values()):
        assert "note: sweep mon is not finished: " in " ".join(during.stderr.split())
    wait_for(lambda: "running (" in live.text, 300, "the live view to show running points", sweep_dir)
    assert live.interrupt() == 0
    print("---- status --watch (terminal)\n" + live.text)

    out, _ = plain.communicate(timeout=900)
    print("---- status --watch (no terminal)\n" + out)
    assert plain.returncode == 0, out
    lines = out.splitlines()
    assert any(" running;" in ln and "/epoch, ETA " in ln for ln in lines[:-1]), lines
    assert lines[-2].endswith("4 done; epochs 8/8 (100.0%); nothing queued or running")
    assert lines[-1] == f"sweep mon: all 4 points done (`classreg report {sweep_dir.resolve()}`)"
    # Ctrl-C stopped the live view, or the last points finished just before it (the view then ends by itself)
    assert "running (" in live.text
    assert "stopped watching" in live.text or "all 4 points done" in live.text, live.text

    # the report of the finished sweep, logged again: the same W&B run
    r = cli("report", str(sweep_dir), "--wandb", "--no-progress")
    print("---- report --wandb\n" + r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    report_dir = sweep_dir / "report"
    record = json.loads((report_dir / "wandb_report.json").read_text())
    expected_id = run_id("mon", "report")
    assert record["run_id"] == expected_id and record["mode"] == "offline" and record["revision"] == 1
    assert f"W&B: report run {expected_id} in group 'mon' (offline: WANDB_MODE=offline)" in r.stderr
    assert f"`classreg sweep sync {sweep_dir.resolve()}`" in r.stderr
    assert "wandb: " not in r.stdout + r.stderr  # classreg's two W&B lines, not wandb's own console summary
    parts = wandb_files(report_dir)
    assert len(parts) == 2  # the report while running, then finished: two offline parts of one run
    points = statuses(sweep_dir)
    per_class_names = set()
    for pid in points:
        [f] = wandb_files(sweep_dir / "points" / pid)
        recs = by_type(read_records(f))
        [art] = [a for a in recs["artifact"] if a["type"] == "per_class_results"]
        per_class_names.add(art["name"])
        # per-class curves: every class at every validation, as in per_class.csv
        rows = list(csv.DictReader(open(sweep_dir / "points" / pid / "per_class.csv")))
        curves = [h["item"] for h in recs["history"] if "val/class_acc/cat" in h["item"]]
        assert [int(c["epoch"]) for c in curves] == [0, 1]
        for c in curves:
            for row in (r for r in rows if int(r["epoch"]) == int(c["epoch"])):
                assert c[f"val/class_acc/{row['class_name']}"] == int(row["correct"]) / int(row["total"])
    assert per_class_names == {f"per_class-{run_id('mon', pid)}" for pid in points}

    settings = pd.read_csv(report_dir / "settings.csv")
    for i, part in enumerate(parts):
        recs = by_type(read_records(part))
        run = recs["run"][0]  # later run records update it (the notes)
        assert run["run_id"] == expected_id and run["job_type"] == "report" and run["run_group"] == "mon"
        assert run["resume"] is True
        history = [h["item"] for h in recs["history"]]
        [logged] = [h for h in history if "report/settings._type" in h]
        assert int(logged["_step"]) == i  # each re-run logs one step further: nothing is dropped on sync
    headline = json.loads((report_dir / "report.json").read_text())["headline"]
    assert recs["run"][-1]["notes"] == headline
    assert logged["report/settings._type"] == "table-file" and logged["report/settings.nrows"] == len(settings)
    table = json.loads((parts[-1].parent / "files" / logged["report/settings.path"]).read_text())
    assert [row[table["columns"].index("setting")] for row in table["data"]] == settings["setting"].tolist()
    comparisons = pd.read_csv(report_dir / "comparisons.csv")
    assert logged["report/comparisons.nrows"] == len(comparisons) > 0
    for name in ("delta", "curves", "tradeoff", "histograms"):
        assert logged[f"report/figures/{name}._type"] == "image-file"
        png = parts[-1].parent / "files" / logged[f"report/figures/{name}.path"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert logged["report/page._type"] == "html-file"
    page = parts[-1].parent / "files" / logged["report/page.path"]
    assert page.read_text().rstrip() == (report_dir / "report.html").read_text().rstrip()
    summary = {k: v for s in recs["summary"] for k, v in s["update"].items()}
    assert summary["report/headline"] == headline and summary["report/runs"] == 4
    assert summary["report/coverage"] == "4 of 4 points finished"
    [artifact] = [a for a in recs["artifact"] if a["type"] == "report"]
    assert artifact["name"] == expected_id
    assert sorted(json.loads(artifact["metadata"])["uses"]) == sorted(f"{n}:latest" for n in per_class_names)
    assert {"settings.csv", "comparisons.csv", "report.html", "figures/delta_sorted.png"} <= {
        c["path"] for c in artifact["manifest"]["contents"]
    }
    assert {u["artifact"] for u in record["uses"]} == {f"{n}:latest" for n in per_class_names}

    # sync: the dry run lists exactly the offline runs; against a server that does not answer, every run fails
    # with W&B's reason, one line each, and nothing is marked synced
    unsynced = sorted(
        [*(str(f) for p in points for f in wandb_files(sweep_dir / "points" / p))] + list(map(str, parts))
    )
    dry = cli("sweep", "sync", str(sweep_dir), "--dry-run")
    print("---- sweep sync --dry-run\n" + dry.stdout)
    assert dry.returncode == 0
    listed = sorted(line.split(": ", 1)[1] for line in dry.stdout.splitlines() if line.startswith("would sync "))
    assert listed == sorted(str(Path(u).resolve()) for u in unsynced)
    assert "dry run: 6 offline runs of 5 points/reports to upload; 0 already synced" in dry.stdout

    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}", "WANDB_API_KEY": "x" * 40}
    failed = cli("sweep", "sync", str(sweep_dir), "--retries", "1", env=env, timeout=600)
    print("---- sweep sync (no server)\n" + failed.stdout + failed.stderr)
    assert failed.returncode == 1
    fail_lines = [ln for ln in failed.stdout.splitlines() if ln.startswith("failed ")]
    assert sorted(ln.split(":", 1)[0] for ln in fail_lines) == sorted(
        [f"failed {p}" for p in points] + [f"failed report {report_dir.resolve()}"]
    )
    assert all("127.0.0.1" in ln or "connection refused" in ln.lower() for ln in fail_lines), fail_lines
    assert "synced 0 of 6 offline runs (0 of 5 points/reports); 5 failed: nothing of theirs is marked synced" in (
        " ".join(failed.stdout.split())
    )
    assert not list(sweep_dir.rglob("*.wandb.synced"))
    assert all(not s.get("wandb_synced") for s in statuses(sweep_dir).values())
    assert not json.loads((report_dir / "wandb_report.json").read_text()).get("synced")
    assert cli("sweep", "sync", str(sweep_dir), "--dry-run").stdout == dry.stdout

    # a run uploaded by a `wandb sync` of its own (W&B's marker) is recorded and skipped from then on
    first = sorted(points)[0]
    [uploaded] = wandb_files(sweep_dir / "points" / first)
    uploaded.with_suffix(".wandb.synced").write_text("")
    again = cli("sweep", "sync", str(sweep_dir), "--retries", "1", env=env, timeout=600)
    assert again.returncode == 1 and f"failed {first}:" not in again.stdout
    assert "synced 0 of 5 offline runs (0 of 4 points/reports); 1 were synced before; 4 failed" in " ".join(
        again.stdout.split()
    )
    assert list(statuses(sweep_dir)[first]["wandb_synced"]) == [
        uploaded.relative_to(sweep_dir / "points" / first).as_posix()
    ]
    dry = cli("sweep", "sync", str(sweep_dir), "--dry-run").stdout
    assert (
        str(uploaded.resolve()) not in dry and "5 offline runs of 4 points/reports to upload; 1 already synced" in dry
    )
