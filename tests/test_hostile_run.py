"""Hostile and clumsy input on the run side: planted checkpoints, presets, overrides, sweep specs, run folders
and class names are refused in one line naming the thing and the fix, and nothing is run, leaked or lost."""

from __future__ import annotations

import builtins
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sweep_helpers import SMALL_RESNET

from datamodules.configkit import atomic_write_text
from launch.cli import main
from launch.config import load_config, save_resolved
from tests.synthetic_runs import write_run

REPO = Path(__file__).resolve().parent.parent
PRESET = str(REPO / "configs" / "fashion_mnist_demo.yaml")
TINY = [
    *SMALL_RESNET,
    "trainer.limit_val_batches=1",
    "trainer.limit_train_batches=2",
    "trainer.max_epochs=1",
    "logger.wandb=false",
]


def _one_line_error(capsys, rc: int, command: str, *words: str) -> str:
    """The command failed with exit 2 and printed exactly one line, `classreg <command>: error: ...`."""
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2, out.err[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"classreg {command}: error: "), out.err[-2000:]
    assert "Traceback" not in out.err + out.out
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. checkpoints are never unpickled --------------------------------------------------------------------------


class _TouchOnLoad:
    """Unpickling this creates a file: what a planted checkpoint's code could do (and worse)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _plant_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"model.conv1.weight": torch.zeros(1)}, "loops": _TouchOnLoad(marker)}, path)
    assert not marker.exists()
    return path


@pytest.fixture
def force_unsafe_default(monkeypatch):
    """With this variable set, torch.load without an explicit weights_only unpickles everything."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def test_transfer_never_unpickles_a_planted_checkpoint(cifar_shards, tmp_path, capsys, force_unsafe_default):
    marker = tmp_path / "code-ran"
    run = tmp_path / "sweep" / "points" / "p0"
    run.mkdir(parents=True)
    save_resolved(load_config(None, [f"data.root={cifar_shards}", *TINY]), run / "config.yaml")
    (run / "per_class.csv").write_text("epoch,class_index,class_name,correct,total,accuracy\n0,0,a,1,2,0.5\n")
    ckpt = _plant_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    downstream = tmp_path / "downstream.yaml"
    downstream.write_text(yaml.safe_dump({"data": {"root": str(cifar_shards)}, "trainer": {"max_epochs": 1}}))
    out = tmp_path / "probes"

    rc = main(["transfer", str(tmp_path / "sweep"), "-d", str(downstream), "--out", str(out)])
    line = _one_line_error(capsys, rc, "transfer", str(ckpt), "--trust-checkpoints", "io.open")
    assert "unpickling runs whatever code" in line
    assert not marker.exists()  # nothing ran
    assert not out.exists()  # refused before any probe folder was written

    # The documented opt-in really unpickles (so the planted file is a real threat): the code runs, and the
    # checkpoint is then refused for what it is, one line again.
    rc = main(["transfer", str(tmp_path / "sweep"), "-d", str(downstream), "--out", str(out), "--trust-checkpoints"])
    assert marker.exists()
    _one_line_error(capsys, rc, "transfer", str(ckpt))


def test_fit_never_unpickles_a_planted_resume_checkpoint(cifar_shards, tmp_path, capsys, force_unsafe_default):
    marker = tmp_path / "code-ran"
    run = tmp_path / "runs" / "shared"
    ckpt = _plant_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    (run / "config.yaml").write_text("# the colleague's config\n")
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("step,train/loss\n0,2.3\n")
    before = _files_under(run)

    rc = main(["fit", "-c", PRESET, f"data.root={cifar_shards}", f"out_dir={run.parent}", "name=shared", *TINY])
    _one_line_error(capsys, rc, "fit", str(ckpt), "--trust-checkpoints")
    assert not marker.exists()
    after = _files_under(run)
    assert {k: v for k, v in after.items() if not k.startswith("fit.lock")} == before  # nothing moved or rewritten


def test_a_damaged_checkpoint_is_named(cifar_shards, tmp_path, capsys):
    run = tmp_path / "sweep" / "p0"
    run.mkdir(parents=True)
    save_resolved(load_config(None, [f"data.root={cifar_shards}", *TINY]), run / "config.yaml")
    (run / "per_class.csv").write_text("epoch,class_index,class_name,correct,total,accuracy\n0,0,a,1,2,0.5\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip archive")
    downstream = tmp_path / "downstream.yaml"
    downstream.write_text(yaml.safe_dump({"data": {"root": str(cifar_shards)}}))
    rc = main(["transfer", str(tmp_path / "sweep"), "-d", str(downstream), "--out", str(tmp_path / "probes")])
    _one_line_error(capsys, rc, "transfer", str(run / "checkpoints" / "last.ckpt"), "cannot be read")


# -- 8. numbers that are not numbers, lists of the wrong length --------------------------------------------------

NOT_NUMBERS = [
    ("optim.lr=nan", "optim.lr"),
    ("wd.value=nan", "wd.value"),
    ("aug.rrc.min_scale=nan", "aug.rrc.min_scale"),
    ("trainer.limit_train_batches=inf", "trainer.limit_train_batches"),
    ("data.std=[0,0,0]", "data.std[0]"),
    ("data.std=[0.2,0.2,-0.1]", "data.std[2]"),
    ("data.mean=[1,2]", "data.mean"),
    ("data.mean=[0.5,.nan,0.5]", "data.mean[1]"),
    ("aug.class_overrides.3.rrc.min_scale=nan", "rrc.min_scale"),
]


@pytest.mark.parametrize("override,key", NOT_NUMBERS)
def test_values_that_are_not_finite_numbers_are_refused_by_key(override, key, tmp_path, capsys):
    rc = main(["fit", override, f"out_dir={tmp_path}"])
    _one_line_error(capsys, rc, "fit", key)
    preset = tmp_path / "preset.yaml"
    k, _, v = override.partition("=")
    tree: dict = yaml.safe_load(v) if not v.endswith("nan") and not v.endswith("inf") else float(v)
    for part in reversed(k.split(".")):
        tree = {part: tree}
    preset.write_text(yaml.safe_dump(tree))
    rc = main(["fit", "-c", str(preset), f"out_dir={tmp_path}"])
    _one_line_error(capsys, rc, "fit", key)
    assert not any(tmp_path.glob("*/config.yaml"))  # refused before any run folder was written


@pytest.mark.parametrize("override,key", NOT_NUMBERS)
def test_sweep_axis_values_that_are_not_finite_numbers_are_refused(override, key, tmp_path, capsys):
    k, _, v = override.partition("=")
    good = {"optim.lr": 0.1, "wd.value": 0.0, "aug.rrc.min_scale": 0.5, "trainer.limit_train_batches": 0.5}
    good.update({"data.std": [0.2, 0.2, 0.2], "data.mean": [0.5, 0.5, 0.5], "aug.class_overrides.3.rrc.min_scale": 0.5})
    v = {"nan": ".nan", "inf": ".inf"}.get(v, v)  # YAML's spelling of the floats
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: t\nbase: {PRESET}\naxes:\n  product:\n    {k}: [{json.dumps(good[k])}, {v}]\n"
        "resources: {cpus_per_task: 1, mem: 500M, time: '00:10:00'}\n"
    )
    rc = main(["sweep", "plan", str(spec)])
    line = _one_line_error(capsys, rc, "sweep", str(spec))
    assert key.split(".")[-1].split("[")[0] in line


# -- 9. configs cannot read the environment ----------------------------------------------------------------------

SECRET = "sentinel-wandb-key-8c41f0"


def test_interpolation_is_refused_and_the_environment_never_lands_in_a_file(
    cifar_shards, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    common = [f"data.root={cifar_shards}", f"out_dir={tmp_path / 'runs'}", *TINY]
    preset = tmp_path / "shared_preset.yaml"
    preset.write_text("logger:\n  project: ${oc.env:WANDB_API_KEY}\n")
    rc = main(["fit", "-c", str(preset), *common])
    _one_line_error(capsys, rc, "fit", str(preset), "'logger.project'", "${oc.env:WANDB_API_KEY}")

    rc = main(["fit", "logger.project=${oc.env:WANDB_API_KEY}", *common])
    _one_line_error(capsys, rc, "fit", "override", "'logger.project'")

    rc = main(["fit", "name=${seed}", *common])  # interpolation between keys is refused too (docs/trust.md)
    _one_line_error(capsys, rc, "fit", "'name'")

    for where in ("overrides", "axes"):
        spec = tmp_path / f"spec_{where}.yaml"
        body = (
            "overrides: ['logger.entity=${oc.env:WANDB_API_KEY}']\n"
            if where == "overrides"
            else "axes: {product: {logger.project: [a, '${oc.env:WANDB_API_KEY}']}}\n"
        )
        spec.write_text(
            f"name: t\nbase: {PRESET}\n{body}resources: {{cpus_per_task: 1, mem: 500M, time: '00:10:00'}}\n"
        )
        rc = main(["sweep", "submit", str(spec), "--dir", str(tmp_path / f"sweep_{where}"), "--dry-run"])
        _one_line_error(capsys, rc, "sweep", str(spec), "interpolation")

    assert all(SECRET.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweep_axes").exists()


# -- 14. YAML tags and broken YAML -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,words",
    [
        ('logger:\n  project: !!python/object/apply:os.system ["touch {marker}"]\n', ["!!python/object/apply"]),
        ("logger:\n  project: !!binary aGVsbG8=\n", ["!!binary", "line 2"]),
        ("optim: !!python/name:os.system\n", ["!!python/name:os.system"]),
        ("optim:\n  lr: [0.1\n", ["not valid YAML", "line 3", "fix the syntax"]),
        ("- optim.lr=0.1\n", ["must be a mapping"]),
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", ["duplicate key"]),
        ("\xff\xfe not text", ["not UTF-8"]),
    ],
)
def test_presets_with_tags_or_broken_yaml_are_refused_in_one_line(text, words, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    preset = tmp_path / "preset.yaml"
    preset.write_bytes(text.replace("{marker}", str(marker)).encode("latin-1"))
    rc = main(["fit", "-c", str(preset)])
    _one_line_error(capsys, rc, "fit", str(preset), *words)
    assert not marker.exists()


@pytest.mark.parametrize(
    "override,words",
    [
        ('logger.project=!!python/object/apply:os.system ["touch {marker}"]', ["!!python/object/apply"]),
        ("logger.project=!!binary aGVsbG8=", ["!!binary"]),
        ("optim.lr=[0.1", ["not valid YAML"]),
    ],
)
def test_overrides_with_tags_or_broken_yaml_are_refused_in_one_line(override, words, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    override = override.replace("{marker}", str(marker))
    rc = main(["fit", override])
    _one_line_error(capsys, rc, "fit", f"override '{override}'", *words)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "t", "base": PRESET, "overrides": [override], "resources": {"mem": "1G", "time": "00:10:00"}}
        )
    )
    rc = main(["sweep", "plan", str(spec)])
    _one_line_error(capsys, rc, "sweep", str(spec))
    assert not marker.exists()


# -- 16. the headline when every class rose ----------------------------------------------------------------------


def test_headline_says_no_class_dropped_when_every_class_rose(tmp_path):
    from launch.report import build_report

    names = ["T-shirt", "Bag", "Coat"]
    for i, (ls, correct) in enumerate([(0.0, [80, 90, 60]), (0.1, [85, 94, 70])]):
        for seed in range(2):
            write_run(
                tmp_path / f"s{i}" / f"seed{seed}",
                [f"optim.label_smoothing={ls}", f"seed={seed}"],
                correct,
                [100, 100, 100],
                names,
            )
    report = build_report([tmp_path], tmp_path / "report", progress=False)
    assert "no class dropped" in report.headline, report.headline
    assert "largest drop" not in report.headline


# -- 15. a full disk leaves no temporary and the old file intact -------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB filesystem (tmpfs; mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_no_temporary_and_keeps_the_old_file(full_disk):
    from lightning_modules.checkpoint_io import SafeCheckpointIO, load_checkpoint

    metrics = full_disk / "metrics.json"
    atomic_write_text(metrics, '{"old": true}')
    with pytest.raises(OSError):
        atomic_write_text(metrics, json.dumps({"history": ["x" * 1000] * 200}))
    assert sorted(p.name for p in full_disk.iterdir()) == ["metrics.json"]
    assert json.loads(metrics.read_text()) == {"old": True}

    ckpt = full_disk / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(10)}}, ckpt)
    with pytest.raises((OSError, RuntimeError)):  # torch's zip writer reports ENOSPC as a RuntimeError
        io.save_checkpoint({"state_dict": {"w": torch.ones(100_000)}}, ckpt)  # 400 KB on a 64 KiB disk
    assert sorted(p.name for p in full_disk.iterdir()) == ["last.ckpt", "metrics.json"]
    assert torch.equal(load_checkpoint(ckpt)["state_dict"]["w"], torch.ones(10))  # the previous one, intact

    from launch.report import figures

    png = full_disk / "delta_sorted.png"
    png.write_bytes(b"old figure")
    filler = full_disk / "filler"
    with open(filler, "wb") as fh, pytest.raises(OSError):
        fh.write(b"x" * 65536)  # the disk is now full
    names = [f"class {i}" for i in range(10)]
    with pytest.raises(OSError):
        figures.delta_sorted(names, np.linspace(-1, 1, 10), np.ones(10, bool), "a figure", png)
    assert png.read_bytes() == b"old figure"
    assert sorted(p.name for p in full_disk.iterdir()) == ["delta_sorted.png", "filler", "last.ckpt", "metrics.json"]


# -- 13. class names are data; classreg's own checkpoints load as tensors only -----------------------------------

HOSTILE_NAMES = ["$x_$", "[/x]", "<b>bold</b>", "Ünïcødé 猫"]


@pytest.fixture(scope="module")
def hostile_shards(cifar_tree, tmp_path_factory):
    """Real shards of 4 CIFAR classes named with a (broken) matplotlib math pair, rich markup, HTML, non-ASCII."""
    from datamodules.shards.writer import Item, write_dataset
    from datamodules.sources.image_tree import encode_image_file

    cifar = sorted(d.name for d in (cifar_tree / "train").iterdir())[:4]
    items = {
        split: [
            Item(f"{c}_{f.stem}", label, str(f), str(f))
            for label, c in enumerate(cifar)
            for f in sorted((cifar_tree / split / c).glob("*.jpg"))[: 12 if split == "train" else 5]
        ]
        for split in ("train", "test")
    }
    out = tmp_path_factory.mktemp("hostile_shards")
    write_dataset(out, HOSTILE_NAMES, items, encode_image_file, source="test", shard_size=20, workers=1)
    return out


@pytest.mark.slow
def test_hostile_class_names_train_print_and_resume(hostile_shards, tmp_path, capsys, force_unsafe_default):
    preset = tmp_path / "overrides.yaml"
    overrides = {"[/x]": {"policy": []}, "$x_$": {"policy": ["flip"]}}
    preset.write_text(yaml.safe_dump({"aug": {"class_overrides": overrides}}, allow_unicode=True))
    args = ["fit", "-c", str(preset), f"data.root={hostile_shards}", f"out_dir={tmp_path}", "name=run", *TINY]
    assert main(args) == 0  # the table is printed after training: a name must not fail a finished run
    printed = capsys.readouterr().out
    assert "Per-class validation accuracy" in printed
    for name in HOSTILE_NAMES:
        assert name in printed  # shown as written, not read as markup

    # classreg's own checkpoint, hyper-parameters included, is tensors and plain values only ...
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert type(hparams) is dict and hparams["class_names"] == HOSTILE_NAMES
    # ... so resuming from it works although torch would otherwise unpickle everything (the variable is set)
    assert main([*args, "trainer.max_epochs=2"]) == 0
    starts = [r for r in json.loads((run / "resume.json").read_text()) if r["event"] == "start"]
    assert [s["ckpt"] for s in starts] == [None, str(ckpt)] and starts[1]["epoch"] == 1
    rows = list(csv.DictReader(open(run / "per_class.csv", encoding="utf-8")))
    assert [r["class_name"] for r in rows if r["epoch"] == "1"] == HOSTILE_NAMES


def test_the_report_draws_and_escapes_hostile_class_names(tmp_path):
    from launch.report import build_report

    for i, (ls, shift) in enumerate([(0.0, 0), (0.1, 2)]):
        for seed in range(2):
            correct = [min(10, 3 + shift + seed + k) for k in range(4)]
            settings = [f"optim.label_smoothing={ls}", f"seed={seed}"]
            write_run(tmp_path / "sweep" / f"s{i}" / f"seed{seed}", settings, correct, [10] * 4, HOSTILE_NAMES)
    report = build_report([tmp_path / "sweep"], tmp_path / "report", progress=False)
    assert len(list((tmp_path / "report").rglob("*.png"))) == 4
    page = report.html.read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "$x_$" in page and "[/x]" in page and "Ünïcødé 猫" in page


def test_the_per_class_table_prints_hostile_class_names(tmp_path):
    import io

    from rich.console import Console

    from launch.per_class_table import print_per_class

    write_run(tmp_path / "[/run]", [], [3, 4, 5, 6], [10] * 4, HOSTILE_NAMES, epochs=1)
    console = Console(file=io.StringIO(), width=200)
    print_per_class(tmp_path / "[/run]", console)
    printed = console.file.getvalue()
    assert all(name in printed for name in HOSTILE_NAMES) and "[/run]" in printed


# -- 7. one fit at a time per run folder -------------------------------------------------------------------------


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the first fit exited early ({proc.returncode})"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_second_fit_into_a_live_run_folder_stops_and_names_the_holder(cifar_shards, tmp_path, capsys):
    common = ["fit", "-c", PRESET, f"data.root={cifar_shards}", f"out_dir={tmp_path}", "name=live", *TINY]
    first = subprocess.Popen(
        [sys.executable, "-m", "launch.cli", *common, "seed=0", "trainer.max_epochs=2"],
        env=_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = tmp_path / "live"
    try:
        _wait_for(run / "fit.lock.json", first)
        os.kill(first.pid, signal.SIGSTOP)  # the first fit holds the folder, frozen mid-run
        before = _files_under(run)
        rc = main([*common, "seed=1"])
        line = _one_line_error(capsys, rc, "fit", str(run), f"pid {first.pid}", f"host {socket.gethostname()}")
        assert "name=" in line and "out_dir=" in line  # the fix
        assert _files_under(run) == before  # the second fit wrote, moved and deleted nothing
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 0
    events = [(r["event"], r.get("pid")) for r in json.loads((run / "resume.json").read_text())]
    assert events == [("start", first.pid), ("end", None)]
    assert not (run / "logs" / "metrics.1.csv").exists() and not (run / "fit.lock.json").exists()
    assert {int(r["epoch"]) for r in csv.DictReader(open(run / "per_class.csv"))} == {0, 1}


HOLD_LOCK = """
import sys, time
from lightning_modules.run_folder_lock import RunFolderLock
lock = RunFolderLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(900)
"""


@pytest.mark.slow
def test_a_refused_two_rank_srun_fit_stops_every_rank(slurm_cluster, cifar_shards, tmp_path):
    """srun starts both ranks at once: rank 0 is refused by the lock, and rank 1 must not wait for it forever."""
    run = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _files_under(run)
        cmd = ["srun", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1", "--mem=1500M"]
        cmd += ["--time=10", sys.executable, "-m", "launch.cli", "fit", "-c", PRESET, f"data.root={cifar_shards}"]
        cmd += [f"out_dir={tmp_path}", "name=busy", "trainer.accelerator=cpu", "trainer.devices=2", *TINY]
        done = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=480)
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("classreg fit: error: ")]
        assert done.returncode == 2, done.stderr[-3000:]
        assert len(errors) == 2 and all(f"pid {holder.pid}" in ln for ln in errors), done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert _files_under(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_transfer_deletes_only_its_own_unfinished_probes(cifar_shards, tmp_path, capsys):
    from lightning_modules.classifier import Classifier

    cfg = load_config(None, [f"data.root={cifar_shards}", *TINY])
    run = tmp_path / "sweep" / "p0"
    run.mkdir(parents=True)
    save_resolved(cfg, run / "config.yaml")
    (run / "per_class.csv").write_text("epoch,class_index,class_name,correct,total,accuracy\n0,0,a,1,2,0.5\n")
    model = Classifier.from_config(cfg, [f"c{i}" for i in range(10)])
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": model.state_dict()}, run / "checkpoints" / "last.ckpt")
    mine = tmp_path / "results" / "p0"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own notes")
    downstream = tmp_path / "downstream.yaml"
    downstream.write_text(yaml.safe_dump({"data": {"root": str(cifar_shards)}}))
    rc = main(["transfer", str(tmp_path / "sweep"), "-d", str(downstream), "--out", str(tmp_path / "results")])
    _one_line_error(capsys, rc, "transfer", str(mine), "not a probe run folder", "--out")
    assert _files_under(mine) == {"notes.txt": b"my own notes"}


def test_report_names_a_run_config_with_a_tag_in_one_line(tmp_path, capsys):
    for seed in range(2):
        write_run(tmp_path / f"seed{seed}", [f"seed={seed}"], [3, 4], [10, 10], ["a", "b"])
    bad = tmp_path / "seed1" / "config.yaml"
    bad.write_text(bad.read_text() + "extra: !!python/object/apply:os.system ['true']\n")
    rc = main(["report", str(tmp_path), "--no-progress"])
    _one_line_error(capsys, rc, "report", str(bad), "!!python/object/apply")
