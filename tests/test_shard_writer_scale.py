"""Shard writer at ImageNet scale: DALI index files, binary labels, checksums, resume, ImageNet layout, --verify."""

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

from datamodules.shards.format import read_manifest
from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_index_files_match_dalis_wds2idx_and_labels_are_binary(cifar_shards, tmp_path):
    from wds2idx import IndexCreator  # DALI's own indexer (the `wds2idx` command)

    manifest, classes = read_manifest(cifar_shards)
    for split in ("train", "test"):
        for shard in manifest["splits"][split]["shards"]:
            theirs = tmp_path / f"{shard['file']}.idx"
            with IndexCreator(str(cifar_shards / shard["file"]), str(theirs), verbose=False) as creator:
                creator.create_index()
            assert (cifar_shards / shard["index"]).read_text() == theirs.read_text()
            data = (cifar_shards / shard["file"]).read_bytes()
            assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
            with tarfile.open(cifar_shards / shard["file"]) as tar:
                files = {m.name: tar.extractfile(m).read() for m in tar}
            keys = {n.split(".")[0] for n in files}
            assert len(keys) == shard["samples"]
            for key in keys:
                assert struct.unpack("<i", files[f"{key}.lbl"])[0] == int(files[f"{key}.cls"])
                assert classes[int(files[f"{key}.cls"])] == key.rsplit("_", 1)[0]


def test_dali_reads_the_index_without_inferring_it(cifar_shards, capfd):
    from nvidia.dali import fn, pipeline_def, types

    manifest, _ = read_manifest(cifar_shards)
    shards = manifest["splits"]["test"]["shards"]

    @pipeline_def(batch_size=10, num_threads=1, device_id=None)
    def labels(index_paths):
        _, label = fn.readers.webdataset(
            paths=[str(cifar_shards / s["file"]) for s in shards],
            index_paths=index_paths,
            ext=["jpg", "lbl"],
            dtypes=[types.UINT8, types.INT32],
            name="r",
        )
        return label

    for index_paths in ([str(cifar_shards / s["index"]) for s in shards], None):
        pipe = labels(index_paths)
        pipe.build()
        assert pipe.reader_meta("r")["epoch_size"] == 70
        pipe.run()
        warned = "Index file not provided" in capfd.readouterr().err
        assert warned == (index_paths is None)  # the check itself sees DALI's warning when there is no index


KILL_AT_SHARD_3 = """
import os, signal, sys
import datamodules.shards.writer as w
from datamodules.sources.image_tree import shard_image_tree
real = w.write_shard
def write_shard(job):
    if job.split == "train" and job.number == 3:
        open(job.out / w.STAGING / (job.name + ".tar"), "wb").write(b"half a shard")
        os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of shard 3, as by the OOM killer or scancel
    return real(job)
w.write_shard = write_shard
shard_image_tree(sys.argv[1], sys.argv[2], shard_size=20, seed=0, workers=1)
"""


def test_resume_after_kill_gives_identical_shards_and_keeps_finished_ones(cifar_tree, tmp_path):
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    shard_image_tree(cifar_tree, clean, shard_size=20, seed=0, workers=2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SHARD_3, str(cifar_tree), str(resumed)], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert not (resumed / "manifest.json").exists()
    done = sorted(p.name for p in resumed.glob("train-*.tar"))
    assert done == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    before = {name: (resumed / name).stat().st_mtime_ns for name in done}

    assert main(["shard", str(cifar_tree), str(resumed), "--shard-size", "20", "--workers", "2"]) == 0
    assert {name: (resumed / name).stat().st_mtime_ns for name in done} == before  # not rewritten
    assert (
        json.loads((resumed / "manifest.json").read_text())["splits"]
        == json.loads((clean / "manifest.json").read_text())["splits"]
    )
    files = sorted(p.name for p in clean.iterdir())
    assert sorted(p.name for p in resumed.iterdir()) == files  # no .partial/.progress left behind
    for name in files:
        assert (resumed / name).read_bytes() == (clean / name).read_bytes(), name


def test_resume_refuses_other_settings(cifar_tree, tmp_path, capsys):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-c", KILL_AT_SHARD_3, str(cifar_tree), str(out)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert main(["shard", str(cifar_tree), str(out), "--shard-size", "30"]) == 2
    assert "unfinished run with other sources or settings" in capsys.readouterr().err
    assert main(["shard", str(cifar_tree), str(out), "--shard-size", "30", "--overwrite"]) == 0
    assert read_manifest(out)[0]["shard_size"] == 30


def test_imagenet_layout_flat_val_and_readable_names(cifar_tree, tmp_path):
    # ImageNet's own validation file names; their classes are facts of ILSVRC2012's ground truth.
    src = tmp_path / "imagenet"
    jpgs = sorted((cifar_tree / "train" / "cat").glob("*.jpg"))
    for wnid in ("n01751748", "n09193705"):  # sea snake (val 1), alp (val 2)
        (src / "train" / wnid).mkdir(parents=True)
        for j in jpgs[:3]:
            shutil.copy(j, src / "train" / wnid / f"{wnid}_{j.stem}.JPEG")
    (src / "val").mkdir()
    for i in (1, 2, 3):  # val 3 is a Shetland sheepdog (n02105855): not a train class of this subset
        shutil.copy(jpgs[i], src / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    manifest = shard_image_tree(src, tmp_path / "out", shard_size=4, workers=1)
    val = manifest["splits"]["val"]
    assert val["per_class"] == [1, 1] and val["excluded_not_in_train_classes"] == 1
    assert manifest["splits"]["train"]["per_class"] == [3, 3]
    assert manifest["readable_names"] == ["sea snake", "mountain"]
    with tarfile.open(tmp_path / "out" / val["shards"][0]["file"]) as tar:
        labels = {m.name.split(".")[0]: int(tar.extractfile(m).read()) for m in tar if m.name.endswith(".cls")}
    assert labels == {"ILSVRC2012_val_00000001": 0, "ILSVRC2012_val_00000002": 1}


def test_flat_val_with_other_file_names_is_an_error(cifar_tree, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(cifar_tree / "train", src / "train")
    (src / "val").mkdir()
    shutil.copy(next((cifar_tree / "test" / "cat").glob("*.jpg")), src / "val" / "photo.jpg")
    assert main(["shard", str(src), str(tmp_path / "out")]) == 2
    assert "not an ImageNet validation image" in capsys.readouterr().err


def test_verify_decodes_fully_and_default_catches_truncation(cifar_tree, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(cifar_tree, tree)
    truncated, garbled = sorted((tree / "train" / "cat").glob("*.jpg"))[:2]
    truncated.write_bytes(truncated.read_bytes()[:400])
    data = bytearray(garbled.read_bytes())
    table = data.find(b"\xff\xc4")  # a Huffman table with impossible code counts; header and end marker intact
    data[table + 5 : table + 21] = b"\xff" * 16
    garbled.write_bytes(bytes(data))

    def skipped(**kw):
        manifest = shard_image_tree(tree, tmp_path / f"out{len(kw)}", shard_size=100, workers=2, **kw)
        return {Path(s["source"]).name for s in manifest["splits"]["train"]["skipped"]}

    assert skipped() == {truncated.name}
    assert skipped(verify=True) == {truncated.name, garbled.name}
