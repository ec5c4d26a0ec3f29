"""Augmentation policies on real CIFAR-10 JPEGs: crop statistics, determinism, class-conditional sampling, errors."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import REPO
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from datamodules.configkit import ConfigError
from datamodules.torchvision_backend.decode import decode_sample
from launch.cli import main
from launch.config import load_config, save_resolved
from launch.fit import build_datamodule
from lightning_modules.augment import POLICIES, compile_torchvision
from lightning_modules.augment.evaluation import to_float_normalized

MEAN, STD = [0.5] * 3, [0.25] * 3


def real_images(cifar_tree: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((cifar_tree / "train").glob("*/*.jpg"))]


class CropRecorder:
    """Records the boxes that RandomResizedCrop.make_params samples while the real transform runs."""

    def __init__(self, monkeypatch):
        self.boxes = []
        original = v2.RandomResizedCrop.make_params

        def record(transform, flat_inputs):
            params = original(transform, flat_inputs)
            self.boxes.append((params["height"], params["width"]))
            return params

        monkeypatch.setattr(v2.RandomResizedCrop, "make_params", record)


def crop_stats(boxes, image_area):
    h, w = np.array(boxes, dtype=float).T
    return h * w / image_area, w / h


def test_rrc_crop_areas_follow_min_scale_and_torchvision(cifar_tree, monkeypatch):
    images = real_images(cifar_tree)
    assert len(images) == 240 and images[0].size == (32, 32)
    draws = 4000
    recorder = CropRecorder(monkeypatch)
    cfg = load_config(None, ["aug.policy=[rrc,flip]", "aug.rrc.min_scale=0.5"])
    ours = compile_torchvision(cfg.aug, 32, MEAN, STD)
    torch.manual_seed(0)
    for i in range(draws):
        assert ours(images[i % len(images)]).shape == (3, 32, 32)
    our_boxes, recorder.boxes = recorder.boxes, []
    assert len(our_boxes) == draws
    area, ratio = crop_stats(our_boxes, 32 * 32)
    # w and h are rounded to whole pixels: the sampled area before rounding is at least min_scale.
    h, w = np.array(our_boxes, dtype=float).T
    assert ((h + 0.5) * (w + 0.5) >= 0.5 * 32 * 32).all()
    assert area.min() < 0.55 and area.max() == 1.0  # the whole range is used
    assert (area < 0.5).mean() < 0.05  # only rounding brings a crop under 50%

    def reference(scale):
        torch.manual_seed(1)
        rrc = v2.RandomResizedCrop(32, scale=scale, antialias=True)
        for i in range(draws):
            rrc(images[i % len(images)])
        boxes, recorder.boxes = recorder.boxes, []
        return crop_stats(boxes, 32 * 32)

    ref_area, ref_ratio = reference((0.5, 1.0))
    assert ks_2samp(area, ref_area).pvalue > 0.01
    assert ks_2samp(ratio, ref_ratio).pvalue > 0.01
    wrong_area, _ = reference((0.08, 1.0))  # the test can tell a different min_scale apart
    assert ks_2samp(area, wrong_area).pvalue < 1e-6


def test_min_scale_one_is_the_whole_image_and_center_crop_is_resize_and_centre_crop(cifar_tree):
    image = real_images(cifar_tree)[5]
    landscape = image.resize((40, 30))  # 4:3, as most ImageNet photos: RandomResizedCrop(scale=(1, 1)) keeps it all
    cfg = load_config(None, ["aug.policy=[rrc]", "aug.rrc.min_scale=1.0"])
    transform = compile_torchvision(cfg.aug, 32, MEAN, STD)
    whole = v2.Compose([v2.Resize((32, 32), antialias=True), to_float_normalized(MEAN, STD)])(landscape)
    reference = v2.Compose([v2.RandomResizedCrop(32, scale=(1.0, 1.0), antialias=True), to_float_normalized(MEAN, STD)])
    outputs = []
    for seed in range(40):  # exactly torchvision's transform, draw for draw
        torch.manual_seed(seed)
        outputs.append(transform(landscape))
        torch.manual_seed(seed)
        assert torch.equal(outputs[-1], reference(landscape))
    assert sum(torch.equal(out, whole) for out in outputs) >= 36  # (a draw of 39 x 30 px also fits, now and then)
    wide = image.resize((48, 32))  # 3:2 is wider than the ratio range: torchvision's fallback, the centred 4:3 part
    centred = v2.Compose([v2.CenterCrop((32, 43)), v2.Resize((32, 32), antialias=True), to_float_normalized(MEAN, STD)])
    assert all(torch.equal(transform(wide), centred(wide)) for _ in range(20))

    center_crop = compile_torchvision(
        load_config(None, ["aug.policy=[center_crop,flip]", "aug.flip.p=0"]).aug, 32, MEAN, STD
    )
    expected = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(32), to_float_normalized(MEAN, STD)])
    assert all(torch.equal(center_crop(im), expected(im)) for im in (landscape, wide))


def test_demo_preset_policy_is_the_former_small_image_default(cifar_tree):
    # the former default padded image_size // 8 = 3 px; the demo itself pads 2 now (docs/demo-design.md)
    cfg = load_config(REPO / "configs" / "fashion_mnist_demo.yaml", ["aug.pad_crop.padding=3"])
    assert cfg.aug.policy == ["pad_crop", "flip"] and cfg.aug.pad_crop.padding == 3
    transform = compile_torchvision(cfg.aug, 28, MEAN, STD)
    # What the demo trained with before policies existed (image_size <= 64: pad image_size // 8, crop, flip).
    former = v2.Compose(
        [
            v2.Resize(28, antialias=True),
            v2.RandomCrop(28, padding=28 // 8),
            v2.RandomHorizontalFlip(),
            to_float_normalized(MEAN, STD),
        ]
    )
    images = [im.resize((28, 28)) for im in real_images(cifar_tree)[:40]]
    torch.manual_seed(0)
    ours = torch.stack([transform(im) for im in images for _ in range(5)])
    torch.manual_seed(0)
    theirs = torch.stack([former(im) for im in images for _ in range(5)])
    assert ours.shape == (200, 3, 28, 28) and torch.equal(ours, theirs)
    assert not all(torch.equal(o, ours[0]) for o in ours[:5])  # random, and the same random draws


def test_color_jitter_strength_changes_pixels(cifar_tree):
    image = real_images(cifar_tree)[3]
    plain = compile_torchvision(load_config(None, ["aug.policy=[none]"]).aug, 32, MEAN, STD)(image)
    for strength, changed in ((0.0, False), (0.8, True)):
        aug = load_config(None, ["aug.policy=[color_jitter]", f"aug.color_jitter.strength={strength}"]).aug
        torch.manual_seed(0)
        out = compile_torchvision(aug, 32, MEAN, STD)(image)
        assert (not torch.allclose(out, plain, atol=1e-6)) == changed


def test_class_conditional_overrides_apply_per_sample(cifar_shards):
    # Default: a random crop of at most 90% of the image, always mirrored: never the centre view, rarely repeated.
    overrides = [
        "aug.policy=[rrc,flip]",
        "aug.rrc.min_scale=0.08",
        "aug.rrc.max_scale=0.9",
        "aug.flip.p=1.0",
        "aug.class_overrides.cat.policy=[rrc]",
        "aug.class_overrides.cat.rrc.max_scale=1.0",
        "aug.class_overrides.cat.rrc.min_scale=1.0",
        "aug.class_overrides.7.policy=[none]",
    ]  # 7: horse, by index
    cfg = load_config(
        None,
        [
            f"data.root={cifar_shards}",
            "data.image_size=32",
            "data.batch_size=16",
            "data.num_workers=0",
            "data.mean=[0.5,0.5,0.5]",
            "data.std=[0.25,0.25,0.25]",
            *overrides,
        ],
    )
    dm = build_datamodule(cfg)
    dm.setup()
    overridden = {dm.class_names.index("cat"), dm.class_names.index("horse")}
    deterministic = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(32)])  # uint8: normalized later

    # Every training sample, through the datamodule's own training transform, three times.
    urls = [str(cifar_shards / s["file"]) for s in dm.manifest["splits"]["train"]["shards"]]
    torch.manual_seed(0)
    exact = {c: [] for c in range(10)}
    checked = {True: 0, False: 0}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        image, label = decode_sample(sample, num_classes=10)
        first, second, third = (dm.train_transform(image, label) for _ in range(3))
        expected = deterministic(image)
        exact[label].append(expected)
        if label in overridden:
            assert all(torch.equal(out, expected) for out in (first, second, third)), sample["__key__"]
        else:
            assert not (torch.equal(first, second) and torch.equal(second, third)), sample["__key__"]
            assert not any(torch.equal(out, expected) for out in (first, second, third)), sample["__key__"]
        checked[label in overridden] += 1
    assert checked == {True: 48, False: 192}

    # Through the ShardStream batches: the stream hands each sample's label to the transform.
    seen = torch.zeros(10, dtype=torch.long)
    for images, labels in dm.train_dataloader():
        for img, label in zip(images, labels.tolist()):
            is_exact = any(torch.equal(img, e) for e in exact[label])
            assert is_exact == (label in overridden)
            seen[label] += 1
    assert seen.tolist() == [24] * 10


def test_class_override_of_unknown_class_fails_before_training(cifar_shards, tmp_path, capsys):
    rc = main(
        [
            "fit",
            f"out_dir={tmp_path}",
            f"data.root={cifar_shards}",
            "data.image_size=32",
            "aug.class_overrides.kitten.rrc.min_scale=1.0",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "'kitten' is not a class of these shards" in err
    assert "Valid names: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck" in err
    assert list(tmp_path.iterdir()) == []  # nothing was created
    cfg = load_config(None, [f"data.root={cifar_shards}", "aug.class_overrides.10.policy=[none]"])
    with pytest.raises(ConfigError, match=r"'10' is not a class.*index 0-9"):
        build_datamodule(cfg).setup()
    cfg = load_config(
        None,
        [f"data.root={cifar_shards}", "aug.class_overrides.cat.policy=[none]", "aug.class_overrides.3.policy=[flip]"],
    )
    with pytest.raises(ConfigError, match=r"names class 3 \('cat'\) twice"):
        build_datamodule(cfg).setup()


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "aug.policy=[rrc,flipp]",
            r"unknown augmentation policy 'flipp' in aug.policy.*Registered policies: "
            r"center_crop, color_jitter, flip, none, pad_crop, rrc.*Did you mean 'flip'",
        ),
        ("aug.rrc.min_scale=0", r"'aug.rrc.min_scale': 0.0. Allowed range: \(0.0, 1.0\]"),
        ("aug.rrc.min_scale=1.2", r"'aug.rrc.min_scale': 1.2. Allowed range: \(0.0, 1.0\]"),
        ("aug.class_overrides.cat.rrc.min_scale=0", r"aug.class_overrides.cat: .*'aug.rrc.min_scale': 0.0"),
        ("aug.class_overrides.cat.policy=[crop]", r"aug.class_overrides.cat: unknown augmentation policy 'crop'"),
        (
            "aug.class_overrides.cat.rrc.min_scal=0.5",
            r"unknown config key 'aug.rrc.min_scal' \(from "
            r"aug.class_overrides.cat\). Did you mean 'aug.rrc.min_scale'",
        ),
        ("aug.policy=[pad_crop,rrc]", r"2 policies that crop/resize \(pad_crop, rrc\)"),
        ("aug.rrc.ratio=[1.5,1.0]", r"aug.rrc.ratio"),
    ],
)
def test_bad_policy_config_fails_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_grid_axes_are_dotted_paths_and_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "aug.rrc.min_scale=0.25",
            "aug.color_jitter.strength=0.2",
            "wd.value=5e-5",
            "aug.class_overrides.cat.rrc.min_scale=1.0",
        ],
    )
    assert (cfg.aug.rrc.min_scale, cfg.aug.color_jitter.strength, cfg.wd.value) == (0.25, 0.2, 5e-5)
    assert cfg.aug.for_class("cat").rrc.min_scale == 1.0 and cfg.aug.for_class("cat").color_jitter.strength == 0.2
    save_resolved(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_dali_backend_refuses_a_policy_without_dali_before_any_work(cifar_shards):
    from lightning_modules.augment import Policy, register_policy

    @register_policy("test_torchvision_only")
    class TorchvisionOnly(Policy):
        def torchvision(self):
            return []

    with pytest.raises(NotImplementedError, match="'test_torchvision_only' has no DALI implementation yet"):
        TorchvisionOnly(None, 32).dali(None, None)
    cfg = load_config(
        None, [f"data.root={cifar_shards}", "data.backend=dali", "aug.policy=[rrc,test_torchvision_only]"]
    )
    with pytest.raises(
        ConfigError, match=r"\['test_torchvision_only'\] have no DALI implementation.*data.backend=torchvision"
    ):
        build_datamodule(cfg).setup()


def docs_policy_example() -> str:
    text = (REPO / "docs" / "policies.md").read_text()
    section = text.split("## Add your own policy", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_docs_policy_example_runs(cifar_tree):
    code = docs_policy_example()
    try:
        exec(compile(code, "docs/policies.md", "exec"), {})
        assert "grayscale" in POLICIES
        cfg = load_config(None, ["aug.policy=[rrc,grayscale]", "aug.custom.grayscale.p=1.0"])
        out = compile_torchvision(cfg.aug, 32, MEAN, STD)(real_images(cifar_tree)[0])
        assert out.shape == (3, 32, 32) and torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
        with pytest.raises(ConfigError, match=r"aug.custom.grayscale.p.*Allowed range"):
            load_config(None, ["aug.policy=[grayscale]", "aug.custom.grayscale.p=2"])
        with pytest.raises(ConfigError, match=r"bad aug.custom.grayscale.*Parameters of 'grayscale': p"):
            load_config(None, ["aug.policy=[grayscale]", "aug.custom.grayscale.q=1"])
    finally:
        POLICIES.pop("grayscale", None)


def test_docs_class_override_example_is_a_valid_config(tmp_path):
    text = (REPO / "docs" / "policies.md").read_text()
    section = text.split("# Augmentation and weight-decay policies", 1)[1].split("\n## ", 1)[0]
    preset = tmp_path / "example.yaml"
    preset.write_text(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    aug = load_config(preset).aug
    assert aug.for_class("n01773549").rrc.min_scale == 1.0 and aug.for_class("42").policy == ["flip"]
