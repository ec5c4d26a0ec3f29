"""The DALI backend with real DALI CPU pipelines on real JPEG shards."""

import csv
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.configkit import ConfigError
from datamodules.dali_backend.datamodule import DaliDataModule
from datamodules.shards.format import ShardError, read_manifest
from datamodules.sources.image_tree import shard_image_tree
from launch.cli import main
from launch.config import load_config
from launch.fit import build_datamodule
from lightning_modules.augment import ImageTransforms


def datamodule(root, *overrides, **kw):
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            "data.backend=dali",
            "data.image_size=32",
            "data.batch_size=16",
            "data.num_workers=1",
            "data.shuffle_buffer=64",
            *overrides,
        ],
    )
    dm = DaliDataModule(cfg.data, ImageTransforms.of(cfg.aug, cfg.data), seed=kw.get("seed", 0))
    dm.setup()
    return dm


def normalized(dm, *args, **kwargs):
    """The batches of ``dm.loader(*args, **kwargs)`` as the model gets them: images normalized to float."""
    return (dm.on_after_batch_transfer(batch, 0) for batch in dm.loader(*args, **kwargs))


def shard_keys(root, split):
    """key -> label, read from the shards with the tarfile module."""
    manifest, _ = read_manifest(root)
    keys = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(root / shard["file"]) as tar:
            for m in tar:
                if m.name.endswith(".cls"):
                    keys[m.name[:-4]] = int(tar.extractfile(m).read())
    return keys


@pytest.mark.parametrize("split,train", [("train", True), ("test", False)])
@pytest.mark.parametrize("world,batch", [(1, 16), (2, 16), (3, 23)])
def test_every_sample_once_per_epoch_across_ranks(cifar_shards, split, train, world, batch):
    expected = shard_keys(cifar_shards, split)
    _, classes = read_manifest(cifar_shards)
    dm = datamodule(cifar_shards, f"data.batch_size={batch}")
    loaders = [dm.loader(split, train, rank, world, with_keys=True) for rank in range(world)]
    assert len({len(loader) for loader in loaders}) == 1  # DDP: the same number of steps on every rank
    orders = []
    for _ in range(2):
        seen = []
        for loader in loaders:
            batches = list(loader)
            assert len(batches) == len(loader)
            for images, labels, keys in batches:
                assert images.shape[1:] == (3, 32, 32) and len(keys) == len(labels) <= batch + 1
                for key, label in zip(keys, labels.tolist()):
                    assert label == expected[key]  # the int32 label component matches the class folder
                    assert classes[label] == key.rsplit("_", 1)[0]
                seen += keys
        assert Counter(seen) == Counter(expected.keys())  # every sample exactly once (3 ranks: 23, 23, 24)
        orders.append(seen)
    assert (orders[0] != orders[1]) == train  # training reshuffles each epoch; evaluation reads the same order


def test_eval_agrees_with_torchvision_backend(cifar_shards):
    overrides = ["data.image_size=24", "data.mean=[0,0,0]", "data.std=[1,1,1]"]
    dali = normalized(datamodule(cifar_shards, *overrides), "test", train=False, with_keys=True)
    cfg = load_config(
        None,
        [
            f"data.root={cifar_shards}",
            "data.image_size=24",
            "data.batch_size=16",
            "data.num_workers=0",
            "data.mean=[0,0,0]",
            "data.std=[1,1,1]",
        ],
    )
    tv = build_datamodule(cfg)
    tv.setup()
    tv_images, tv_labels = map(torch.cat, zip(*[tv.on_after_batch_transfer(b, 0)[:2] for b in tv.val_dataloader()]))
    dali_images, dali_labels = map(torch.cat, zip(*[b[:2] for b in dali]))
    assert dali_images.shape == tv_images.shape == (70, 3, 24, 24)
    assert Counter(dali_labels.tolist()) == Counter(tv_labels.tolist())
    # Same pixels up to resize rounding: the per-channel means over the set agree closely ...
    assert torch.allclose(dali_images.mean((0, 2, 3)), tv_images.mean((0, 2, 3)), atol=0.01)
    assert torch.allclose(dali_images.std((0, 2, 3)), tv_images.std((0, 2, 3)), atol=0.02)
    # ... and so does each image's mean (the sets are in different orders: match them by sorted means).
    d, t = dali_images.mean((1, 2, 3)).sort().values, tv_images.mean((1, 2, 3)).sort().values
    assert (d - t).abs().max() < 0.02


@pytest.fixture(scope="module")
def gradient_shards(tmp_path_factory):
    """Two classes of 128x96 JPEGs whose red channel encodes x and green channel y: a crop shows its window."""
    src = tmp_path_factory.mktemp("gradient")
    h, w = 96, 128
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    image = np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8)
    for cls in ("a", "b"):
        (src / "train" / cls).mkdir(parents=True)
        for i in range(48):
            Image.fromarray(image).save(src / "train" / cls / f"{i}.jpg", quality=98)
    out = tmp_path_factory.mktemp("gradient_shards")
    shard_image_tree(src, out, shard_size=40, workers=1)
    return out


def crop_windows(root, *overrides):
    """Per training sample: label, crop area as a fraction of the image, and whether it was flipped."""
    dm = datamodule(root, "data.mean=[0,0,0]", "data.std=[1,1,1]", "data.val_split=train", *overrides)
    out = []
    for images, labels in normalized(dm, "train", train=True):
        red, green = images[:, 0].mean(1), images[:, 1].mean(2)  # red along x, green along y
        width = red[:, -1] - red[:, 0]
        height = green[:, -1] - green[:, 0]
        scale = 32 / 31  # the first and last pixel centres are half a pixel inside the window
        for label, dw, dh in zip(labels.tolist(), width.tolist(), height.tolist()):
            out.append((label, abs(dw) * abs(dh) * scale * scale, dw < 0))
    return out


def test_rrc_crop_area_respects_min_scale_in_dali_random_crop_decoder(gradient_shards):
    windows = crop_windows(gradient_shards, "aug.policy=[rrc]", "aug.rrc.min_scale=0.3")
    areas = [a for _, a, _ in windows]
    assert len(areas) == 96 and min(areas) > 0.3 - 0.03 and max(areas) < 1.03
    assert max(areas) - min(areas) > 0.4  # random, spread over [0.3, 1]
    assert not any(flipped for _, _, flipped in windows)


def test_class_conditional_parameters_are_applied_per_sample(gradient_shards):
    windows = crop_windows(
        gradient_shards,
        "aug.policy=[rrc,flip]",
        "aug.rrc.min_scale=0.5",
        "aug.flip.p=0.0",
        "aug.class_overrides.b.rrc.min_scale=0.04",
        "aug.class_overrides.b.rrc.max_scale=0.06",
        "aug.class_overrides.b.flip.p=1.0",
    )
    a = [(area, f) for label, area, f in windows if label == 0]
    b = [(area, f) for label, area, f in windows if label == 1]
    assert len(a) == len(b) == 48
    assert all(area > 0.5 - 0.04 for area, _ in a) and max(area for area, _ in a) > 0.8
    assert all(0.03 < area < 0.075 for area, _ in b)
    assert not any(f for _, f in a) and all(f for _, f in b)


def test_class_with_other_policy_list_gets_neutral_parameters(gradient_shards):
    # class b: no random crop at all (resize + centre crop of the whole 128x96 image: 96x96, area 0.75)
    windows = crop_windows(
        gradient_shards,
        "aug.policy=[rrc,flip]",
        "aug.rrc.min_scale=0.1",
        "aug.flip.p=1.0",
        "aug.class_overrides.b.policy=[none]",
    )
    b = [(area, f) for label, area, f in windows if label == 1]
    assert all(abs(area - 0.75) < 0.03 and not f for area, f in b)
    assert all(f for label, _, f in windows if label == 0)


def test_pad_crop_shifts_the_image_and_pads_with_zeros(cifar_shards):
    def batches(*policy):
        dm = datamodule(cifar_shards, "data.mean=[0,0,0]", "data.std=[1,1,1]", "data.shuffle_buffer=0", *policy)
        return torch.cat([b[0] for b in normalized(dm, "test", train=True)])

    plain, padded = batches("aug.policy=[none]"), batches("aug.policy=[pad_crop]", "aug.pad_crop.padding=4")
    shifts = Counter()
    for p, q in zip(plain, padded):
        canvas = torch.zeros(3, 40, 40)
        canvas[:, 4:36, 4:36] = p
        match = [
            (dx, dy)
            for dx in range(9)
            for dy in range(9)
            if torch.allclose(canvas[:, dy : dy + 32, dx : dx + 32], q, atol=1e-6)
        ]
        assert match, "every output is the image shifted by at most 4 px with zero padding"
        shifts[match[0]] += 1
    assert len(shifts) > 10  # random offsets


def test_no_augmentation_equals_the_evaluation_transform_and_jitter_changes_colours(cifar_shards):
    dm = datamodule(cifar_shards, "data.shuffle_buffer=0", "aug.policy=[none]")
    train = torch.cat([b[0] for b in normalized(dm, "test", train=True)])
    evaluation = torch.cat([b[0] for b in normalized(dm, "test", train=False)])
    assert torch.allclose(train, evaluation)
    jitter = datamodule(
        cifar_shards,
        "data.shuffle_buffer=0",
        "aug.policy=[color_jitter]",
        "aug.color_jitter.strength=0.4",
        "aug.color_jitter.hue=0.1",
    )
    jittered = torch.cat([b[0] for b in normalized(jitter, "test", train=True)])
    assert jittered.shape == train.shape and not torch.allclose(jittered, train, atol=0.05)
    assert torch.isfinite(jittered).all()


def test_policies_without_dali_or_with_torchvision_only_settings_fail_early(cifar_shards):
    with pytest.raises(ConfigError, match="padding_mode"):
        dm = datamodule(cifar_shards, "aug.policy=[pad_crop]", "aug.pad_crop.padding_mode=reflect")
        dm.loader("train", train=True)
    with pytest.raises(ConfigError, match="conflicting orders"):
        datamodule(cifar_shards, "aug.policy=[rrc,flip]", "aug.class_overrides.cat.policy=[flip,rrc]").loader(
            "train", train=True
        )


def test_truncated_shard_and_corrupt_jpeg_name_the_shard(cifar_shards, tmp_path):
    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    manifest, _ = read_manifest(root)
    first = manifest["splits"]["train"]["shards"][0]["file"]
    with open(root / first, "r+b") as fh:
        fh.truncate(5000)
    with pytest.raises(ShardError, match=f"{first}.*truncated"):
        datamodule(root).loader("train", train=True)
    shutil.copy(cifar_shards / first, root / first)  # every shard of a run's splits is checked when it opens

    # a JPEG garbled inside a test shard, its size unchanged
    shard = manifest["splits"]["test"]["shards"][0]
    line = (root / shard["index"]).read_text().splitlines()[1].split()
    offset, size, member = int(line[1]), int(line[2]), line[3]
    with open(root / shard["file"], "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(size))
        table = data.find(b"\xff\xc4")
        data[table + 5 : table + 21] = b"\xff" * 16
        fh.seek(offset)
        fh.write(data)
    with pytest.raises(ShardError, match=rf"'{member}'.*{shard['file']}.*--verify"):
        list(datamodule(root).loader("test", train=False))


def test_fit_with_dali_backend_on_cpu_writes_per_class_results(cifar_shards, tmp_path, caplog):
    rc = main(
        [
            "fit",
            "-c",
            "configs/fashion_mnist_demo.yaml",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=dali",
            "data.backend=dali",
            "data.image_size=32",
            "data.batch_size=32",
            "data.num_workers=1",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=1.0",
            "trainer.progress_bar=false",
            "aug.class_overrides.cat.pad_crop.padding=0",
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "dali" / "per_class.csv")))
    assert {int(r["epoch"]) for r in rows} == {0, 1} and len(rows) == 20
    assert all(int(r["total"]) == 7 for r in rows)  # every test image counted exactly once per validation
    assert "DALI train pipeline: decoding on cpu (no CUDA device)" in caplog.text  # the device choice is reported


@pytest.mark.slow
def test_ddp_two_processes_count_every_validation_image_once(cifar_shards, tmp_path):
    """Real DDP (gloo, two processes started by Lightning): 35 test images per rank, counted once in total."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.cli",
            "fit",
            "-c",
            "configs/fashion_mnist_demo.yaml",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=ddp",
            "data.backend=dali",
            "data.image_size=32",
            "data.batch_size=32",
            "data.num_workers=1",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=1.0",
            "trainer.progress_bar=false",
        ],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "per_class.csv")))
    assert len(rows) == 20 and all(int(r["total"]) == 7 for r in rows)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # 240 training images, 120 per rank, batches of 32: 4 steps per epoch on each rank
    assert metrics["last"]["global_step"] == 8 and metrics["last"]["samples"] == 70
    assert "2 process(es)" in proc.stderr + proc.stdout


def dali_windows(overrides, label, height, width, n=10_000, seed=0):
    """n crop windows ((x, y), (w, h)) of the DALI rrc policy for samples of class ``label`` (of "a", "b")."""
    from nvidia.dali import fn, pipeline_def

    from lightning_modules.augment.dali import build_dali_policies

    aug = load_config(None, ["aug.policy=[rrc,flip]", *overrides]).aug
    batch = 1000

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=seed)
    def windows():
        labels = fn.external_source(source=lambda: [np.array([label], np.int32)] * batch, batch=True)
        hw = fn.external_source(source=lambda: [np.array([height, width], np.float32)] * batch, batch=True)
        rrc = build_dali_policies(aug, ["a", "b"], 32, labels)[0]  # as in the training pipeline
        return rrc.window(hw[0], hw[1])

    pipe = windows()
    pipe.build()
    anchors, shapes = zip(*[[np.array(out.as_tensor()) for out in pipe.run()] for _ in range(n // batch)])
    return np.concatenate(anchors).astype(np.int64), np.concatenate(shapes).astype(np.int64)


def torchvision_windows(scale, height, width, n=10_000):
    from torchvision.transforms import v2

    rrc, image = v2.RandomResizedCrop(32, scale=scale), torch.empty(3, height, width)
    torch.manual_seed(0)
    params = [rrc.make_params([image]) for _ in range(n)]
    return np.array([[p["left"], p["top"]] for p in params]), np.array([[p["width"], p["height"]] for p in params])


def same_distribution(a, b) -> bool:
    from scipy.stats import ks_2samp

    return ks_2samp(a, b).pvalue > 0.001


@pytest.mark.parametrize("height,width", [(375, 500), (500, 375), (64, 64), (100, 400)])
def test_dali_crop_windows_follow_torchvision_with_or_without_overrides_for_other_classes(height, width):
    """Area, aspect and place of 10,000 windows per backend agree (KS); an override for class b leaves class a's
    windows alone. 100 x 400 is wider than any allowed aspect ratio: torchvision's fallback crops its centre."""
    corner, reference = torchvision_windows((0.08, 1.0), height, width)

    def stats(anchor, shape):
        centre = (anchor + shape / 2) / [width, height]
        return shape.prod(1) / (height * width), shape[:, 0] / shape[:, 1], centre[:, 0], centre[:, 1]

    for overrides in ([], ["aug.class_overrides.b.rrc.min_scale=0.5"]):
        anchor, shape = dali_windows(overrides, 0, height, width)
        assert (anchor >= 0).all() and (anchor + shape <= [width, height]).all() and (shape >= 1).all()
        for ours, theirs in zip(stats(anchor, shape), stats(corner, reference)):
            assert same_distribution(ours, theirs)
    _, overridden = dali_windows(["aug.class_overrides.b.rrc.min_scale=0.5"], 1, height, width)
    assert same_distribution(overridden.prod(1), torchvision_windows((0.5, 1.0), height, width)[1].prod(1))
    _, slightly_off = torchvision_windows((0.12, 1.0), height, width)
    assert not same_distribution(shape.prod(1), slightly_off.prod(1))  # the comparison can tell samplers apart


def test_dali_min_scale_one_is_the_whole_image_and_center_crop_its_centred_square(gradient_shards):
    for extra in ([], ["aug.class_overrides.b.flip.p=1.0"]):
        windows = crop_windows(gradient_shards, "aug.policy=[rrc,flip]", "aug.rrc.min_scale=1.0", *extra)
        assert len(windows) == 96 and all(abs(area - 1.0) < 0.03 for _, area, _ in windows)  # 128 x 96 is 4:3
    windows = crop_windows(gradient_shards, "aug.policy=[center_crop]")
    assert all(abs(area - 0.75) < 0.03 for _, area, _ in windows)
    # with class overrides, center_crop is the neutral window of the other classes' rrc
    windows = crop_windows(
        gradient_shards, "aug.policy=[rrc]", "aug.rrc.min_scale=0.3", "aug.class_overrides.b.policy=[center_crop]"
    )
    assert all(abs(area - 0.75) < 0.03 for label, area, _ in windows if label == 1)
    assert max(area for label, area, _ in windows if label == 0) - min(a for lb, a, _ in windows if lb == 0) > 0.3
