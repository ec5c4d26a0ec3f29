"""Sweep specs and sweep folders from colleagues and strangers: each planted input is refused with one line that
names the key (or file, or character) and the fix, and nothing is run, written or lost. No SLURM needed here;
the real-cluster checks are in tests/test_sweep_slurm_hostile.py."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import torch
import webdataset as wds
import yaml
from sweep_helpers import write_spec

from datamodules.torchvision_backend.decode import decode_sample
from launch.cli import main
from launch.config import key_parts, load_config
from launch.fit import build_datamodule
from launch.sweep.folder import Sweep, materialise
from launch.sweep.resources import Resources
from launch.sweep.slurm import SlurmError, render_array_script
from launch.sweep.spec import load_spec, resolve_points
from launch.sweep.status import transition
from launch.sweep.submit import split_throttle, submit

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _spec(tmp_path, shards, resources=None, axes=None, extra=(), name="hostile"):
    path = write_spec(tmp_path / "spec.yaml", shards, name, axes or {"product": {"optim.lr": [0.1, 0.05]}}, extra=extra)
    spec = yaml.safe_load(path.read_text())
    spec["resources"].update(resources or {})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _refused(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("classreg sweep: error: ") and err.count("\n") == 1, err  # one line, no traceback
    return err


@pytest.mark.parametrize(
    "resources, named",
    [
        ({"time": "00:30:00\ntouch X"}, "resources.time"),
        ({"time": "00:30:00 && touch X"}, "resources.time"),
        ({"time": "1 day"}, "resources.time"),
        ({"partition": "gpu\ntouch X"}, "resources.partition"),
        ({"partition": "gpu;touch X"}, "resources.partition"),
        ({"account": "$(touch X)"}, "resources.account"),
        ({"qos": "high\r"}, "resources.qos"),
        ({"mem": "32G\n#SBATCH --uid=0"}, "resources.mem"),
        ({"extra_sbatch": ["--constraint=a\ntouch X"]}, "resources.extra_sbatch"),
        ({"extra_sbatch": ["--constraint=$(touch X)"]}, "resources.extra_sbatch"),
        ({"extra_sbatch": ["--comment 'a b'"]}, "resources.extra_sbatch"),
        ({"extra_sbatch": ["-o /tmp/x"]}, "resources.extra_sbatch"),
        ({"extra_sbatch": ["--output=/home/me/.bashrc"]}, "--output"),
        ({"extra_sbatch": ["--outp=/home/me/.bashrc"]}, "--output"),  # sbatch takes any unique prefix
        ({"extra_sbatch": ["--export=ALL,LD_PRELOAD=/tmp/x.so"]}, "--export"),
        ({"extra_sbatch": ["--array=0-99"]}, "--array"),
        ({"extra_sbatch": ["--time=99:00:00"]}, "resources.time"),
        ({"requeue_signal": "TERM"}, "resources.requeue_signal"),
    ],
)
def test_resource_strings_that_would_leave_their_line_are_refused(
    tmp_path, cifar_shards, capsys, monkeypatch, resources, named
):
    monkeypatch.chdir(tmp_path)  # where a `touch X` that got through would land
    spec = _spec(tmp_path, cifar_shards, resources)
    sweep_dir = tmp_path / "sweep"
    assert named in _refused(["sweep", "plan", str(spec)], capsys)
    assert named in _refused(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--dry-run"], capsys)
    assert not sweep_dir.exists() and not (tmp_path / "X").exists()


def test_allowed_resources_render_one_directive_per_line(tmp_path, cifar_shards):
    spec = _spec(
        tmp_path,
        cifar_shards,
        {
            "time": "2-12:30",
            "partition": "gpu,gpu-long",
            "account": "proj_a.b-1",
            "qos": "high",
            "requeue_signal": "USR2",
            "signal_seconds": 120,
            "extra_sbatch": ["--constraint=volta32gb&ib", "--exclusive", "--gres=gpu:a100:4", "--mail-user=a@b.org"],
        },
    )
    sweep, _, _ = materialise(spec, tmp_path / "sweep")
    submit(sweep, dry_run=True)
    script = (sweep.dir / "submissions" / "001.sbatch").read_text()
    lines = script.splitlines()
    # sbatch reads #SBATCH lines up to the first command: every directive must come before it
    first_command = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#"))
    directives = [ln for ln in lines[:first_command] if ln.startswith("#SBATCH")]
    assert not [ln for ln in lines[first_command:] if ln.startswith("#SBATCH")]
    for want in (
        "--time=2-12:30",
        "--partition=gpu,gpu-long",
        "--account=proj_a.b-1",
        "--qos=high",
        "--signal=USR2@120",
        "--constraint=volta32gb&ib",
        "--exclusive",
        "--gres=gpu:a100:4",
        "--mail-user=a@b.org",
    ):
        assert f"#SBATCH {want}" in directives
    subprocess.run(["bash", "-n", str(sweep.dir / "submissions" / "001.sbatch")], check=True)  # valid shell
    for p in sweep.point_dirs():  # Lightning is told the same signal as sbatch
        assert load_config(p / "config.yaml").trainer.requeue_signal == "USR2"


def test_the_renderer_refuses_an_unchecked_value(tmp_path):
    # Resources built in code skip the spec's validation: the renderer still lets no value leave its line.
    for bad in ({"time": "00:30:00\ntouch X"}, {"mem": "1G\n"}, {"extra_sbatch": ["--qos=a\ntouch X"]}):
        with pytest.raises(Exception, match="resources|line"):
            render_array_script(
                job_name="classreg-x",
                array="0-1%1",
                points_file=tmp_path / "p",
                log_dir=tmp_path / "logs",
                resources=Resources(**bad),
            )
    with pytest.raises(SlurmError, match="job name"):
        render_array_script(
            job_name="x\ntouch X", array="0-1%1", points_file=tmp_path / "p", log_dir=tmp_path, resources=Resources()
        )


@pytest.mark.parametrize("char, named", [('"', "a double quote"), ("\\", "a backslash"), ("\n", "control character")])
def test_a_sweep_folder_sbatch_cannot_name_is_refused_before_writing(tmp_path, cifar_shards, capsys, char, named):
    spec = _spec(tmp_path, cifar_shards)
    sweep_dir = tmp_path / f"run{char}s"
    err = _refused(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--dry-run"], capsys)
    assert named in err and "--output" in err and "choose a --dir" in err
    assert not sweep_dir.exists()


def test_a_sweep_folder_with_shell_characters_is_quoted(tmp_path, cifar_shards):
    sweep_dir = tmp_path / "my sweep 100% $(touch X) `touch Y` 'q'"
    sweep, _, _ = materialise(_spec(tmp_path, cifar_shards), sweep_dir)
    submit(sweep, dry_run=True)
    script = (sweep.dir / "submissions" / "001.sbatch").read_text()
    logs = str(sweep.dir / "logs")
    assert f'#SBATCH --output="{logs.replace("%", "%%")}/%A_%a.out"' in script  # sbatch: '%%' is a '%'
    # the script's shell part up to the task, run with a task id: every path arrives whole, nothing runs
    body = script.split("\nset -uo pipefail\n", 1)[1]
    prelude = body.split("\n" + shlex.quote(sys.executable) + " -m launch.sweep.task start", 1)[0]
    out = subprocess.run(
        ["bash", "-c", prelude + '\nprintf "%s\\n%s\\n" "$POINT" "$LOG"'],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_JOB_ID": "7"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    listed = (sweep.dir / "submissions" / "001.points").read_text().splitlines()
    assert out[-2:] == [listed[1], f"{logs}/7_1.out"]
    assert not (tmp_path / "X").exists() and not (tmp_path / "Y").exists()


def test_a_planted_sweep_folder_is_refused_not_run(tmp_path, cifar_shards, capsys):
    sweep, _, _ = materialise(_spec(tmp_path, cifar_shards), tmp_path / "sweep")
    meta = sweep.dir / "sweep.json"
    good = meta.read_text()

    # a job name with a line break would become a shell line of the job script, and goes to squeue/scancel
    meta.write_text(json.dumps({**json.loads(good), "job_name": "x\ntouch X"}))
    err = _refused(["sweep", "resume", str(sweep.dir), "--dry-run"], capsys)
    assert "sweep.json" in err and "is not a sweep.json that classreg writes" in err
    meta.write_text(good)

    # the folder's spec.yaml is what resume submits: it is checked like any spec
    (sweep.dir / "spec.yaml").write_text(
        (sweep.dir / "spec.yaml").read_text().replace("time: 00:10:00", 'time: "00:10:00\\ntouch X"')
    )
    assert "resources.time" in _refused(["sweep", "resume", str(sweep.dir), "--dry-run"], capsys)
    assert not (sweep.dir / "submissions").exists()

    # a status.json that classreg did not write stops status and resume, naming the file
    point = sweep.point_dirs()[0]
    status = json.loads((point / "status.json").read_text())
    (point / "status.json").write_text(json.dumps({**status, "owner": {"kind": "local", "host": "h", "pid": "1"}}))
    err = _refused(["sweep", "status", str(sweep.dir)], capsys)
    assert str(point / "status.json") in err and "not a point status that classreg writes" in err
    (point / "status.json").write_text(json.dumps(status))

    # folders that are not points are left alone, and kept
    (sweep.points_dir / "notes").mkdir()
    (sweep.points_dir / "notes" / "status.json").write_text("my notes")
    assert main(["sweep", "status", str(sweep.dir)]) == 0
    assert (sweep.points_dir / "notes" / "status.json").read_text() == "my notes"


def test_status_prints_what_a_status_file_says_without_obeying_it(tmp_path, cifar_shards, capsys):
    sweep, _, _ = materialise(_spec(tmp_path, cifar_shards), tmp_path / "sweep")
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    first, second = sweep.point_dirs()
    own_log = sweep.dir / "logs" / "3_1.out"
    own_log.parent.mkdir()
    own_log.write_text("epoch 0\nRuntimeError: [bold]boom[/]\n")
    transition(first, "failed", reason="[/] [link=file:///x]exit[/link] code 1", log=str(secret))
    transition(second, "failed", reason="exit code 1", log=str(own_log))
    assert main(["sweep", "status", str(sweep.dir)]) == 0  # rich markup in a status file is text, not markup
    out = capsys.readouterr().out
    assert "[/] [link=file:///x]exit[/link] code 1" in " ".join(out.split())
    assert "hunter2" not in out  # a log outside the sweep folder is not read
    assert "RuntimeError: [bold]boom[/]" in out
    assert main(["sweep", "status", str(sweep.dir), "--json"]) == 0
    assert "hunter2" not in capsys.readouterr().out


def _fashion_shards(cifar_shards, tmp_path):
    """The CIFAR fixture's shards under Fashion-MNIST's class names (dots, slashes and spaces)."""
    shards = tmp_path / "fashion-names"
    shutil.copytree(cifar_shards, shards)
    (shards / "classes.json").write_text(json.dumps({str(i): n for i, n in enumerate(FASHION)}))
    return shards


def test_key_paths_follow_omegaconf():
    from omegaconf import OmegaConf

    for key in ("optim.lr", "aug.class_overrides[T-shirt/top].policy", "aug.class_overrides[a.b c].rrc.min_scale"):
        cfg = OmegaConf.from_dotlist([f"{key}=1"])
        node = OmegaConf.to_container(cfg)
        for part in key_parts(key):
            node = node[part]
        assert node == 1
    for bad in ("", ".lr", "optim..lr", "optim.lr.", "aug.class_overrides[x", "a]b"):
        with pytest.raises(Exception, match="is not a key path"):
            key_parts(bad)


def test_class_conditional_keys_are_sweepable(tmp_path, cifar_shards, capsys):
    shards = _fashion_shards(cifar_shards, tmp_path)
    axes = {"product": {"aug.class_overrides[T-shirt/top].policy": [["none"], ["rrc"]]}}
    extra = ("aug.policy=[rrc]", "aug.rrc.max_scale=0.9", "aug.class_overrides[Ankle boot].policy=[none]")
    spec = _spec(tmp_path, shards, axes=axes, extra=extra)

    assert main(["sweep", "plan", str(spec), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["points"] == 2
    assert [p["params"] for p in plan["points_list"]] == [
        {"aug.class_overrides[T-shirt/top].policy": ["none"]},
        {"aug.class_overrides[T-shirt/top].policy": ["rrc"]},
    ]
    assert main(["sweep", "plan", str(spec)]) == 0
    assert "T-shirt/top.policy=['none']" in capsys.readouterr().out

    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--dry-run"]) == 0
    assert "would submit 2 points" in capsys.readouterr().out
    sweep = Sweep.open(sweep_dir)
    configs = {s["params"]["aug.class_overrides[T-shirt/top].policy"][0]: p for p, s in sweep.statuses()}
    point = configs["none"]
    assert yaml.safe_load((point / "config.yaml").read_text())["aug"]["class_overrides"] == {
        "Ankle boot": {"policy": ["none"]},
        "T-shirt/top": {"policy": ["none"]},
    }
    cfg = load_config(point / "config.yaml")
    assert cfg.aug.class_overrides["T-shirt/top"] == {"policy": ["none"]}

    # the point's datamodule (what `classreg fit` builds) applies the override to those classes only
    cfg = load_config(point / "config.yaml", ["data.num_workers=0"])
    dm = build_datamodule(cfg)
    dm.setup()
    overridden = {FASHION.index("T-shirt/top"), FASHION.index("Ankle boot")}
    urls = [str(shards / s["file"]) for s in dm.manifest["splits"]["train"]["shards"]]
    torch.manual_seed(0)
    checked = {True: 0, False: 0}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        image, label = decode_sample(sample, len(FASHION))
        outs = [dm.train_transform(image, label) for _ in range(3)]
        same = torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
        assert same == (label in overridden), (label, sample["__key__"])
        checked[label in overridden] += 1
    assert checked == {True: 48, False: 192}

    # and `classreg fit` runs on it: the class names are checked against classes.json at fit start too
    rc = main(["fit", "-c", str(point / "config.yaml"), "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"])
    assert rc == 0 and (point / "metrics.json").is_file()


def test_unknown_class_names_are_refused_at_plan_when_the_shards_are_readable(tmp_path, cifar_shards, capsys):
    shards = _fashion_shards(cifar_shards, tmp_path)
    spec = _spec(tmp_path, shards, axes={"product": {"aug.class_overrides[T-shirt top].rrc.max_scale": [1.0, 0.15]}})
    err = _refused(["sweep", "plan", str(spec)], capsys)
    assert "'T-shirt top' is not a class of these shards. Did you mean 'T-shirt/top'?" in err
    assert "aug.class_overrides[T-shirt/top]" in err  # how to write a name with a slash
    assert "point 0" in err

    spec = _spec(tmp_path, shards, axes={"product": {"aug.class_overrides.12.policy": [["none"]]}})
    assert "'12' is not a class of these shards" in _refused(["sweep", "plan", str(spec)], capsys)

    # the issue's own example: a traceback before; on the CIFAR names 'seven' is no class
    spec = _spec(tmp_path, cifar_shards, axes={"product": {"aug.class_overrides.seven.rrc.max_scale": [1.0, 0.15]}})
    assert "'seven' is not a class of these shards" in _refused(["sweep", "plan", str(spec)], capsys)
    assert "'seven' is not a class" in _refused(
        ["sweep", "submit", str(spec), "--dir", str(tmp_path / "s"), "--dry-run"], capsys
    )
    assert not (tmp_path / "s").exists()

    # without readable shards the class is checked at fit start, as for `classreg fit`; the aug keys still now
    spec = _spec(
        tmp_path, tmp_path / "not-yet", axes={"product": {"aug.class_overrides.seven.rrc.max_scale": [1.0, 0.15]}}
    )
    assert main(["sweep", "plan", str(spec)]) == 0
    capsys.readouterr()
    spec = _spec(
        tmp_path, tmp_path / "not-yet", axes={"product": {"aug.class_overrides.seven.rrc.max_scal": [1.0, 0.15]}}
    )
    err = _refused(["sweep", "plan", str(spec)], capsys)
    assert "aug.class_overrides.seven" in err and "max_scal" in err and "max_scale" in err
    spec = _spec(tmp_path, tmp_path / "not-yet", axes={"product": {"aug.class_overrides.seven.rrc.max_scale": [7.0]}})
    assert "aug.rrc.max_scale" in _refused(["sweep", "plan", str(spec)], capsys)


def test_reserved_keys_cannot_hide_behind_another_spelling(tmp_path, cifar_shards, capsys):
    spec = _spec(tmp_path, cifar_shards, axes={"product": {"trainer[devices]": [1, 2]}})
    assert "use resources.* instead" in _refused(["sweep", "plan", str(spec)], capsys)
    spec = _spec(tmp_path, cifar_shards, extra=("trainer[devices]=2",))
    assert "resources.tasks_per_node" in _refused(["sweep", "plan", str(spec)], capsys)
    spec = _spec(tmp_path, cifar_shards, extra=("trainer.requeue_signal=USR2",))
    assert "resources.requeue_signal" in _refused(["sweep", "plan", str(spec)], capsys)
    spec = _spec(tmp_path, cifar_shards, axes={"product": {"optim.lr": [0.1], "optim[lr]": [0.2]}})
    assert "are the same key" in _refused(["sweep", "plan", str(spec)], capsys)


def test_a_sweep_larger_than_max_array_size_becomes_several_arrays(tmp_path, cifar_shards):
    spec = _spec(tmp_path, cifar_shards, {"throttle": 5}, axes={"product": {"optim.lr": [0.1, 0.2, 0.3, 0.4]}})
    spec_text = yaml.safe_load(spec.read_text())
    spec_text["seeds"] = [0, 1]
    spec.write_text(yaml.safe_dump(spec_text))
    sweep, _, total = materialise(spec, tmp_path / "sweep")
    arrays, ids = submit(sweep, dry_run=True, max_array_size=3)
    assert total == 8 and len(ids) == 8
    subs = sweep.dir / "submissions"
    scripts = sorted(subs.glob("*.sbatch"))
    assert [p.name for p in scripts] == ["001.sbatch", "002.sbatch", "003.sbatch"]
    arrays = [re.search(r"#SBATCH --array=(\S+)", p.read_text()).group(1) for p in scripts]
    assert arrays == ["0-2%2", "0-2%2", "0-1%1"]  # task ids below MaxArraySize; 5 tasks at once in all
    listed = [line for p in sorted(subs.glob("*.points")) for line in p.read_text().splitlines()]
    assert sorted(listed) == sorted(str(p) for p in sweep.point_dirs())  # every point once
    assert split_throttle(2, 3) == [1, 1, 1] and split_throttle(16, 3) == [6, 5, 5] and split_throttle(4, 1) == [4]


def test_config_yaml_round_trips_every_point(tmp_path, cifar_shards):
    from datamodules.configkit import dump_yaml

    axes = {
        "product": {"wd.value": [0.0, 5.0e-5, 1e-3], "aug.class_overrides.cat.rrc.min_scale": [0.5, 1.0]},
        "zip": {"optim.lr": [0.1, 0.05], "aug.policy": [["rrc", "flip"], ["pad_crop"]]},
    }
    spec = _spec(tmp_path, cifar_shards, axes=axes, extra=("aug.class_overrides.5.policy=[flip]",))
    sweep, _, total = materialise(spec, tmp_path / "sweep")
    points = {p.id: p for p in resolve_points(load_spec(spec), spec, out_dir=sweep.points_dir)}
    assert total == 12
    for pdir in sweep.point_dirs():
        text = (pdir / "config.yaml").read_text()
        assert text == dump_yaml(points[pdir.name].config)  # the per-section cache writes what dump_yaml does
        assert load_config(pdir / "config.yaml") == points[pdir.name].config
