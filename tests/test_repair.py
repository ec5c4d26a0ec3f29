"""`classreg repair` on real sweep folders with planted per-class results, and the three-setting report."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from launch.cli import main
from launch.sweep.folder import Sweep, materialise
from launch.sweep.status import transition
from tests.sweep_helpers import write_spec
from tests.synthetic_runs import simulate_counts, write_results

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SHIRT, TSHIRT = NAMES.index("Shirt"), NAMES.index("T-shirt/top")
SEEDS, IMAGES = (0, 1, 2, 3, 4), 400
POLICIES = [["none"], ["pad_crop", "flip"], ["pad_crop"]]  # the reference, the best mean, a harmless third


def _base_acc():
    return np.linspace(0.6, 0.9, len(NAMES))


def _finish(sweep_dir, shift_of, rng):
    """Every point done, with per_class.csv drawn at base accuracy + shift_of(point params)."""
    counts = {}
    for point, status in Sweep.open(sweep_dir).statuses():
        params = status["params"]
        c = simulate_counts(rng, _base_acc(), shift_of(params), 1, IMAGES)[0]
        write_results(point, c, [IMAGES] * len(NAMES), NAMES)
        transition(point, "done")
        counts[point] = c
    return counts


def _shift(params):
    shift = np.zeros(len(NAMES))
    if params["aug.policy"] == POLICIES[1]:
        shift += 0.04
        shift[SHIRT] = -0.25
    return shift


def _repaired_shift(params):  # the repair gives Shirt back half of its loss and moves errors to T-shirt/top
    shift = np.full(len(NAMES), 0.04)
    shift[SHIRT] = -0.125
    shift[TSHIRT] = -0.10
    return shift


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("repair")
    spec = write_spec(
        root / "spec.yaml",
        root / "shards",
        "planted",
        {"zip": {"aug.policy": POLICIES, "wd.value": [5e-4, 5e-3, 1e-3]}},
        seeds=SEEDS,
        resources={"mem": "700M"},
    )
    materialise(spec, root / "sweep")
    counts = _finish(root / "sweep", _shift, np.random.default_rng(3))
    return root, counts


def test_repair_dry_run_finds_the_hurt_class_and_writes_nothing(source, capsys):
    root, _ = source
    assert main(["repair", str(root / "sweep"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 class(es) of aug.policy=('pad_crop', 'flip'), wd.value=0.005 get the augmentation" in out
    assert out.count("Shirt") >= 2 and "T-shirt/top" not in out.split("\n")[0]
    assert "note: wd.value is 0.005" in out and "keeps 0.005" in out  # a class cannot get its own weight decay
    assert "dry run: would write" in out and "nothing written" in out
    assert not (root / "sweep-repair").exists()


def test_repair_writes_the_class_conditional_sweep_like_its_source(source, tmp_path, capsys):
    root, _ = source
    # the source ran locally: so does its repair (no SLURM needed), here with nothing to run after the write
    out_dir = tmp_path / "rep"
    assert main(["repair", str(root / "sweep"), "--dir", str(out_dir), "--dry-run"]) == 0
    from launch.repair import plan_repair, prepare_repair

    plan = plan_repair(root / "sweep", out_dir=out_dir)
    assert plan.executor == "local" and plan.classes == ["Shirt"] and plan.patch == {"policy": ["none"]}
    prepared = prepare_repair(plan, tmp_path / "spec.yaml")
    sweep, new, total = prepared.write()
    spec = yaml.safe_load((out_dir / "spec.yaml").read_text())
    source_spec = yaml.safe_load((root / "sweep" / "spec.yaml").read_text())
    assert spec["seeds"] == list(SEEDS) and spec["resources"] == {**spec["resources"], **source_spec["resources"]}
    assert spec["resources"]["mem"] == "700M" and spec["overrides"] == source_spec["overrides"]
    assert spec["axes"]["product"]["aug.class_overrides.Shirt.policy"] == [["none"]]
    assert total == len(SEEDS) == new
    # each repaired point's config is the best point's config plus the class override
    best = next(p for p, s in Sweep.open(root / "sweep").statuses() if s["params"]["aug.policy"] == POLICIES[1])
    b = yaml.safe_load((best / "config.yaml").read_text())
    r = yaml.safe_load(next((out_dir / "points").glob("*/config.yaml")).read_text())
    assert r["aug"].pop("class_overrides") == {"Shirt": {"policy": ["none"]}}
    b["aug"].pop("class_overrides")
    for key in ("name", "out_dir", "seed", "logger"):
        b.pop(key), r.pop(key)
    assert r == b


def test_classes_are_checked_and_no_hurt_class_is_one_line(source, tmp_path, capsys):
    root, _ = source
    assert main(["repair", str(root / "sweep"), "--classes", "Shirts", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("classreg repair: error: --classes: 'Shirts' is not a class") and "Shirt" in err
    assert "\n" not in err
    assert main(["repair", str(root / "sweep"), "--classes", "T-shirt/top", "Coat", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "aug.class_overrides[T-shirt/top].policy" in out and "aug.class_overrides.Coat.policy" in out
    # the harmless setting lowers no class against the reference: nothing to repair, one line, exit 2
    assert main(["repair", str(root / "sweep"), "--from", "wd.value=0.001", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "significantly lowers no class" in err and "--classes" in err and "\n" not in err
    # a setting named by its label as the report prints it (list values cannot be written key=value)
    assert main(["repair", str(root / "sweep"), "--from", "aug.policy=('pad_crop',), wd.value=0.001", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == err


@pytest.fixture(scope="module")
def repaired(source, tmp_path_factory):
    root, counts = source
    from launch.repair import REPAIR_FILE, plan_repair, prepare_repair

    plan = plan_repair(root / "sweep")
    prepare_repair(plan, tmp_path_factory.mktemp("spec") / "spec.yaml").write()
    (plan.out_dir / REPAIR_FILE).write_text(json.dumps(plan.record()))
    rep_counts = _finish(plan.out_dir, _repaired_shift, np.random.default_rng(5))
    return root, counts, rep_counts, plan.out_dir


def _seed_mean(counts, keep):
    return np.mean([c for p, c in counts.items() if keep(p)], axis=0) / IMAGES


def test_three_setting_report_numbers_are_exact(repaired, tmp_path, capsys):
    root, counts, rep_counts, rep_dir = repaired
    out = tmp_path / "report"
    assert main(["report", str(root / "sweep"), str(rep_dir), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    params = {p: json.loads((p / "status.json").read_text())["params"] for p in counts}
    ref = _seed_mean(counts, lambda p: params[p]["aug.policy"] == POLICIES[0])
    best = _seed_mean(counts, lambda p: params[p]["aug.policy"] == POLICIES[1])
    rep = _seed_mean(rep_counts, lambda p: True)
    loss, recovered = ref[SHIRT] - best[SHIRT], rep[SHIRT] - best[SHIRT]
    summary = json.loads((out / "report.json").read_text())
    r = summary["repair"]
    assert r["classes"] == ["Shirt"] and "wd.value=0.005" in r["best_mean"] and "wd.value=0.0005" in r["reference"]
    assert r["recovered_fraction"] == pytest.approx(recovered / loss, abs=1e-12)
    assert 0.2 < r["recovered_fraction"] < 0.8  # planted: half
    row = r["per_class"][0]
    assert row["loss"] == pytest.approx(loss) and row["change_vs_best"] == pytest.approx(recovered)
    assert row["significant"] is True  # 12.5 points back, 5 seeds of 400 images
    assert r["mean_change_vs_best"] == pytest.approx(rep.mean() - best.mean())
    half = int(recovered >= loss / 2)
    x = f"{100 * recovered / loss:.0f}%"
    line = (
        f"class-conditional augmentation recovers {x} of the hurt classes' loss ({half} of 1 class recovers at least "
        f"half) and changes mean accuracy by {100 * (rep.mean() - best.mean()):+.1f} points"
    )
    assert r["headline"] == line and printed[1] == line and printed[0] == summary["headline"]
    # the repair moves errors: T-shirt/top is lowered against best, and the report says so
    assert [c["class_name"] for c in r["other_classes_changed"]] == ["T-shirt/top"]
    # best-mean and reference are chosen among the source settings only
    assert summary["best_mean"] == "aug.policy=('pad_crop', 'flip'), wd.value=0.005"  # labels as without the repair
    assert r["repaired"] == "Shirt.policy=('none',), aug.policy=('pad_crop', 'flip'), wd.value=0.005"
    table = pd.read_csv(out / "repair.csv")
    assert table.class_name.tolist() == ["Shirt"]
    html = (out / "report.html").read_text()
    assert 'id="repair-headline"' in html and 'id="repair"' in html and 'id="fig-repair"' in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_repair_figure_renders_in_headless_chromium(repaired, tmp_path):
    from launch.report import build_report

    root, _, _, rep_dir = repaired
    report = build_report([root / "sweep", rep_dir], tmp_path / "r", progress=False)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", report.html.resolve().as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-figures-shown="5"' in dom  # the four figures of every report and the three-setting bar plot
    assert "Class-conditional repair" in dom and "recovers" in dom


def test_report_prints_no_empty_lines_where_stderr_is_not_a_terminal(source, tmp_path):
    """The progress bars are transient; where they cannot be erased (a pipe, a log) they are not drawn at all:
    before, each of them left an empty line above the headline."""
    import os
    import sys

    root, _ = source
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-m", "launch.cli", "report", str(root / "sweep"), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.splitlines()[0].startswith("best-mean setting")


def test_repair_of_a_report_folder_reads_its_sweep_and_options(source, tmp_path, capsys):
    root, _ = source
    assert main(["report", str(root / "sweep"), "--out", str(tmp_path / "r"), "--no-progress", "--fdr", "0.05"]) == 0
    assert main(["repair", str(tmp_path / "r"), "--dry-run"]) == 0  # the report lies outside the sweep
    out = capsys.readouterr().out
    assert f"repair of {(root / 'sweep').resolve()}: 1 class(es)" in out and "Shirt" in out
    from launch.repair import source_sweep

    sweep, options = source_sweep(tmp_path / "r")
    assert sweep == (root / "sweep").resolve() and options["fdr"] == 0.05


def test_a_sweep_submitted_to_slurm_is_repaired_on_slurm(slurm_cluster, tmp_path, capsys):
    """Same executor: the source sweep went to SLURM (real job arrays here), so its repair is submitted too."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        tmp_path / "shards",
        "slurmsrc",
        {"zip": {"aug.policy": POLICIES[:2], "wd.value": [5e-4, 5e-3]}},
        seeds=SEEDS,
    )
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "submit", str(spec), "--dir", str(sweep_dir), "--hold"]) == 0
    assert main(["sweep", "cancel", str(sweep_dir)]) == 0
    _finish(sweep_dir, _shift, np.random.default_rng(3))
    capsys.readouterr()
    assert main(["repair", str(sweep_dir), "--dir", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "submitted job array" in out and f"with {len(SEEDS)} points" in out
    jobs = (tmp_path / "rep" / "submissions" / "jobs.txt").read_text().split()
    assert jobs[2] == str(len(SEEDS))
    record = json.loads((tmp_path / "rep" / "repair.json").read_text())
    assert record["classes"] == ["Shirt"] and record["source"] == str(sweep_dir.resolve())
    assert main(["sweep", "cancel", str(tmp_path / "rep")]) == 0


def test_a_repair_sweep_still_running_is_reported_as_exploratory(repaired, tmp_path, capsys):
    root, _, _, rep_dir = repaired
    partial = tmp_path / "partial-repair"
    shutil.copytree(rep_dir, partial)
    point = Sweep.open(partial).statuses()[0][0]
    transition(point, "running")
    assert main(["report", str(root / "sweep"), str(partial), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("class-conditional augmentation recovers") and "(exploratory: " in line
    assert "is partial (4 of 5 seeds finished)" in line
    r = json.loads((tmp_path / "r" / "report.json").read_text())["repair"]
    assert r["exploratory"] is True and r["per_class"][0]["significant"] is None


def test_a_repair_that_would_change_more_than_the_class_overrides_is_refused(source, tmp_path, capsys):
    """The repair re-resolves the source sweep's base preset: edited since the sweep ran, it would change the
    best-mean setting itself. Here the best-mean runs were trained with another lr than the preset now gives."""
    root, _ = source
    sweep = tmp_path / "sweep"
    shutil.copytree(root / "sweep", sweep, symlinks=True)
    for point, status in Sweep.open(sweep).statuses():
        if status["params"]["aug.policy"] == POLICIES[1]:
            cfg = yaml.safe_load((point / "config.yaml").read_text())
            cfg["optim"]["lr"] = cfg["optim"]["lr"] / 2
            (point / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["repair", str(sweep), "--classes", "Shirt", "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "would differ from" in err and "optim.lr" in err and "base preset edited" in err
    assert not (tmp_path / "sweep-repair").exists()
