"""Hostile, broken and extreme input on the data side (issue 17): each test plants the input, then checks the
refusal, its one-line message (through the command line where there is one), and that nothing was lost."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pandas as pd
import pytest
from conftest import torchvision_labels
from PIL import Image

from datamodules.shards.format import ShardError, read_manifest
from datamodules.shards.writer import write_index
from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main
from launch.config import load_config
from lightning_modules.augment import ImageTransforms

REPO = Path(__file__).resolve().parent.parent


# --- planting ------------------------------------------------------------------------------------------------


def image_bytes(size=(32, 32), fmt="PNG", colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of width x height black pixels: a few hundred times smaller than its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def small_tree(root: Path, classes=("cat", "dog"), per_class=4) -> Path:
    """``per_class`` 32 x 32 PNGs per class in train/, one in val/."""
    for c, name in enumerate(classes):
        for split, count in (("train", per_class), ("val", 1)):
            for i in range(count):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(image_bytes(colour=(40 * i, 100 * c, 50)))
    return root


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, command: str) -> str:
    """The error line a refused command printed: exactly one, and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"classreg {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rewrite_shard(root: Path, split: str, number: int, change) -> None:
    """Rewrite one shard with ``change(name, data) -> data`` applied to its members, and make the manifest agree
    with it (bytes, sha256, index): a folder changed by someone who knows the format."""
    manifest = json.loads((root / "manifest.json").read_text())
    shard = manifest["splits"][split]["shards"][number]
    path = root / shard["file"]
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            data = change(name, data)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 0
            tar.addfile(info, io.BytesIO(data))
    write_index(path, root / shard["index"])
    shard["bytes"], shard["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))


def set_first_label(label: int, every: bool = False):
    """A ``change`` for rewrite_shard: the first sample's (or ``every`` sample's) cls and lbl become ``label``."""
    first = {}

    def change(name, data):
        key, ext = name.split(".", 1)
        first.setdefault("key", key)
        if key != first["key"] and not every:
            return data
        return {"cls": str(label).encode(), "lbl": struct.pack("<i", label)}.get(ext, data)

    return change


def dali_loader(root: Path, *overrides, split: str = "train"):
    from datamodules.dali_backend.datamodule import DaliDataModule

    cfg = load_config(
        None,
        [
            f"data.root={root}",
            "data.backend=dali",
            "data.image_size=32",
            "data.batch_size=8",
            "data.num_workers=1",
            "data.shuffle_buffer=0",
            *overrides,
        ],
    )
    dm = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data))
    dm.setup()
    return dm.loader(split, train=split == "train")


FIT = [
    "fit",
    "-c",
    "configs/fashion_mnist_demo.yaml",
    "model.arch=resnet20",
    "data.image_size=32",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.progress_bar=false",
    "logger.wandb=false",
]


# --- item 4: --overwrite deletes only what classreg wrote ----------------------------------------------------


def test_overwrite_keeps_files_classreg_did_not_write(cifar_tree, cifar_shards, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(cifar_shards, out)
    (out / "my_backup.tar").write_bytes(b"a colleague's backup")
    (out / "notes.idx").write_text("my notes")
    (tmp_path / "victim.tar").write_bytes(b"outside OUT")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"].append({"file": "../victim.tar", "index": "my_backup.tar"})  # planted
    (out / "manifest.json").write_text(json.dumps(manifest))

    rc, stdout, _ = cli(capsys, "shard", cifar_tree, out, "--overwrite", "--shard-size", "100", "--workers", "1")
    assert rc == 0 and "train: 240 samples in 3 shards" in stdout
    assert (out / "my_backup.tar").read_bytes() == b"a colleague's backup"
    assert (out / "notes.idx").read_text() == "my notes"
    assert (tmp_path / "victim.tar").read_bytes() == b"outside OUT"
    assert sorted(p.name for p in out.glob("train-*.tar")) == [f"train-00000{i}.tar" for i in range(3)]


def test_a_folder_that_is_not_a_shard_folder_is_refused(cifar_tree, tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "my_backup.tar").write_bytes(b"a colleague's backup")
    (out / "notes.idx").write_text("my notes")
    before = files_of(out)
    for extra in ([], ["--overwrite"]):
        rc, _, err = cli(capsys, "shard", cifar_tree, out, *extra)
        line = one_error_line(err, "shard")
        assert rc == 2 and str(out) in line and "'my_backup.tar'" in line and "new or empty folder" in line
        assert files_of(out) == before  # nothing written, nothing deleted


def test_overwrite_never_replaces_an_unrecorded_file_named_like_a_shard(cifar_tree, cifar_shards, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(cifar_shards, out)  # 5 train shards of 50
    (out / "train-000006.tar").write_bytes(b"someone's own file")
    before = files_of(out)
    rc, _, err = cli(capsys, "shard", cifar_tree, out, "--overwrite", "--shard-size", "30")  # 8 train shards
    line = one_error_line(err, "shard")
    assert rc == 2 and "train-000006.tar" in line and "move it out of OUT" in line
    assert files_of(out) == before  # refused before deleting anything


# --- item 5: two files, one sample key -----------------------------------------------------------------------


def test_colliding_file_names_get_unique_keys_that_both_loaders_read(tmp_path, capsys):
    src = small_tree(tmp_path / "src", per_class=2)
    cat = src / "train" / "cat"
    (cat / "a.b.png").write_bytes(image_bytes(colour=(1, 2, 3)))
    (cat / "a_b.png").write_bytes(image_bytes(colour=(4, 5, 6)))
    (cat / "x.png").write_bytes(image_bytes(colour=(7, 8, 9)))
    (cat / "x.jpg").write_bytes(image_bytes(fmt="JPEG"))
    out = tmp_path / "out"
    rc, stdout, _ = cli(capsys, "shard", src, out, "--workers", "1")
    assert rc == 0 and "4 images shared a sample key" in stdout
    manifest, _ = read_manifest(out)
    train = manifest["splits"]["train"]
    assert train["samples"] == 8 and train["keys_made_unique"] == 4
    with tarfile.open(out / train["shards"][0]["file"]) as tar:
        keys = sorted(m.name.split(".")[0] for m in tar if m.name.endswith(".cls"))
    assert len(set(keys)) == 8
    made_unique = [k for k in keys if k.startswith(("cat_a_b", "cat_x"))]
    assert len(made_unique) == 4 and all(re.fullmatch(r"cat_(a_b|x)-[0-9a-f]{8}", k) for k in made_unique)
    index = (out / train["shards"][0]["index"]).read_text().splitlines()
    assert index[0] == "v1.2 8" and len(index) == 9  # the DALI index agrees with the manifest

    assert sorted(torchvision_labels(out)) == [0] * 6 + [1] * 2
    labels = [int(x) for _, batch in dali_loader(out) for x in batch]
    assert sorted(labels) == [0] * 6 + [1] * 2


# --- item 6: labels outside the classes, metadata that disagree ----------------------------------------------


@pytest.mark.parametrize("label", [99, -1, -100])
def test_labels_outside_the_classes_are_refused_by_both_loaders(cifar_shards, tmp_path, label):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    rewrite_shard(root, "train", 0, set_first_label(label))
    with pytest.raises(ShardError, match=rf"label {label}, outside the 10 classes.*--check") as tv:
        torchvision_labels(root, workers=1)  # raised in a DataLoader worker, re-raised here: still one line
    assert "\n" not in str(tv.value) and "train-000000.tar" in str(tv.value)
    with pytest.raises(ShardError, match=rf"hold the label {label}, outside the 10 classes.*--check"):
        list(dali_loader(root))


def test_fit_on_a_bad_label_stops_with_one_line(cifar_shards, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    for number in range(5):
        rewrite_shard(root, "train", number, set_first_label(99, every=True))
    rc, _, err = cli(capsys, *FIT, f"data.root={root}", f"out_dir={tmp_path}", "name=run", "data.num_workers=1")
    line = one_error_line(err, "fit")
    assert rc == 2 and "label 99, outside the 10 classes" in line and "train-00000" in line and "--check" in line


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda m, c: c.pop("9"), "classes.json"),  # fewer classes than num_classes
        (lambda m, c: m.update(num_classes=11), "num_classes=11"),
        (lambda m, c: m["splits"]["train"]["per_class"].pop(), "splits.train.per_class"),
        (lambda m, c: m["splits"]["test"]["shards"][0]["per_class"].append(0), r"splits.test.shards\[0\].per_class"),
        (lambda m, c: m["splits"]["train"]["shards"][1].update(samples=3), r"splits.train.shards\[1\] records 3"),
        (lambda m, c: c.update({"3": c["4"]}), "distinct"),
    ],
)
def test_metadata_that_disagree_are_refused_when_the_shards_are_opened(cifar_shards, tmp_path, capsys, damage, named):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    manifest, classes = (json.loads((root / n).read_text()) for n in ("manifest.json", "classes.json"))
    damage(manifest, classes)
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "classes.json").write_text(json.dumps(classes))
    with pytest.raises(ShardError, match=named):
        read_manifest(root)
    rc, _, err = cli(capsys, *FIT, f"data.root={root}", f"out_dir={tmp_path}", "name=run")
    assert rc == 2 and "--overwrite" in one_error_line(err, "fit")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


# --- item 10: decompression bombs ----------------------------------------------------------------------------


def test_the_writer_skips_images_above_the_pixel_limit_and_records_sizes(tmp_path, capsys):
    src = small_tree(tmp_path / "src")
    (src / "train" / "dog" / "bomb.png").write_bytes(png_bomb(12000, 12000))  # 144 Mpx in about 140 KB
    (src / "train" / "cat" / "wide.png").write_bytes(image_bytes(size=(64, 20)))
    rc, stdout, _ = cli(capsys, "shard", src, tmp_path / "out", "--workers", "1", "--shard-size", "5")
    assert rc == 0
    assert "skipped " + str(src / "train" / "dog" / "bomb.png") in stdout and "144,000,000 pixels" in stdout
    train = read_manifest(tmp_path / "out")[0]["splits"]["train"]
    assert [Path(s["source"]).name for s in train["skipped"]] == ["bomb.png"]
    assert "above the limit of 89,478,485" in train["skipped"][0]["error"]
    assert train["max_image"] == {"width": 64, "height": 32, "pixels": 1280}
    assert max(s["max_image"]["pixels"] for s in train["shards"]) == 1280
    assert {s["max_image"]["pixels"] for s in train["shards"]} <= {1024, 1280}

    rc, stdout, _ = cli(capsys, "shard", src, tmp_path / "low", "--workers", "1", "--max-pixels", "1100")
    skipped = read_manifest(tmp_path / "low")[0]["splits"]["train"]["skipped"]
    assert rc == 0 and sorted(Path(s["source"]).name for s in skipped) == ["bomb.png", "wide.png"]


def test_both_loaders_refuse_images_above_max_pixels_before_decoding(tmp_path):
    src = small_tree(tmp_path / "src")
    (src / "train" / "dog" / "bomb.png").write_bytes(png_bomb(2000, 1500))
    root = tmp_path / "out"
    manifest = shard_image_tree(src, root, workers=1, max_pixels=5_000_000)  # someone raised the writer's limit
    assert manifest["splits"]["train"]["max_image"]["pixels"] == 3_000_000

    with pytest.raises(ShardError, match=r"2000 x 1500 = 3,000,000 pixels, above data.max_pixels=1,000,000"):
        torchvision_labels(root, max_pixels=1_000_000)  # the manifest says so: refused when opened
    with pytest.raises(ShardError, match="above data.max_pixels=1,000,000"):
        dali_loader(root, "data.max_pixels=1000000")

    manifest["splits"]["train"]["max_image"]["pixels"] = 1024  # a manifest that lies about it
    for shard in manifest["splits"]["train"]["shards"]:
        shard["max_image"]["pixels"] = 1024
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"bomb.*3,000,000 pixels, above the limit of 1,000,000 \(data.max_pixels\)"):
        torchvision_labels(root, workers=1, max_pixels=1_000_000)
    with pytest.raises(ShardError, match="more than data.max_pixels=1,000,000 pixels .refused before decoding"):
        list(dali_loader(root, "data.max_pixels=1000000"))
    assert sorted(torchvision_labels(root, max_pixels=5_000_000)) == [0] * 4 + [1] * 5  # within the limit: read


# --- item 11: paths inside the folder, hashes checked --------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.tar", "link.tar"])
def test_shard_paths_must_stay_inside_the_folder(cifar_shards, tmp_path, capsys, name):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    (tmp_path / "outside.tar").write_bytes((root / "train-000000.tar").read_bytes())
    (root / "link.tar").symlink_to(tmp_path / "outside.tar")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["file"] = name
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="outside the shard folder|not a file name inside the shard folder"):
        read_manifest(root)
    rc, _, err = cli(capsys, *FIT, f"data.root={root}", f"out_dir={tmp_path}", "name=run")
    assert rc == 2 and "shard folder" in one_error_line(err, "fit")


def test_check_names_every_bad_shard_and_exits_non_zero(cifar_shards, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    rc, out, _ = cli(capsys, "shard", "--check", root, "--workers", "1")
    assert rc == 0 and "checked 7 shards" in out and "none bad" in out

    _, offset, size, _ = (root / "train-000001.idx").read_text().splitlines()[1].split()[:4]
    with open(root / "train-000001.tar", "r+b") as fh:  # one byte inside an image changed, the size kept
        fh.seek(int(offset) + int(size) // 2)
        byte = fh.read(1)
        fh.seek(int(offset) + int(size) // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with open(root / "train-000002.tar", "r+b") as fh:
        fh.truncate(4096)
    rewrite_shard(root, "train", 3, set_first_label(42))  # consistent sizes and hashes, but a label out of range
    idx = (root / "test-000000.idx").read_text().replace(" 512 ", " 1024 ", 1)
    (root / "test-000000.idx").write_text(idx)
    rc, out, _ = cli(capsys, "shard", "--check", root, "--workers", "2")
    bad = {ln[len("bad: ") :].split(":")[0]: ln for ln in out.splitlines() if ln.startswith("bad: ")}
    assert rc == 1 and "4 bad" in out
    assert set(bad) == {"train-000001.tar", "train-000002.tar", "train-000003.tar", "test-000000.tar"}
    assert "sha256 differs" in bad["train-000001.tar"]
    assert "bytes but manifest.json records" in bad["train-000002.tar"]
    assert "label 42, outside 0..9" in bad["train-000003.tar"]
    assert "does not match the tar" in bad["test-000000.tar"]


def test_a_truncated_shard_is_refused_when_opened_on_the_torchvision_backend(cifar_shards, tmp_path):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    with open(root / "test-000001.tar", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ShardError, match=r"test-000001.tar' is 1000 bytes but manifest.json records \d+.*--check"):
        torchvision_labels(root, split="test")


# --- item 13: what the tree scan leaves out ------------------------------------------------------------------


def test_hidden_non_utf8_and_outside_links_are_skipped_and_listed(tmp_path, capsys):
    src = small_tree(tmp_path / "src", per_class=2)
    hidden_class = src / "train" / ".ipynb_checkpoints"
    hidden_class.mkdir()
    (hidden_class / "0-checkpoint.png").write_bytes(image_bytes())
    (src / "train" / "cat" / "._0.png").write_bytes(b"macOS resource fork")
    latin1 = os.fsdecode(str(src / "train" / "cat").encode() + b"/caf\xe9.png")
    Path(latin1).write_bytes(image_bytes())
    private = tmp_path / "private.png"
    private.write_bytes(image_bytes(colour=(9, 9, 9)))
    (src / "train" / "dog" / "linked.png").symlink_to(private)
    (src / "train" / "dog" / "broken.png").symlink_to(tmp_path / "gone.png")
    inside = src / "train" / "dog" / "inside.png"
    inside.symlink_to(src / "train" / "dog" / "0.png")

    rc, out, _ = cli(capsys, "shard", src, tmp_path / "out", "--workers", "1")
    assert rc == 0 and "train: 5 samples in 1 shards, 3 skipped" in out
    assert "2 hidden files or folders" in out
    assert f"skipped {src}/train/cat/caf\\xe9.png: the file name is not valid UTF-8" in out
    assert f"skipped {src}/train/dog/linked.png: a symbolic link to '{private}', outside SRC" in out
    assert f"skipped {src}/train/dog/broken.png: a broken symbolic link" in out
    manifest, classes = read_manifest(tmp_path / "out")
    assert classes == ["cat", "dog"]  # no class made of a hidden folder
    train = manifest["splits"]["train"]
    assert train["hidden_skipped"] == 2 and train["per_class"] == [2, 3]  # the link inside SRC is read
    assert {Path(s["source"]).name for s in train["skipped"]} == {"caf\\xe9.png", "linked.png", "broken.png"}

    rc, out, _ = cli(capsys, "shard", src, tmp_path / "followed", "--workers", "1", "--follow-symlinks")
    assert rc == 0 and read_manifest(tmp_path / "followed")[0]["splits"]["train"]["per_class"] == [2, 4]


@pytest.mark.parametrize("problem", ["link outside", "not utf-8", "control character"])
def test_class_folders_that_cannot_be_classes_are_refused(tmp_path, capsys, problem):
    src = small_tree(tmp_path / "src", per_class=1)
    if problem == "link outside":
        small_tree(tmp_path / "elsewhere", classes=("bird",), per_class=1)
        (src / "train" / "bird").symlink_to(tmp_path / "elsewhere" / "train" / "bird")
        expected = "is a symbolic link to .* outside SRC: pass --follow-symlinks"
    else:
        raw = b"caf\xe9" if problem == "not utf-8" else b"two\nlines"
        folder = Path(os.fsdecode(str(src / "train").encode() + b"/" + raw))
        folder.mkdir()
        (folder / "0.png").write_bytes(image_bytes())
        expected = r"(caf\\xe9|two\\nlines)': its name is not valid UTF-8 or holds control characters.*rename it"
    rc, _, err = cli(capsys, "shard", src, tmp_path / "out")
    assert rc == 2 and re.search(expected, one_error_line(err, "shard"))
    assert not (tmp_path / "out").exists()


# --- item 14: missing, malformed, unreadable -----------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda root: (root / "classes.json").unlink(), "no classes.json in"),
        (lambda root: (root / "manifest.json").write_text('{"format": "classreg-shards/2", "splits": {'), "manifest"),
        (lambda root: (root / "classes.json").write_text("[1, 2]"), "classes.json should map"),
        (lambda root: (root / "manifest.json").write_bytes(b"\xff\xfe"), "cannot read '.*manifest.json'"),
    ],
)
def test_missing_or_malformed_metadata_is_one_line(cifar_shards, tmp_path, capsys, damage, named):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    damage(root)
    rc, _, err = cli(capsys, *FIT, f"data.root={root}", f"out_dir={tmp_path}", "name=run")
    assert rc == 2 and re.search(named, one_error_line(err, "fit"))
    rc, _, err = cli(capsys, "shard", "--check", root)
    assert rc == 2 and re.search(named, one_error_line(err, "shard"))


def test_an_unreadable_class_folder_is_one_line(tmp_path):
    src = small_tree(tmp_path / "src", per_class=1)
    (src / "train" / "dog").chmod(0)
    # root reads anything: drop the capabilities that let it, so that the folder's mode bits count
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "launch.cli", "shard", str(src), str(tmp_path / "out")],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        (src / "train" / "dog").chmod(0o755)
    line = one_error_line(proc.stderr, "shard")
    assert proc.returncode == 2 and f"cannot read the folder '{src / 'train' / 'dog'}'" in line and "chmod" in line


# --- item 17: per_class.csv at scale -------------------------------------------------------------------------


def test_per_class_csv_is_appended_and_readers_keep_the_last_validation_of_each_epoch(tmp_path):
    import numpy as np

    from lightning_modules.callbacks.per_class_results import PerClassResultsWriter
    from lightning_modules.metrics.per_class_metrics import PerClassResult
    from lightning_modules.metrics.results_files import read_per_class_csv, read_per_class_table

    names = ["cat", 'say "hi", twice', "dog"]

    def validation(correct: int) -> PerClassResult:
        counts = np.full(3, correct, dtype=np.int64)
        return PerClassResult(names, counts, np.full(3, 10, dtype=np.int64), counts, counts)

    writer = PerClassResultsWriter(tmp_path, names)
    path = tmp_path / "per_class.csv"
    writer.write(validation(1), 0, 5)
    inode, first = path.stat().st_ino, path.read_bytes()
    writer.write(validation(2), 1, 10)
    writer.write(validation(3), 2, 15)
    writer.write(validation(7), 1, 10)  # epoch 1 validated again after a resume from an older checkpoint
    assert path.stat().st_ino == inode and path.read_bytes().startswith(first)  # appended, never rewritten
    with open(path, "ab") as fh:
        fh.write(b'3,0,cat,4,10,0.400000\n3,1,"say ""hi"", tw')  # an append cut short (or read mid-write)

    rows = read_per_class_csv(path)
    assert [(r["epoch"], r["class_name"], r["correct"]) for r in rows[3:6]] == [
        ("1", "cat", "7"),
        ("1", 'say "hi", twice', "7"),
        ("1", "dog", "7"),
    ]
    assert [int(r["epoch"]) for r in rows] == [0] * 3 + [1] * 3 + [2] * 3
    table = read_per_class_table(path)
    assert table[["epoch", "correct"]].values.tolist() == [[e, c] for e, c in ((0, 1), (1, 7), (2, 3)) for _ in names]

    writer.write(validation(4), 3, 20)  # the next validation cuts the torn line first
    assert path.stat().st_ino == inode and path.read_text().endswith("\n")
    assert [(int(r["epoch"]), r["correct"]) for r in read_per_class_csv(path)][-3:] == [(3, "4")] * 3
    with open(path, newline="") as fh:
        lengths = [len(row) for row in csv.reader(fh)]
    assert lengths == [14] * (1 + 3 * 4) + [6] + [14] * 3  # the cut block's whole line stays, nothing merged
    assert len(pd.read_csv(path)) == 3 * 5 + 1  # a CSV file for anyone's pandas
    assert json.loads((tmp_path / "metrics.json").read_text())["last"]["epoch"] == 3


def test_per_class_csv_of_an_older_classreg_is_rewritten_once_with_the_current_columns(tmp_path):
    import numpy as np

    from lightning_modules.callbacks.per_class_results import PerClassResultsWriter
    from lightning_modules.metrics.per_class_metrics import PerClassResult
    from lightning_modules.metrics.results_files import read_per_class_csv

    path = tmp_path / "per_class.csv"
    path.write_text("epoch,class_index,class_name,correct,total,accuracy\n0,0,a,1,2,0.5\n0,1,b,2,2,1.0\n")
    counts = np.array([2, 1])
    PerClassResultsWriter(tmp_path, ["a", "b"]).write(
        PerClassResult(["a", "b"], counts, counts * 0 + 2, counts, counts), 1, 3
    )
    rows = read_per_class_csv(path)
    assert [(r["epoch"], r["correct"], r["top5_correct"]) for r in rows] == [
        ("0", "1", ""),
        ("0", "2", ""),
        ("1", "2", "2"),
        ("1", "1", "1"),
    ]
