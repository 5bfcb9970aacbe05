"""The image backbone: a torchvision-style ResNet cut after stage 3 (stride 16)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import DropPath, drop_path_rates


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride) -> 1x1 with 4x expansion and a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(identity + self.drop_path(out))


class ResNet(nn.Module):
    """Stem + layer1..layer3 (no layer4, pooling or classifier): [B,3,H,W] -> [B,16w,H/16,W/16]."""

    def __init__(self, layers: tuple[int, int, int], width: int = 64,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # drop-path rate rises linearly over all blocks; the first block of a stage has none
        rates = drop_path_rates(drop_path_rate, sum(layers))
        inplanes, start = width, 0
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2), strict=True)):
            planes = width * 2**i
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
            stage = [Bottleneck(inplanes, planes, stride, downsample)]
            inplanes = planes * 4
            stage += [Bottleneck(inplanes, planes, drop_path=rates[start + j])
                      for j in range(1, blocks)]
            start += blocks
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        # channels-last max-pool: the same values and argmax indices, faster on CPU (BENCHMARKS.md)
        x = self.maxpool(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return self.layer3(self.layer2(self.layer1(x)))
