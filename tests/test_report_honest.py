"""What the report may claim: exploratory comparisons, the degrees of freedom behind every p-value, finished
runs only (live sweeps, diverged runs), which config keys are settings, ReaL labels and the test split."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console

from launch.cli import main
from launch.report import ReportOptions, build_report
from launch.report.stats import compare
from launch.sweep.folder import materialise
from launch.sweep.status import read_status, transition
from tests.synthetic_runs import simulate_counts, write_results, write_run

NAMES4 = [f"c{i}" for i in range(4)]


def _json(out) -> dict:
    return json.loads((out / "report.json").read_text(), parse_constant=pytest.fail)  # NaN/Infinity: invalid JSON


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=400)


def _setting(root, name, overrides, counts, images, names, **kw) -> list:
    """One run folder per row of ``counts`` (seeds x classes), seeds 0, 1, ..."""
    return [
        write_run(root / name / f"seed{s}", [*overrides, f"seed={s}"], row, [images] * len(names), names, **kw)
        for s, row in enumerate(np.atleast_2d(counts))
    ]


# items 11-12: what a comparison with one seed, or with two, may say


def test_one_seed_per_setting_claims_no_significance_anywhere(tmp_path):
    _setting(tmp_path, "wd0", ["wd.value=0"], [45, 45, 45, 45], 50, NAMES4)
    _setting(tmp_path, "wd1", ["wd.value=0.001"], [50, 50, 50, 35], 50, NAMES4)
    out = tmp_path / "out"
    report = build_report(tmp_path, out, progress=False, console=_quiet())
    assert report.reference == "wd.value=0" and report.best == "wd.value=0.001"
    reason = "one seed: no seed-to-seed variance can be estimated, so no change can be called significant"
    assert "exploratory" in report.headline and reason in report.headline
    assert "significant" not in report.headline.replace("can be called significant", "")
    assert "(largest drop: c3, from 90% to 70%)" in report.headline

    comp = pd.read_csv(out / "comparisons.csv").query("baseline == 'reference'")
    assert comp.change.round(2).tolist() == [0.1, 0.1, 0.1, -0.2]  # the changes are shown
    for column in ("p_value", "q_value", "significant", "df"):
        assert comp[column].isna().all(), column  # written empty: no claim either way
    assert comp.exploratory.all() and comp.reason.str.contains(reason).all()
    summary = _json(out)
    assert all(r["significant"] is None and r["p_value"] is None and r["df"] is None for r in summary["comparisons"])
    assert summary["tests"][0]["exploratory"] is True and reason in summary["tests"][0]["reason"]
    assert summary["method"].startswith("exploratory, no p-values:")
    assert [(s["lowered_vs_reference"], s["raised_vs_reference"]) for s in summary["settings"]] == [(None, None)] * 2
    html = (out / "report.html").read_text()
    assert "exploratory" in html and 'class="sig-lower"' not in html and 'class="sig-higher"' not in html


def test_two_seeds_state_the_degrees_of_freedom_behind_every_p_value(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 0.9, 100)
    a, b = simulate_counts(rng, base, 0.0, 2, 50), simulate_counts(rng, base, -0.05, 2, 50)
    _setting(tmp_path, "wd0", ["wd.value=0"], a, 50, [f"k{i}" for i in range(100)])
    _setting(tmp_path, "wd1", ["wd.value=0.001"], b, 50, [f"k{i}" for i in range(100)])
    out = tmp_path / "out"
    build_report(tmp_path, out, ReportOptions(reference="wd.value=0.001"), progress=False, console=_quiet())
    # the same test computed here: the report must carry its numbers, not its own
    truth = compare((b, np.full_like(b, 50)), (a, np.full_like(a, 50)), 0.1)
    assert truth.residual_df == 2 and truth.relabellings == 3 and truth.p_floor == pytest.approx(1 / 201)

    summary = _json(out)
    expected = (
        f"moderated t on the arcsine scale, 2 residual + {truth.prior_df:.1f} prior df per class; p from 3 "
        "relabellings of the runs pooled over 100 classes (smallest possible p 0.005); Benjamini-Hochberg FDR 0.1"
    )
    assert summary["method"] == expected
    test = summary["tests"][0]
    assert (test["residual_df"], test["relabellings"], test["classes_tested"]) == (2, 3, 100)
    assert test["prior_df"] == pytest.approx(truth.prior_df) and test["p_floor"] == pytest.approx(1 / 201)
    comp = pd.read_csv(out / "comparisons.csv").query("baseline == 'reference'")
    assert np.allclose(comp.df, truth.df) and np.allclose(comp.df, 2 + truth.prior_df)
    assert np.allclose(comp.p_value, truth.p_value) and (~comp.exploratory).all()
    assert pd.read_csv(out / "tests.csv").method.tolist()[0] == expected
    assert expected in (out / "report.html").read_text()


def test_the_headline_says_when_no_class_can_be_significant(tmp_path):
    # 2 seeds, 3 classes: 3 relabellings pooled over 3 classes, smallest p 1/7 > FDR 0.1
    names = ["a", "b", "c"]
    _setting(tmp_path / "few", "wd0", ["wd.value=0"], [[40, 40, 40], [41, 41, 41]], 50, names)
    _setting(tmp_path / "few", "wd1", ["wd.value=0.001"], [[50, 50, 30], [49, 50, 31]], 50, names)
    report = build_report(tmp_path / "few", tmp_path / "r1", progress=False, console=_quiet())
    assert (
        "no class can be called significant with 2 seeds per setting: the smallest possible p-value, 0.14 "
        "(3 relabellings over 3 classes), is above FDR 0.1" in report.headline
    )
    assert "significantly lowers" not in report.headline and "(largest drop, not significant: c," in report.headline

    # 2 seeds, 10 classes: smallest p 1/21; BH passes only when at least 5 classes sit at it
    names = [f"k{i}" for i in range(10)]
    _setting(tmp_path / "ten", "wd0", ["wd.value=0"], [[40] * 9 + [40], [44] * 9 + [41]], 50, names)
    _setting(tmp_path / "ten", "wd1", ["wd.value=0.001"], [[47] * 9 + [30], [43] * 9 + [31]], 50, names)
    report = build_report(tmp_path / "ten", tmp_path / "r2", progress=False, console=_quiet())
    assert (
        "significantly lowers no class (with 2 seeds per setting a class can pass FDR 0.1 only with at least "
        "4 others at the smallest possible p, 0.048)" in report.headline
    )

    # every class rose: no "largest drop" of a class that rose
    _setting(tmp_path / "rose", "wd0", ["wd.value=0"], [[40, 40, 40], [41, 41, 41]], 50, ["a", "b", "c"])
    _setting(tmp_path / "rose", "wd1", ["wd.value=0.001"], [[42, 43, 44], [42, 43, 45]], 50, ["a", "b", "c"])
    report = build_report(tmp_path / "rose", tmp_path / "r3", progress=False, console=_quiet())
    assert report.headline.endswith("(no class dropped) (2 seeds per setting, FDR 0.1, validation split)")


# item 13 and issue 14: finished runs only; a live sweep


def test_unfinished_and_diverged_runs_are_listed_never_replicates(tmp_path):
    rng = np.random.default_rng(5)
    names = [f"k{i}" for i in range(20)]
    base = rng.uniform(0.5, 0.8, 20)
    # wd=0, the weakest, has the best mean but a diverged seed: never the reference, never the best
    _setting(tmp_path, "wd0", ["wd.value=0"], simulate_counts(rng, base, 0.15, 3, 100), 100, names)
    write_run(
        tmp_path / "wd0" / "seed2",
        ["wd.value=0", "seed=2"],
        [1] * 20,
        [100] * 20,
        names,
        metrics={"diverged": {"epoch": 1, "step": 57}},
    )
    _setting(tmp_path, "wd1", ["wd.value=0.0001"], simulate_counts(rng, base, 0.0, 3, 100), 100, names)
    _setting(tmp_path, "wd2", ["wd.value=0.001"], simulate_counts(rng, base, 0.05, 3, 100), 100, names)
    # seed 2 of wd=0.001 has validated 1 of its 4 epochs: its (worse) epoch-0 results must not count
    write_run(tmp_path / "wd2" / "seed2", ["wd.value=0.001", "seed=2"], [5] * 20, [100] * 20, names, validated=1)
    # seed 0 of wd=0.0001: resume.json says the fit stopped early, although its last validation is epoch 1 of 2
    (tmp_path / "wd1" / "seed0" / "resume.json").write_text(
        json.dumps([{"event": "start", "epoch": 0}, {"event": "end", "epoch": 1, "complete": False}])
    )
    console = _quiet()
    out = tmp_path / "out"
    report = build_report(tmp_path, out, progress=False, console=console)
    assert report.reference == "wd.value=0.0001" and report.best == "wd.value=0.001"
    assert "(3 of 9 runs still missing, 1 of them diverged: partial settings are not tested)" in report.headline

    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.run.map(lambda p: p.split("/")[-2:]).map("/".join)) == [
        "wd0/seed0", "wd0/seed1", "wd1/seed1", "wd1/seed2", "wd2/seed0", "wd2/seed1"
    ]  # fmt: skip
    left = {
        r["run"].split(
            "/",
        )[-2]
        + "/"
        + r["run"].split("/")[-1]: r
        for r in _json(out)["excluded_runs"]
    }
    assert set(left) == {"wd0/seed2", "wd1/seed0", "wd2/seed2"}
    assert (left["wd0/seed2"]["state"], left["wd0/seed2"]["diverged_epoch"], left["wd0/seed2"]["diverged_step"]) == (
        "diverged", 1, 57
    )  # fmt: skip
    assert (left["wd2/seed2"]["state"], left["wd2/seed2"]["last_epoch"], left["wd2/seed2"]["max_epochs"]) == (
        "incomplete", 0, 2
    )  # fmt: skip
    assert left["wd1/seed0"]["state"] == "incomplete" and "resume.json" in left["wd1/seed0"]["reason"]
    assert pd.read_csv(out / "excluded_runs.csv").state.value_counts().to_dict() == {"incomplete": 2, "diverged": 1}

    settings = pd.read_csv(out / "settings.csv")
    assert settings[["setting", "seeds", "seeds_expected", "status"]].values.tolist() == [
        ["wd.value=0", 2, 3, "diverged"],
        ["wd.value=0.0001", 2, 3, "partial"],
        ["wd.value=0.001", 2, 3, "partial"],
    ]
    cs = pd.read_csv(out / "class_settings.csv")
    wd2 = cs[cs.setting == "wd.value=0.001"]
    assert (wd2.total == 200).all()  # two finished seeds of 100 images, not three
    comp = pd.read_csv(out / "comparisons.csv")
    assert comp.exploratory.all() and comp.p_value.isna().all() and comp.significant.isna().all()
    assert comp.reason.str.contains(r"is partial \(2 of 3 seeds finished\)").all()
    assert comp.query("baseline == 'reference'").reason.str.contains("wd.value=0.0001 is partial").all()
    assert comp[comp.setting == "wd.value=0"].reason.str.contains("has a diverged run").all()

    printed = console.file.getvalue()
    assert "3 of 9 runs are not finished and are left out (2 incomplete, 1 diverged)" in printed
    assert "diverged at epoch 1 step 57" in printed
    html = (out / "report.html").read_text()
    assert 'id="excluded"' in html and str(tmp_path / "wd2" / "seed2") in html
    assert "wd.value=0 (diverged)" in html and "wd.value=0.001 (partial: 2/3)" in html


def _sweep_spec(tmp_path, seeds) -> object:
    spec = {
        "name": "live",
        "base": "configs/cifar10_resnet18.yaml",
        "overrides": ["trainer.max_epochs=2", "data.root=/data/cifar10-shards"],
        "axes": {"product": {"wd.value": [0.0, 0.001]}},
        "seeds": seeds,
    }
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _finish(point, counts, names, state="done"):
    """Results of a point, written where `classreg fit` writes them, and the point's status."""
    write_results(point, counts, [50] * len(names), names)
    transition(point, "running")
    if state != "running":
        transition(point, state)


def test_a_live_sweep_shows_partial_settings_untested_and_counts_the_missing_runs(tmp_path):
    sweep, _, total = materialise(_sweep_spec(tmp_path, [0, 1, 2]), tmp_path / "sweep")
    assert total == 6
    rng = np.random.default_rng(9)
    names = [f"k{i}" for i in range(30)]
    base = rng.uniform(0.5, 0.8, 30)
    points = {}
    for p in sweep.point_dirs():
        st = read_status(p)
        points[(st["params"]["wd.value"], st["params"]["seed"])] = p
    for seed in (0, 1, 2):
        _finish(points[(0.0, seed)], simulate_counts(rng, base, 0.0, 1, 50)[0], names)
    _finish(points[(0.001, 0)], simulate_counts(rng, base, 0.1, 1, 50)[0], names)
    _finish(points[(0.001, 1)], simulate_counts(rng, base, 0.1, 1, 50)[0], names, state="running")  # validating
    # (0.001, 2) is still pending: only its config.yaml and status.json exist
    out = tmp_path / "out"
    report = build_report(sweep.dir, out, progress=False, console=_quiet())
    assert report.reference == "wd.value=0" and report.best == "wd.value=0"  # a partial setting is never the best
    assert "(2 of 6 runs still missing: partial settings are not tested)" in report.headline
    assert "no complete setting raises it" in report.headline
    summary = _json(out)
    assert (summary["runs"], summary["runs_expected"], summary["runs_missing"]) == (4, 6, 2)
    assert {r["state"] for r in summary["excluded_runs"]} == {"running", "pending"}
    assert [(s["seeds"], s["seeds_expected"], s["status"]) for s in summary["settings"]] == [
        (3, 3, "complete"),
        (1, 3, "partial"),
    ]
    assert all(r["exploratory"] and "is partial (1 of 3 seeds finished)" in r["reason"] for r in summary["tests"])

    # the spec, not the folders seen, says how many seeds a setting needs: without seed 2's folders the
    # settings would look complete with 2 seeds
    for p in (points[(0.0, 2)], points[(0.001, 2)]):
        shutil.move(p, tmp_path / p.name)
    _finish(points[(0.001, 1)], simulate_counts(rng, base, 0.1, 1, 50)[0], names)
    summary = _json(build_report(sweep.dir, out, progress=False, console=_quiet()).out_dir)
    assert [(s["seeds"], s["seeds_expected"], s["status"]) for s in summary["settings"]] == [
        (2, 3, "partial"),
        (2, 3, "partial"),
    ]
    assert summary["runs_missing"] == 2
    # --seeds: the user says 2 seeds are enough; now both settings are tested
    summary = _json(build_report(sweep.dir, out, ReportOptions(seeds=2), progress=False, console=_quiet()).out_dir)
    assert [s["status"] for s in summary["settings"]] == ["complete", "complete"]
    assert not summary["tests"][0]["exploratory"] and summary["tests"][0]["residual_df"] == 2


def test_a_sweep_with_no_finished_run_yet_says_so(tmp_path, capsys):
    sweep, _, _ = materialise(_sweep_spec(tmp_path, [0]), tmp_path / "sweep")
    assert main(["report", str(sweep.dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished run under" in err and "pending" in err


# item 8: which keys are settings


def _shards(folder, digest) -> str:
    folder.mkdir(parents=True)
    (folder / "classes.json").write_text(json.dumps({"0": "a", "1": "b"}))
    shards = [{"file": "train-000000.tar", "samples": 10, "sha256": digest}]
    (folder / "manifest.json").write_text(
        json.dumps({"splits": {"train": {"shards": shards}, "test": {"shards": shards}}})
    )
    return str(folder)


SETTING_KEYS = {  # another value changes what is trained, or which epoch is reported
    "data.backend": "dali",
    "data.num_workers": 4,
    "trainer.devices": 2,
    "trainer.accelerator": "cpu",
    "trainer.check_val_every_n_epoch": 2,
}
BOOKKEEPING = {"trainer.log_every_n_steps": 7, "logger.project": "elsewhere", "metrics.confusion_matrix": True}


def test_only_keys_that_cannot_change_training_are_bookkeeping(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"base{seed}", [f"seed={seed}"], [30, 40], [50, 50], ["a", "b"])
    for key, value in {**SETTING_KEYS, **BOOKKEEPING}.items():
        write_run(tmp_path / key, [f"{key}={value}"], [30, 40], [50, 50], ["a", "b"])
    build_report(tmp_path, tmp_path / "out", progress=False, console=_quiet())
    settings = pd.read_csv(tmp_path / "out" / "settings.csv")
    assert set(SETTING_KEYS) <= set(settings.columns) and not set(BOOKKEEPING) & set(settings.columns)
    assert sorted(settings.seeds) == [1] * len(SETTING_KEYS) + [2 + len(BOOKKEEPING)]  # bookkeeping: one setting


def test_data_root_is_a_setting_unless_the_shards_are_the_same(tmp_path):
    roots = {
        "a": _shards(tmp_path / "a", "1" * 64),
        "copy_of_a": _shards(tmp_path / "copy_of_a", "1" * 64),
        "other": _shards(tmp_path / "other", "2" * 64),
        "gone": str(tmp_path / "gone"),  # no manifest to read: compared by path
    }
    for name, root in roots.items():
        for seed in (0, 1):
            write_run(
                tmp_path / "runs" / f"{name}{seed}",
                [f"data.root={root}", f"seed={seed}"],
                [30, 40],
                [50, 50],
                ["a", "b"],
            )
    console = _quiet()
    build_report(tmp_path / "runs", tmp_path / "out", progress=False, console=console)
    settings = pd.read_csv(tmp_path / "out" / "settings.csv")
    assert dict(zip(settings["data.root"], settings.seeds)) == {roots["a"]: 4, roots["other"]: 2, roots["gone"]: 2}
    assert (
        f"data.root differs ({roots['a']}, {roots['copy_of_a']}) but the shards are the same" in console.file.getvalue()
    )


# item 14: ReaL labels


def test_real_labels_tell_ambiguity_from_real_drops(tmp_path):
    """Classes 7, 42, 90 lose 20 points on the original labels; under ReaL, 7 loses nothing (its drop was
    ambiguous images), 42 loses half, 90 all of it."""
    rng = np.random.default_rng(21)
    classes, images, seeds = 100, 200, 5
    names = [f"class_{i:03d}" for i in range(classes)]
    base = rng.uniform(0.6, 0.85, classes)
    real_total = np.full(classes, 180)  # images with a non-empty ReaL set
    shift = np.full(classes, 0.02)
    shift[[7, 42, 90]] = -0.20
    real_shift = shift.copy()
    real_shift[[7, 42, 90]] = [0.0, -0.10, -0.20]
    for name, orig, rl, value in (("ls0", 0.0, 0.0, 0.0), ("ls2", shift, real_shift, 0.2)):
        counts = simulate_counts(rng, base, orig, seeds, images)
        real_counts = simulate_counts(rng, np.minimum(base + 0.05, 1), rl, seeds, 180)
        for s in range(seeds):
            write_run(
                tmp_path / name / f"seed{s}",
                [f"optim.label_smoothing={value}", f"seed={s}"],
                counts[s],
                [images] * classes,
                names,
                real=(real_counts[s], real_total),
            )
    out = tmp_path / "out"
    build_report(tmp_path, out, progress=False, console=_quiet())
    comp = pd.read_csv(out / "comparisons.csv").query("baseline == 'reference'")
    assert set(comp[comp.significant & (comp.change < 0)].class_index) == {7, 42, 90}
    # the ReaL columns are the runs' ReaL counts, averaged over seeds
    per_seed = [pd.read_csv(tmp_path / "ls2" / f"seed{s}" / "per_class.csv").query("epoch == 1") for s in range(seeds)]
    real_acc = np.mean([r.real_correct / r.real_total for r in per_seed], axis=0)
    assert np.allclose(comp.real_accuracy, real_acc)
    lowered = comp[comp.significant & (comp.change < 0)].set_index("class_index")
    assert np.allclose(lowered.real_drop_remaining, lowered.real_change / lowered.change)
    assert lowered.real_drop_remaining[7] < 0.25 and 0.25 < lowered.real_drop_remaining[42] < 0.75
    assert lowered.real_drop_remaining[90] > 0.75
    assert comp[~(comp.significant & (comp.change < 0))].real_drop_remaining.isna().all()
    assert bool(lowered.real_significant[90]) and not bool(lowered.real_significant[7])

    (real,) = [r for r in _json(out)["real"] if r["baseline"] == "reference"]
    assert real["lowered"] == 3 and real["remaining"] == pytest.approx(
        lowered.real_change.mean() / lowered.change.mean()
    )
    assert real["still_lowered"] == int((lowered.real_significant & (lowered.real_change < 0)).sum())
    html = (out / "report.html").read_text()
    assert real["sentence"].replace("->", "-&gt;") in html and "ReaL change" in html
    assert (
        "the 3 classes significantly lowered from optim.label_smoothing=0 to optim.label_smoothing=0.2"
        in real["sentence"]
    )


def test_without_real_counts_there_is_no_real_column(tmp_path):
    for value in (0.0, 0.2):
        _setting(tmp_path, f"ls{value}", [f"optim.label_smoothing={value}"], [[30, 40], [31, 41]], 50, ["a", "b"])
    build_report(tmp_path, tmp_path / "out", progress=False, console=_quiet())
    assert not any(c.startswith("real") for c in pd.read_csv(tmp_path / "out" / "comparisons.csv").columns)
    assert "real" not in _json(tmp_path / "out") and "ReaL" not in (tmp_path / "out" / "report.html").read_text()


# the test split


def test_test_split_results_are_preferred_when_every_run_has_them(tmp_path, capsys):
    for value, val_counts, test_counts in ((0.0, [40, 40], [20, 21]), (0.001, [45, 30], [22, 10])):
        for seed in (0, 1):
            write_run(
                tmp_path / f"wd{value}" / f"s{seed}",
                [f"wd.value={value}", f"seed={seed}"],
                val_counts,
                [50, 50],
                ["a", "b"],
                test=([c + seed for c in test_counts], [25, 25]),
            )
    out = tmp_path / "out"
    report = build_report(tmp_path, out, progress=False, console=_quiet())
    assert report.headline.endswith("FDR 0.1, test split)")
    cs = pd.read_csv(out / "class_settings.csv")
    assert cs[cs.setting == "wd.value=0.001"].correct.tolist() == [22 + 23, 10 + 11]  # the test counts
    assert (cs.total == 50).all() and (_json(out)["split"], _json(out)["shards_split"]) == ("test", "test")
    assert (pd.read_csv(out / "runs.csv").split == "test").all()
    assert "test split" in (out / "report.html").read_text()

    # one run without test results: every run falls back to its validation split, and says so
    (tmp_path / "wd0.0" / "s1" / "per_class_test.csv").unlink()
    console = _quiet()
    report = build_report(tmp_path, out, progress=False, console=console)
    assert report.headline.endswith("validation split)") and "only 3 of 4 finished runs have" in console.file.getvalue()
    assert pd.read_csv(out / "class_settings.csv").total.tolist() == [100] * 4
    assert main(["report", str(tmp_path), "--split", "test", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--split test: 1 finished run(s) have no per_class_test.csv" in err


def test_a_validation_repeated_after_a_resume_counts_once_with_its_last_rows(tmp_path):
    """per_class.csv may be appended to: a validation repeated after a resume adds its epoch's rows again."""
    for value in (0.0, 0.001):
        for seed in (0, 1):
            run = write_run(
                tmp_path / f"wd{value}_{seed}", [f"wd.value={value}", f"seed={seed}"], [30, 40], [50, 50], ["a", "b"]
            )
            with open(run / "per_class.csv", "a") as fh:
                fh.write(f"1,0,a,{20 + seed},50,0.4,,\n1,1,b,{45 - seed},50,0.9,,\n")  # epoch 1 again
    build_report(tmp_path, tmp_path / "out", progress=False, console=_quiet())
    cs = pd.read_csv(tmp_path / "out" / "class_settings.csv")
    assert cs.correct.tolist() == [41, 89, 41, 89] and (cs.total == 100).all()
