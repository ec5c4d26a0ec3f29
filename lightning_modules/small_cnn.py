"""A small 3-block CNN for 28-32 px images (``model.arch=cnn3``), the CPU demo's model.

Three blocks of 3x3 convolution, BatchNorm and ReLU, of 32, 64 and 128 channels, with 2x2 max-pooling after
the first two; then global average pooling and a linear head. About 95,000 parameters and 8 million
multiply-adds per 28x28 image (ResNet-20: 270,000 and 31 million), so an epoch over 1,000 images costs about
a second of one CPU core. Trained long on 1,000 Fashion-MNIST images it overfits them: the regime where
augmentation raises the mean accuracy while lowering some classes (docs/demo-design.md).
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 64, 128)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = WIDTHS, in_channels: int = 3):
        super().__init__()
        layers, cin = [], in_channels
        for i, cout in enumerate(widths):
            layers += _block(cin, cout)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
