"""Backbones: torchvision ResNets, with a small-image stem for 28-64 px inputs, CIFAR ResNet-20 and a small CNN."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import choice

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")


@dataclass
class ModelConfig:
    arch: str = choice(
        "resnet50",
        [*TORCHVISION_RESNETS, "resnet20", "cnn3"],
        help="`resnet18`, `resnet34`, `resnet50` (torchvision), `resnet20` (the CIFAR ResNet of He et al. 2016) "
        "or `cnn3` (3 conv blocks of 32-64-128 channels for 28-32 px images, the CPU demo's model)",
    )
    stem: str = choice(
        "auto",
        ["auto", "imagenet", "small"],
        help="torchvision ResNets only: `small`: 3x3 stride-1 stem without max-pool, for 28-64 px images; "
        "`auto` picks it at `data.image_size <= 64`",
    )


def use_small_stem(stem: str, image_size: int) -> bool:
    return stem == "small" or (stem == "auto" and image_size <= 64)


def build_model(arch: str, num_classes: int, stem: str = "auto", image_size: int = 224):
    """A freshly initialised ``torch.nn.Module`` for ``model.arch`` (torch is imported here, not with the config);
    its classification head computes in float32 under AMP (lightning_modules/heads.py)."""
    from torch import nn

    from lightning_modules.heads import float32_head

    if arch == "resnet20":
        from lightning_modules.cifar_resnet import CifarResNet

        return CifarResNet(20, num_classes)
    if arch == "cnn3":
        from lightning_modules.small_cnn import SmallCNN

        return SmallCNN(num_classes)
    from torchvision import models

    model = getattr(models, arch)(weights=None, num_classes=num_classes)
    model.fc = float32_head(model.fc)
    if use_small_stem(stem, image_size):
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
