import json
import tarfile
from pathlib import Path

import pytest

from datamodules.shards.format import ShardError, read_manifest
from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main


def read_shards(root: Path, split: str) -> dict[str, tuple[int, bytes, str]]:
    """key -> (label, image bytes, shard file), read back with the tarfile module (not webdataset)."""
    manifest, _ = read_manifest(root)
    samples: dict[str, dict] = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(root / shard["file"]) as tar:
            for m in tar.getmembers():
                key, ext = m.name.rsplit(".", 1)
                samples.setdefault(key, {"shard": shard["file"]})[ext] = tar.extractfile(m).read()
    return {k: (int(v["cls"]), v["jpg"], v["shard"]) for k, v in samples.items()}


def test_round_trip_every_image_once_with_right_label(cifar_tree, cifar_shards):
    manifest, classes = read_manifest(cifar_shards)
    assert classes == sorted(p.name for p in (cifar_tree / "train").iterdir())
    for split, per_class in (("train", 24), ("test", 7)):
        samples = read_shards(cifar_shards, split)
        sources = sorted((cifar_tree / split).glob("*/*.jpg"))
        assert len(samples) == len(sources) == per_class * 10
        for src in sources:
            label, data, _ = samples[f"{src.parent.name}_{src.stem}"]
            assert classes[label] == src.parent.name
            assert data == src.read_bytes()  # stored unchanged
        info = manifest["splits"][split]
        assert info["samples"] == len(sources)
        assert info["per_class"] == [per_class] * 10
        assert info["skipped"] == []
        for shard in info["shards"]:
            in_shard = [lab for lab, _, f in samples.values() if f == shard["file"]]
            assert shard["samples"] == len(in_shard) <= 50
            assert shard["per_class"] == [in_shard.count(c) for c in range(10)]


def test_samples_are_shuffled_across_shards_deterministically(cifar_tree, cifar_shards, tmp_path):
    def order(root):
        manifest, _ = read_manifest(root)
        keys = []
        for shard in manifest["splits"]["train"]["shards"]:
            with tarfile.open(root / shard["file"]) as tar:
                keys += [m.name.rsplit(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".cls")]
        return keys

    first = order(cifar_shards)
    shard_image_tree(cifar_tree, tmp_path / "again", shard_size=50, seed=0, workers=1)
    assert order(tmp_path / "again") == first
    shard_image_tree(cifar_tree, tmp_path / "seed1", shard_size=50, seed=1, workers=2)
    other = order(tmp_path / "seed1")
    assert sorted(other) == sorted(first) and other != first
    # the first shard mixes classes instead of holding one class folder
    assert len({k.rsplit("_", 1)[0] for k in first[:50]}) >= 8


def test_corrupt_jpeg_is_skipped_and_listed(cifar_tree, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(cifar_tree, tree)
    victim = sorted((tree / "train" / "cat").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 3])  # truncated JPEG
    garbage = tree / "train" / "dog" / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    manifest = shard_image_tree(tree, tmp_path / "out", shard_size=100, workers=2)
    train = manifest["splits"]["train"]
    skipped = {Path(s["source"]).name: s["error"] for s in train["skipped"]}
    assert set(skipped) == {victim.name, "garbage.jpg"}
    assert "truncated" in skipped[victim.name].lower()
    assert train["samples"] == 240 - 1  # the truncated one is out, the garbage file was extra
    keys = read_shards(tmp_path / "out", "train")
    assert f"cat_{victim.stem}" not in keys and "dog_garbage" not in keys


def test_refuses_to_overwrite_finished_shards(cifar_tree, cifar_shards):
    with pytest.raises(ShardError, match="--overwrite"):
        shard_image_tree(cifar_tree, cifar_shards)


def test_cli_reports_missing_train_folder(tmp_path, capsys):
    (tmp_path / "src" / "val" / "a").mkdir(parents=True)
    assert main(["shard", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "no train/ folder" in capsys.readouterr().err


def test_cli_writes_classes_and_manifest(cifar_tree, tmp_path, capsys):
    assert main(["shard", str(cifar_tree), str(tmp_path / "out"), "--shard-size", "64", "--workers", "2"]) == 0
    assert "train: 240 samples in 4 shards, 0 skipped" in capsys.readouterr().out
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes["0"] == "airplane" and len(classes) == 10
