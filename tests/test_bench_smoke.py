"""The benchmarks' code paths on CPU at tiny sizes (their real figures: docs/development.md)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


def run_bench(script: str, tmp_path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--smoke", "--work-dir", str(tmp_path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_gpu_throughput_smoke_measures_every_path(tmp_path):
    run_bench("gpu_throughput.py", tmp_path, "--out", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    assert set(r["images_per_s"]) == {"synthetic", "dali-plain", "dali-classreg", "torchvision"}
    assert all(v > 0 for v in r["images_per_s"].values())
    assert set(r["ratios"]) == {"classreg/plain (target >= 0.95)", "plain/synthetic (target >= 0.90)"}
    assert r["dali_eval_images_per_s"] > 0 and r["per_class_counts_ms"] > 0
    assert r["environment"]["torch"] and r["sizes"]["arch"] == "resnet20"


@pytest.mark.slow
def test_train_overhead_smoke_reports_paired_cpu_and_wall_ratios(tmp_path):
    out = run_bench("train_overhead.py", tmp_path)
    assert "classreg/plain, CPU time per image:" in out and "classreg/plain, wall time per image:" in out
    assert out.count(" CPU ms/image") >= 4  # two pairs, each with both loops


@pytest.mark.slow
def test_input_pipeline_smoke_times_every_row_against_the_ceiling(tmp_path):
    out = run_bench("input_pipeline.py", tmp_path, "--dali-variant", "ra:read_ahead=true")
    rows = ["decode only", "decode + crop", "torchvision train", "dali train", "torchvision eval", "dali eval"]
    for row in [*rows, "dali train ra"]:
        line = next(line for line in out.splitlines() if line.startswith(f"| {row} |"))
        assert float(line.split("|")[2].split()[0]) > 0, line  # images/s
    ratios = out.split("ratio to 'decode + crop'")[1]
    assert all(f"| {row} |" in ratios for row in ["torchvision train", "dali train", "dali train ra"])


@pytest.mark.slow
def test_dali_stages_smoke_times_each_stage(tmp_path):
    out = run_bench("dali_stages.py", tmp_path)
    for stage in ("whole pipeline", "decode windows", "dali resize", "torchvision resize"):
        line = next(line for line in out.splitlines() if line.startswith(f"| {stage} |"))
        assert float(line.split("|")[2].split()[0]) > 0, line  # CPU ms/image
