"""The fast CPU input path keeps the semantics of the PIL path it replaced (its speed is measured in
bench/input_pipeline.py, not here): every image format decodes to the RGB pixels PIL gave, the policies draw
the same crops, flips and jitter on uint8 tensors as on PIL images, evaluation gives the same pixels up to
resize rounding, and batches written in DataLoader workers hold exactly the per-sample results (uint8, normalized
after the transfer to the device exactly as one image is)."""

import io
import sys

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import torchvision_labels
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from datamodules.config import DataConfig
from datamodules.normalize import normalize
from datamodules.torchvision_backend import decode
from datamodules.torchvision_backend.datamodule import ShardDataModule
from datamodules.torchvision_backend.decode import CorruptSampleError, SampleError, decode_sample
from launch.config import load_config
from lightning_modules.augment import AugConfig, ImageTransforms, compile_torchvision
from lightning_modules.augment.evaluation import eval_transform, to_float_normalized

ZERO, ONE = [0.0] * 3, [1.0] * 3  # normalization that leaves pixels / 255


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def pil_rgb(data: bytes) -> torch.Tensor:
    """What the PIL path decoded: Image.open(...).convert("RGB"), as a (3, H, W) uint8 tensor."""
    with Image.open(io.BytesIO(data)) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


def sample(data: bytes, ext: str = "jpg", label: int = 3) -> dict:
    return {"__key__": "cat_0007", "__url__": "/shards/train-000002.tar", ext: data, "cls": str(label).encode()}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 106x74 RGB image with texture and smooth colour (JPEG-friendly, not a flat field)."""
    rng = np.random.default_rng(0)
    low = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize((106, 74), Image.BICUBIC)
    noise = rng.normal(0, 20, (74, 106, 3))
    return Image.fromarray(np.clip(np.asarray(low, float) + noise, 0, 255).astype(np.uint8))


def test_every_format_decodes_to_the_rgb_pixels_pil_gave(photo):
    cases = {
        "jpg": [encoded(photo, "JPEG", quality=90), encoded(photo.convert("L"), "JPEG")],
        "png": [encoded(photo.convert(mode), "PNG") for mode in ("RGB", "RGBA", "LA", "L", "P", "1")]
        + [encoded(photo.convert("P"), "PNG", transparency=3)],
        "webp": [encoded(photo, "WEBP", quality=90), encoded(photo.convert("RGBA"), "WEBP", lossless=True)],
        "bmp": [encoded(photo, "BMP")],  # not a TorchCodec format: PIL decodes it
    }
    cases["jpg"] += [
        encoded(photo.convert("CMYK"), "JPEG"),
        encoded(photo.convert("P"), "GIF"),  # misnamed files: the content decides, not the extension
        encoded(photo, "PNG"),
    ]
    for ext, payloads in cases.items():
        for data in payloads:
            image, label = decode_sample(sample(data, ext), 10)
            assert image.dtype == torch.uint8 and image.shape == (3, 74, 106) and label == 3
            assert torch.equal(image, pil_rgb(data)), (ext, Image.open(io.BytesIO(data)).mode)


def test_16_bit_png_is_scaled_to_8_bits():
    values = np.arange(0, 65536, 4096, dtype=np.uint16).reshape(4, 4)  # PIL's convert("RGB") clipped these at 255
    image, _ = decode_sample(sample(encoded(Image.fromarray(values), "PNG"), "png"), 10)
    assert image.shape == (3, 4, 4) and torch.equal(image[0], image[2])
    assert (image[0].numpy().astype(int) - values // 257).__abs__().max() <= 1


def test_exif_orientation_is_applied_as_dali_decodes_it(photo):
    from nvidia.dali import fn, pipeline_def, types

    exif = photo.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    data = encoded(photo, "JPEG", quality=95, exif=exif.tobytes())
    image, _ = decode_sample(sample(data), 10)
    assert image.shape == (3, 106, 74)
    with Image.open(io.BytesIO(data)) as im:
        upright = torch.from_numpy(np.array(im.transpose(Image.Transpose.ROTATE_270).convert("RGB")))
    assert torch.equal(image, upright.permute(2, 0, 1))

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def dali_decode():
        source = fn.external_source(source=lambda: [np.frombuffer(data, np.uint8)], batch=True)
        return fn.decoders.image(source, device="cpu", output_type=types.RGB)

    pipe = dali_decode()
    pipe.build()
    (dali,) = pipe.run()
    dali = torch.from_numpy(dali.as_array()[0]).permute(2, 0, 1)
    assert dali.shape == image.shape and (dali.float() - image.float()).abs().mean() < 1.0


def test_corrupt_samples_name_the_sample_and_its_shard(photo):
    whole = encoded(photo, "JPEG")
    for data in (whole[: len(whole) // 2], b"\xff\xd8\xff" + bytes(100), b"not an image", b""):
        with pytest.raises(CorruptSampleError) as raised:
            decode_sample(sample(data), 10)
        message = str(raised.value)
        assert "'cat_0007'" in message and "'/shards/train-000002.tar'" in message and "classreg shard" in message
    with pytest.raises(SampleError, match="'cat_0007' .* has no integer label"):
        decode_sample(sample(whole) | {"cls": b"three"}, 10)


def test_without_torchcodec_pil_decodes_everything_and_says_so(photo, monkeypatch):
    data = encoded(photo, "JPEG")
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "torchcodec.decoders", None)  # as an uninstalled or unloadable TorchCodec
            decode._torchcodec.cache_clear()
            with pytest.warns(UserWarning, match=r"TorchCodec cannot be loaded .*decodes images with PIL"):
                image, _ = decode_sample(sample(data), 10)
            assert torch.equal(image, pil_rgb(data))
    finally:
        decode._torchcodec.cache_clear()
    assert decode._torchcodec() is not None


@pytest.fixture(scope="module")
def gradient() -> bytes:
    """A 128x96 PNG whose red channel encodes x and green channel y: a crop's pixels show its window."""
    h, w = 96, 128
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    return encoded(Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8)), "PNG")


def windows(outputs: torch.Tensor):
    """Crop area (fraction of the 128x96 image), aspect ratio w/h and flip of each 32x32 output of `gradient`."""
    red, green = outputs[:, 0].mean(1), outputs[:, 1].mean(2)  # red along x, green along y
    scale = 32 / 31  # the first and last pixel centres are half a pixel inside the window
    width = (red[:, -1] - red[:, 0]) * scale * 127
    height = (green[:, -1] - green[:, 0]) * scale * 95
    return (width.abs() * height.abs() / (128 * 96)).numpy(), (width.abs() / height.abs()).numpy(), width < 0


def draws(transform, image, n: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([transform(image) for _ in range(n)])


def test_tensor_path_draws_the_crops_and_flips_of_the_pil_path(gradient):
    aug = load_config(None, ["aug.policy=[rrc,flip]", "aug.rrc.min_scale=0.2"]).aug
    transform = compile_torchvision(aug, 32, ZERO, ONE)
    tensor, _ = decode_sample(sample(gradient, "png"), 10)
    pil = Image.open(io.BytesIO(gradient)).convert("RGB")
    area, aspect, flipped = windows(draws(transform, tensor, 1500, seed=0))
    pil_area, pil_aspect, pil_flipped = windows(draws(transform, pil, 1500, seed=0))
    assert ks_2samp(area, pil_area).pvalue > 0.01 and ks_2samp(aspect, pil_aspect).pvalue > 0.01
    assert torch.equal(flipped, pil_flipped) and 0.45 < flipped.float().mean() < 0.55
    assert np.abs(area - pil_area).max() < 0.02  # the same RNG draws the same windows on both
    assert 0.18 < area.min() and area.max() <= 1.02 and 0.7 < aspect.min() and aspect.max() < 1.4
    # The comparison can tell another policy apart (the default min_scale, 0.08).
    other_area, _, _ = windows(draws(compile_torchvision(AugConfig(), 32, ZERO, ONE), tensor, 1500, seed=1))
    assert ks_2samp(area, other_area).pvalue < 1e-6


def test_tensor_path_draws_the_colour_jitter_of_the_pil_path(cifar_tree):
    files = sorted((cifar_tree / "train").glob("*/*.jpg"))[:40]
    aug = load_config(None, ["aug.policy=[color_jitter]", "aug.color_jitter.hue=0.1"]).aug
    transform = compile_torchvision(aug, 32, ZERO, ONE)
    stats = {}
    for path in ("tensor", "pil"):
        torch.manual_seed(0)
        outs = []
        for f in files:
            data = f.read_bytes()
            image = (
                decode_sample(sample(data), 10)[0] if path == "tensor" else Image.open(io.BytesIO(data)).convert("RGB")
            )
            outs += [transform(image) for _ in range(10)]
        outs = torch.stack(outs)
        stats[path] = (outs.mean((1, 2, 3)).numpy(), outs.std((1, 2, 3)).numpy(), outs[:, 0].mean((1, 2)).numpy())
    for ours, theirs in zip(stats["tensor"], stats["pil"]):
        assert ks_2samp(ours, theirs).pvalue > 0.01
        assert np.abs(ours - theirs).mean() < 0.01  # the same factors, applied by two implementations
    plain = compile_torchvision(load_config(None, ["aug.policy=[none]"]).aug, 32, ZERO, ONE)
    unjittered = torch.stack([plain(decode_sample(sample(f.read_bytes()), 10)[0]) for f in files for _ in range(10)])
    assert ks_2samp(stats["tensor"][1], unjittered.std((1, 2, 3)).numpy()).pvalue < 1e-3  # jitter is visible


def test_evaluation_pixels_match_the_pil_path_up_to_resize_rounding(cifar_tree, photo):
    rng = np.random.default_rng(1)
    large = [
        photo.resize((500, 375), Image.BICUBIC).rotate(int(a)) for a in rng.integers(0, 360, 4)
    ]  # ImageNet-sized: resized to 256 and centre-cropped to 224, antialiased
    for size, images in ((224, [encoded(im, "JPEG", quality=90) for im in large]), (24, None)):
        if images is None:
            images = [f.read_bytes() for f in sorted((cifar_tree / "test").glob("*/*.jpg"))[:30]]
        transform = eval_transform(size, ZERO, ONE)
        for data in images:
            ours = transform(decode_sample(sample(data), 10)[0]) * 255
            theirs = transform(Image.open(io.BytesIO(data)).convert("RGB")) * 255
            assert ours.shape == theirs.shape == (3, size, size)
            diff = (ours - theirs).abs()
            assert diff.max() <= 1.0 + 1e-3 and diff.mean() < 0.05


def test_normalization_on_the_device_is_torchvisions_to_dtype_and_normalize_bit_for_bit():
    """Runs keep the exact inputs they had when each image went through ToDtype(scale=True) + Normalize."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    images = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    per_image = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    expected = torch.stack([per_image(image) for image in images])
    assert torch.equal(normalize(images, mean, std), expected)
    assert torch.equal(to_float_normalized(mean, std)(images[0]), expected[0])
    shift, scale = torch.tensor(mean).view(3, 1, 1) * 255, torch.tensor(std).view(3, 1, 1) * 255
    assert not torch.equal((images.float() - shift) / scale, expected)  # the same values, rounded otherwise


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_hold_exactly_the_per_sample_results(cifar_shards, workers):
    cfg = DataConfig(root=str(cifar_shards), image_size=24, batch_size=16, num_workers=workers, mean=[0.4] * 3)
    dm = ShardDataModule(cfg, ImageTransforms.of(AugConfig(), cfg), eval_keys=True)
    dm.setup()
    urls = [str(cifar_shards / s["file"]) for s in dm.manifest["splits"]["test"]["shards"]]
    expected = {}
    for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        image, label = decode_sample(s, 10)
        expected[s["__key__"]] = (dm.eval_transform(image), eval_transform(24, cfg.mean, cfg.std)(image), label)
    seen, sizes = 0, []
    for images, labels, keys in dm.val_dataloader():
        assert images.dtype == torch.uint8 and images.is_contiguous()
        sizes.append(len(keys))
        normalized = dm.on_after_batch_transfer((images, labels, keys), 0)[0]  # what Lightning hands the model
        assert normalized.dtype == torch.float32
        for image, norm, label, key in zip(images, normalized, labels.tolist(), keys):
            pixels, float_pixels, true_label = expected[key]
            assert torch.equal(image, pixels) and torch.equal(norm, float_pixels) and label == true_label
            seen += 1
    assert seen == len(expected) == 70 and max(sizes) == 16 and min(sizes) < 16


def _index_copy(cifar_shards, tmp_path) -> tuple:
    import shutil

    root = tmp_path / "shards"
    shutil.copytree(cifar_shards, root)
    tar = sorted(root.glob("train-*.tar"))[0]
    return root, tar, tar.with_suffix(".idx")


def test_samples_read_through_the_index_are_those_webdataset_reads(cifar_shards):
    from webdataset.tariterators import tarfile_samples

    from datamodules.torchvision_backend.indexed_tar import indexed_samples

    for tar in sorted(cifar_shards.glob("*.tar")):
        walked = list(tarfile_samples([{"url": str(tar)}]))
        indexed = list(indexed_samples(str(tar), str(tar.with_suffix(".idx")), len(walked), 0, len(walked)))
        assert indexed == walked  # keys, bytes of every member, order
        assert list(indexed_samples(str(tar), str(tar.with_suffix(".idx")), len(walked), 3, 7)) == walked[3:7]


def test_loader_reads_shards_without_an_index_by_walking_the_tar(cifar_shards, tmp_path):
    import json

    root, _, _ = _index_copy(cifar_shards, tmp_path)
    expected = torchvision_labels(root)
    manifest = json.loads((root / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            shard.pop("index")
    (root / "manifest.json").write_text(json.dumps(manifest))
    for idx in root.glob("*.idx"):
        idx.unlink()
    assert torchvision_labels(root) == expected and len(expected) > 0


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda text: text.replace(" 512 ", " 1024 ", 1), "where the tar has no member header"),
        (lambda text: text.split("\n", 1)[0] + "\n" + text.split("\n", 2)[2], "samples where manifest.json records"),
        (lambda text: text.replace(" 512 ", " 99999999 ", 1), "outside the tar"),
        (lambda text: text.replace(".jpg ", ".png ", 1), "does not match the tar at"),
        (lambda text: "not an index\n", "cannot be read"),
    ],
    ids=["shifted", "short", "outside", "renamed", "garbage"],
)
def test_a_changed_index_is_refused_with_one_line_naming_it_and_the_fix(cifar_shards, tmp_path, change, problem):
    import re

    root, tar, idx = _index_copy(cifar_shards, tmp_path)
    idx.write_text(change(idx.read_text()))
    for workers in (0, 1):
        with pytest.raises(SampleError) as raised:
            torchvision_labels(root, workers=workers)
        message = str(raised.value)
        assert "\n" not in message and message.startswith(f"index file '{idx}' of shard '{tar}'"), message
        assert problem in message and f"wds2idx {tar} {idx}" in message, message
        assert not re.search("Traceback|worker process", message)
