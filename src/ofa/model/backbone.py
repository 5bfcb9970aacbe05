"""The image backbone: a torchvision-style ResNet cut after stage 3 (stride 16).

In inference (eval mode, outside autograd) each convolution runs with its BatchNorm folded
into its weight and bias, on channels-last tensors: oneDNN's convolutions then skip a reorder
of every input and output and the separate BatchNorm pass (OFA-base at 480 px on an
AVX512-BF16 EPYC: fp32 187 -> 148 ms, bf16 101 -> 77 ms; BENCHMARKS.md). The folded weights
are derived once and kept (``ofa.model.packed.derived``), remade when a convolution or
BatchNorm tensor changes, and cost one more copy of the convolution weights (OFA-base's
ResNet: 110 MB in fp32, 55 MB in bf16). Outputs differ from the unfolded ResNet by rounding
(fp32: about 1e-6 of values up to a few units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, drop_path_rates
from .packed import derived, eager_inference


def folded_conv(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool
                ) -> torch.Tensor:
    """``bn(conv(x))`` (then ReLU) of an eval-mode BatchNorm as one convolution with the
    BatchNorm folded in (computed in fp32, stored in the weight's dtype, channels-last)."""
    def fold() -> tuple[torch.Tensor, torch.Tensor]:
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        weight = conv.weight.float() * scale.view(-1, 1, 1, 1)
        bias = bn.bias.float() - bn.running_mean.float() * scale
        dtype = conv.weight.dtype
        return weight.to(dtype).contiguous(memory_format=torch.channels_last), bias.to(dtype)

    tensors = [conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var]
    weight, bias = derived(conv, "folded_bn", tensors, fold)
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return F.relu_(y) if relu else y


def _folds(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` runs its folded inference path for ``x``."""
    return not module.training and x.device.type == "cpu" and eager_inference(x)


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
        if _folds(self, x):
            identity = x if self.downsample is None else folded_conv(
                x, self.downsample[0], self.downsample[1], relu=False)
            out = folded_conv(x, self.conv1, self.bn1, relu=True)
            out = folded_conv(out, self.conv2, self.bn2, relu=True)
            return F.relu_(folded_conv(out, self.conv3, self.bn3, relu=False).add_(identity))
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
        if _folds(self, x):
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.maxpool(folded_conv(x, self.conv1, self.bn1, relu=True))
            return self.layer3(self.layer2(self.layer1(x))).contiguous()
        x = self.relu(self.bn1(self.conv1(x)))
        # channels-last max-pool: the same values and argmax indices, faster on CPU (BENCHMARKS.md)
        x = self.maxpool(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return self.layer3(self.layer2(self.layer1(x)))
