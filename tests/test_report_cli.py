"""`classreg report` end to end on run folders with planted per-class effects, and its HTML in Chromium."""

import io
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from launch.cli import main
from launch.report import ReportError, ReportOptions, build_report
from tests.synthetic_runs import write_results, write_run, write_sweep

HURT = [7, 42, 90]


@pytest.fixture(scope="module")
def planted_sweep(tmp_path_factory):
    """100 classes, 5 seeds; label smoothing 0 / 0.1 / 0.2. At 0.2: mean +3 points, classes 7, 42, 90 -20."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(11)
    base = rng.uniform(0.55, 0.9, 100)
    strong = np.full(100, 0.03)
    strong[HURT] = -0.20
    settings = {f"ls{v}": [f"optim.label_smoothing={v}", "wd.value=0.0001"] for v in ("0.0", "0.1", "0.2")}
    truth = {"ls0.0": np.zeros(100), "ls0.1": np.full(100, 0.01), "ls0.2": strong}
    names = write_sweep(root, settings, truth, base, seeds=5, rng=rng)
    return root, names


def test_report_cli_finds_the_planted_drops_and_writes_every_output(planted_sweep, tmp_path, capsys):
    root, names = planted_sweep
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "best-mean setting optim.label_smoothing=0.2 raises mean accuracy by" in printed
    assert f"report: {out / 'report.html'}" in printed

    settings = pd.read_csv(out / "settings.csv")
    assert list(settings["optim.label_smoothing"]) == [0.0, 0.1, 0.2]  # weakest first
    assert settings["seeds"].tolist() == [5, 5, 5]
    assert settings.loc[settings["is_reference"], "optim.label_smoothing"].item() == 0.0
    assert settings.loc[settings["is_best_mean"], "optim.label_smoothing"].item() == 0.2
    assert "seed" not in settings.columns and "name" not in settings.columns

    comp = pd.read_csv(out / "comparisons.csv")
    vs_ref = comp[(comp.baseline == "reference") & (comp.setting == "optim.label_smoothing=0.2")]
    assert len(vs_ref) == 100 and (vs_ref.test == "moderated").all()
    lowered = vs_ref[vs_ref.significant & (vs_ref.change < 0)]
    assert set(lowered.class_index) == set(HURT)
    assert (~vs_ref.exploratory).all() and vs_ref.reason.isna().all()
    summary = json.loads((out / "report.json").read_text(), parse_constant=pytest.fail)
    headline = summary["headline"]
    worst = lowered.loc[lowered.change.idxmin()]
    assert f"significantly lowers 3 classes (worst: {worst.class_name}," in headline
    assert headline.endswith("(5 seeds per setting, FDR 0.1, validation split)") and headline in printed
    # 5 + 5 seeds: 8 residual df per class, 126 splits of the 10 runs
    test = next(
        t for t in summary["tests"] if t["baseline"] == "reference" and t["setting"] == "optim.label_smoothing=0.2"
    )
    assert (test["residual_df"], test["relabellings"], test["classes_tested"]) == (8, 126, 100)
    assert np.allclose(vs_ref.df, 8 + test["prior_df"]) and test["method"].startswith("moderated t on the arcsine")
    assert summary["method"] == test["method"] and summary["excluded_runs"] == [] and summary["runs_missing"] == 0

    cs = pd.read_csv(out / "class_settings.csv")
    assert len(cs) == 300 and set(cs.class_name) == set(names)
    row = cs[(cs.class_index == 7) & (cs.setting == "optim.label_smoothing=0.2")].iloc[0]
    per_seed = [
        pd.read_csv(root / "ls0.2" / f"seed{s}" / "run" / "per_class.csv").query("epoch == 1").iloc[7] for s in range(5)
    ]
    assert row.correct == sum(r.correct for r in per_seed) and row.total == 250
    assert row.mean_accuracy == pytest.approx(np.mean([r.correct / r.total for r in per_seed]))
    assert row.sd_accuracy == pytest.approx(np.std([r.correct / r.total for r in per_seed], ddof=1))

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 15 and sorted(runs.seed.unique()) == [0, 1, 2, 3, 4] and (runs.epoch == 1).all()
    for png in ("delta_sorted", "strength_curves", "tradeoff", "histograms"):
        assert (out / "figures" / f"{png}.png").stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "class_090" in html and "<script>" in html


def test_reference_and_strength_options(planted_sweep, tmp_path):
    root, _ = planted_sweep
    report = build_report(
        root, tmp_path / "r", ReportOptions(reference="optim.label_smoothing=0.1", curves=2), progress=False
    )
    assert report.reference == "optim.label_smoothing=0.1" and report.best == "optim.label_smoothing=0.2"
    assert "over optim.label_smoothing=0.1" in report.headline
    with pytest.raises(ReportError, match="'dropout' is not one of the keys that vary: optim.label_smoothing"):
        build_report(root, tmp_path / "r", ReportOptions(reference="dropout=0.1"), progress=False)
    with pytest.raises(ReportError, match="matches no setting. The settings are: optim.label_smoothing=0"):
        build_report(root, tmp_path / "r", ReportOptions(reference="optim.label_smoothing=0.5"), progress=False)
    with pytest.raises(ReportError, match="--strength 'lr'"):
        build_report(root, tmp_path / "r", ReportOptions(strength="lr"), progress=False)


def test_report_errors_name_the_folder_and_the_fix(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--no-progress"]) == 2
    assert "no run folders under" in capsys.readouterr().err
    names = ["a", "b"]
    write_run(tmp_path / "x", [], [1, 2], [3, 3], names)
    write_run(tmp_path / "y", ["optim.lr=0.05"], [1, 2], [3, 3], ["a", "c"])
    assert main(["report", str(tmp_path), "--no-progress"]) == 2
    assert "differ from the 2 of" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "x"), "--fdr", "1.5"]) == 2
    assert "fdr" in capsys.readouterr().err


def test_unfinished_runs_are_left_out_with_a_note(planted_sweep, tmp_path, capsys):
    root, names = planted_sweep
    sweep = tmp_path / "sweep"
    shutil.copytree(root / "ls0.0", sweep / "ls0.0")
    shutil.copytree(root / "ls0.1", sweep / "ls0.1")
    running = sweep / "ls0.1" / "seed4" / "run"
    write_results(running, [1] * 100, [50] * 100, names, validated=1)  # still training: 1 of 2 epochs validated
    write_run(
        sweep / "ls0.1" / "seed5" / "run",
        ["optim.label_smoothing=0.1", "wd.value=0.0001", "seed=5"],
        [],
        [],
        [],
        validated=0,
    )
    assert main(["report", str(sweep), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "2 of 11 runs are not finished and are left out (2 incomplete)" in captured.err
    assert f"{running}: incomplete, 1/2 epochs validated" in captured.err
    assert f"{sweep / 'ls0.1' / 'seed5' / 'run'}: incomplete, 0/2 epochs validated: no validation yet" in captured.err
    # the most seeds seen (6) is what every setting should have: ls0.0 lacks one too
    assert "(3 of 12 runs still missing: partial settings are not tested)" in captured.out
    settings = pd.read_csv(sweep / "report" / "settings.csv")
    assert settings[["seeds", "seeds_expected", "status"]].values.tolist() == [[5, 6, "partial"], [4, 6, "partial"]]
    assert (pd.read_csv(sweep / "report" / "runs.csv").epoch == 1).all()  # no epoch-0 results of the running seed


def test_one_seed_per_setting_is_exploratory_and_reads_only_the_last_epoch(tmp_path):
    names = [f"c{i}" for i in range(4)]
    write_run(tmp_path / "wd0", ["wd.value=0"], [45, 45, 45, 45], [50] * 4, names, epochs=3)
    write_run(tmp_path / "wd1", ["wd.value=0.001"], [47, 47, 47, 10], [50] * 4, names, epochs=3)
    report = build_report([tmp_path / "wd1", tmp_path / "wd0"], tmp_path / "out", progress=False)
    assert report.reference == "wd.value=0"
    comp = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert set(comp.test) == {"moderated"} and comp.exploratory.all()
    assert comp.significant.isna().all() and comp.p_value.isna().all()  # one seed: no seed-to-seed variance, no claim
    assert comp.change.round(2).tolist() == [0.04, 0.04, 0.04, -0.7]  # from the last epoch, not the halved first
    assert "(worst: c3, from 90% to 20%)" not in report.headline  # the best mean is the reference here
    assert report.best == "wd.value=0"
    summary = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=pytest.fail)  # no NaN
    assert summary["settings"][0]["sd_over_seeds"] is None  # one seed: no spread
    assert [r["worst_class"] for r in summary["settings"]] == ["c0", "c3"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(planted_sweep, tmp_path):
    root, names = planted_sweep
    report = build_report(root, tmp_path / "r", progress=False)
    url = report.html.resolve().as_uri()
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2400", url], check=True, capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 50_000  # a rendered page with plots, not a blank one

    dom = subprocess.run(
        [*flags, "--dump-dom", url + "#sort=change"], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    # every figure decoded by the browser, the class table complete and sorted by the URL's request
    assert 'data-figures-shown="4"' in dom
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.table, self.rows, self.cell = None, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.table = dict(attrs).get("id")
            if self.table == "class-table" and tag == "tr":
                self.rows.append([])
            if self.table == "class-table" and tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None
            if tag == "table":
                self.table = None

    parser = Rows()
    parser.feed(dom)
    header, body = parser.rows[0], parser.rows[1:]
    assert header[:2] == ["class", "index"] and "change" in header
    assert sorted(r[0] for r in body) == sorted(names)
    change = [float(r[header.index("change")]) for r in body]
    assert change == sorted(change)
    assert {body[i][1] for i in range(3)} == {str(c) for c in HURT}  # the three planted drops come first


def test_keys_of_any_config_section_work_and_the_weakest_setting_is_the_reference(tmp_path):
    """Sections the report does not know (augmentation, weight-decay policies) are compared generically."""
    names = ["a", "b", "c"]
    for scale in (0.08, 0.5, 1.0):
        for wd in (0.0, 1e-4):
            for seed in (0, 1):
                run = tmp_path / f"s{scale}_wd{wd}_{seed}"
                run.mkdir()
                (run / "config.yaml").write_text(
                    f"seed: {seed}\nname: {run.name}\nout_dir: {tmp_path}\n"
                    f"aug:\n  rrc:\n    min_scale: {scale}\n  policy: rrc\nwd:\n  value: {wd}\n"
                    "trainer:\n  progress_bar: false\n  max_epochs: 1\n"
                )
                good = 40 + int(10 * (1 - scale)) + seed
                (run / "per_class.csv").write_text(
                    "epoch,class_index,class_name,correct,total,accuracy,extra\n"
                    + "".join(f"0,{i},{n},{good - 20 * (i == 2) * (scale < 1)},50,0,x\n" for i, n in enumerate(names))
                )
    report = build_report(tmp_path, tmp_path / "rep", progress=False)
    # a larger minimum crop scale is a weaker augmentation; no weight decay is the weakest
    assert report.reference == "rrc.min_scale=1, wd.value=0"
    settings = pd.read_csv(tmp_path / "rep" / "settings.csv")
    assert set(settings.columns) >= {"aug.rrc.min_scale", "wd.value"} and "aug.rrc.policy" not in settings.columns
    assert len(settings) == 6 and (settings.seeds == 2).all()
    assert report.best.startswith("rrc.min_scale=0.08")
    # 2 seeds per setting: the smallest possible p is 1/7, so no change of 3 classes can be significant
    assert "no class can be called significant with 2 seeds per setting" in report.headline
    with pytest.raises(ReportError, match="'wd.value' is not one of the keys that vary"):
        build_report(tmp_path, tmp_path / "rep", ReportOptions(ignore=["wd.*"], reference="wd.value=0"), progress=False)
    console = Console(file=io.StringIO(), width=300)
    build_report(tmp_path, tmp_path / "rep", ReportOptions(ignore=["wd.*"]), console=console, progress=False)
    assert "rrc.min_scale=1 has several runs with seed 0, 1" in console.file.getvalue()
