"""A real small sweep (ResNet-20 on CIFAR shards): its report, and linear-probe transfer to other shards."""

import json
import shutil
from html import escape

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from launch.cli import main

WEIGHT_DECAYS, SEEDS = ("0", "0.05"), (0, 1)
TINY = [
    "model.arch=resnet20",
    "data.image_size=32",
    "data.batch_size=32",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "trainer.limit_train_batches=3",
]
DOWNSTREAM_CLASSES = ["cat", "dog", "ship", "truck"]


@pytest.fixture(scope="module")
def real_sweep(cifar_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("real_sweep")
    for wd in WEIGHT_DECAYS:
        for seed in SEEDS:
            assert (
                main(
                    [
                        "fit",
                        f"data.root={cifar_shards}",
                        *TINY,
                        f"wd.value={wd}",
                        f"seed={seed}",
                        f"out_dir={root / f'wd{wd}' / f'seed{seed}'}",
                        "name=run",
                    ]
                )
                == 0
            )
    return root


@pytest.fixture(scope="module")
def downstream_shards(cifar_tree, tmp_path_factory):
    """A different task: 4 of the CIFAR-10 classes, as their own shard set."""
    from datamodules.sources.image_tree import shard_image_tree

    tree = tmp_path_factory.mktemp("downstream_tree")
    for split in ("train", "test"):
        for name in DOWNSTREAM_CLASSES:
            shutil.copytree(cifar_tree / split / name, tree / split / name)
    out = tmp_path_factory.mktemp("downstream_shards")
    shard_image_tree(tree, out, shard_size=40, seed=1, workers=1)
    return out


@pytest.mark.slow
def test_report_of_a_real_sweep_has_every_class_and_setting(real_sweep, tmp_path, capsys):
    capsys.readouterr()
    assert main(["report", str(real_sweep), "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "over wd.value=0 " in out or "reference setting wd.value=0 already" in out
    settings = pd.read_csv(tmp_path / "rep" / "settings.csv")
    assert settings["setting"].tolist() == ["wd.value=0", "wd.value=0.05"]
    assert settings["seeds"].tolist() == [2, 2]
    cs = pd.read_csv(tmp_path / "rep" / "class_settings.csv")
    classes = json.loads((next(real_sweep.rglob("config.yaml")).parent / "metrics.json").read_text())
    assert classes["last"]["classes_evaluated"] == 10
    assert len(cs) == 20 and cs.groupby("setting").class_name.nunique().tolist() == [10, 10]
    assert (cs.total == 14).all()  # 7 test images a class, 2 seeds
    html = (tmp_path / "rep" / "report.html").read_text()
    for name in ("airplane", "truck", "wd.value=0.05"):
        assert name in html
    # every run finished (resume.json ends complete): all are replicates, none is left out
    summary = json.loads((tmp_path / "rep" / "report.json").read_text(), parse_constant=pytest.fail)
    assert (summary["runs"], summary["runs_missing"], summary["excluded_runs"]) == (4, 0, [])
    assert summary["split"] == "validation" and "validation split" in summary["headline"]
    assert summary["shards_split"] == "test"
    assert escape("every run's last validation (per_class.csv), on the shards' test split") in html
    assert (pd.read_csv(tmp_path / "rep" / "runs.csv").epoch == 0).all()
    # 2 + 2 seeds: 2 residual df per class plus the prior's, 3 relabellings, 10 classes: stated with the p-values
    test = summary["tests"][0]
    assert (test["residual_df"], test["relabellings"], test["classes_tested"]) == (2, 3, 10)
    assert test["p_floor"] == pytest.approx(1 / 21) and "2 residual + " in test["method"]
    comp = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    prior = test["prior_df"]
    assert np.allclose(comp.df, 2 + (np.inf if prior == "inf" else prior)) and (~comp.exploratory).all()


@pytest.mark.slow
def test_transfer_trains_linear_probes_on_frozen_checkpoints_and_feeds_the_report(
    real_sweep, downstream_shards, tmp_path, capsys
):
    out = tmp_path / "probes"
    args = [
        "transfer",
        str(real_sweep),
        "--downstream",
        "configs/transfer/linear_probe.yaml",
        "--out",
        str(out),
        f"data.root={downstream_shards}",
        "data.image_size=32",
        "data.batch_size=32",
        "data.num_workers=0",
        "trainer.max_epochs=2",
        "trainer.progress_bar=false",
        "optim.lr=0.05",
    ]
    assert main([*args, "--report"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report' / 'report.html'}" in printed

    for wd in WEIGHT_DECAYS:
        for seed in SEEDS:
            upstream = real_sweep / f"wd{wd}" / f"seed{seed}" / "run"
            probe = out / f"wd{wd}" / f"seed{seed}" / "run"
            assert (probe / "config.yaml").read_text() == (upstream / "config.yaml").read_text()
            assert yaml.safe_load((probe / "transfer.yaml").read_text())["data"]["root"] == str(downstream_shards)
            source = json.loads((probe / "source.json").read_text())
            assert source["checkpoint"] == str(upstream.resolve() / "checkpoints" / "last.ckpt")
            rows = pd.read_csv(probe / "per_class.csv")
            assert sorted(rows.epoch.unique()) == [0, 1]
            assert rows[rows.epoch == 1].class_name.tolist() == DOWNSTREAM_CLASSES
            assert (rows.total == 7).all()
            # the backbone is the upstream one, bit for bit (weights and batch-norm statistics); only fc learnt
            before = torch.load(upstream / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
            after = torch.load(probe / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
            backbone = [k for k in before if k.startswith("model.") and not k.startswith("model.fc.")]
            assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
            assert after["model.fc.weight"].shape == (4, 64)

    settings = pd.read_csv(out / "report" / "settings.csv")
    assert settings["setting"].tolist() == ["wd.value=0", "wd.value=0.05"]
    assert settings["seeds"].tolist() == [2, 2]
    assert set(pd.read_csv(out / "report" / "class_settings.csv").class_name) == set(DOWNSTREAM_CLASSES)

    stamp = (out / "wd0" / "seed0" / "run" / "per_class.csv").stat().st_mtime_ns
    assert main(args) == 0  # finished probes are kept, not retrained
    assert "probe already finished" in capsys.readouterr().out
    assert (out / "wd0" / "seed0" / "run" / "per_class.csv").stat().st_mtime_ns == stamp


def test_transfer_errors_name_the_run_and_the_fix(tmp_path, capsys):
    from tests.synthetic_runs import write_run

    write_run(tmp_path / "sweep" / "a", [], [1], [2], ["x"])
    assert (
        main(
            [
                "transfer",
                str(tmp_path / "sweep"),
                "--downstream",
                "configs/transfer/linear_probe.yaml",
                "data.root=/nowhere",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "has no last checkpoint" in err and "classreg fit -c" in err
    assert main(["transfer", str(tmp_path / "sweep"), "--downstream", "configs/transfer/linear_probe.yaml"]) == 2
    assert "sets no data.root" in capsys.readouterr().err
    assert (
        main(["transfer", str(tmp_path / "sweep"), "-d", "configs/transfer/linear_probe.yaml", "checkpoint=first"]) == 2
    )
    assert "Allowed: last, best" in capsys.readouterr().err
