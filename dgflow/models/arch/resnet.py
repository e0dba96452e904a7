"""Small residual GAN networks in the style of SN-ResNet-GAN (Miyato et al. 2018; Gulrajani et al. 2017).

* :class:`ResNetGenerator`: z -> linear -> ``channels[0]`` x b x b, then one up-sampling residual
  block per entry of ``channels`` (BN, ReLU, nearest 2x up-sampling, two 3x3 convolutions; a 1x1
  convolution on the shortcut when the width changes), BN, ReLU, a 3x3 convolution to
  ``out_channels`` and tanh: images of side b * 2**len(channels) in [-1, 1].
* :class:`SNResNetDiscriminator`: down-sampling residual blocks with spectral norm on every
  convolution (the first block "optimised": convolution before activation, as in Miyato et al.),
  ReLU, sum over positions, a spectral-norm linear logit of shape (N,).

Sized for a CPU (widths 64, 32, 16 up and 16, 32, 64 down by default, a sixteenth of the
paper's CIFAR10 widths), with the widths as arguments.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .dcgan import _check_channels


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class _DownBlock(nn.Module):
    """Residual block with spectral norm; ``first``: no activation before the first convolution."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool):
        super().__init__()
        self.conv1, self.conv2 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1)), spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else nn.Identity()
        self.down, self.first = down, first

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self._pool(self.conv2(F.relu(h)))
        s = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + s


class ResNetGenerator(nn.Module):
    """z (N, z_dim) -> images (N, out_channels, S, S), S = bottom * 2**len(channels), in [-1, 1]."""

    def __init__(self, z_dim: int = 64, channels: Sequence[int] = (64, 32, 16), out_channels: int = 1,
                 bottom: int = 4):
        super().__init__()
        ch = _check_channels(channels)
        self.z_dim, self.bottom, self.channels = int(z_dim), int(bottom), ch
        self.img_size = self.bottom * 2 ** len(ch)
        self.project = nn.Linear(self.z_dim, ch[0] * self.bottom ** 2)
        self.blocks = nn.Sequential(*(_UpBlock(a, b) for a, b in zip(ch, ch[1:] + ch[-1:])))
        self.out = nn.Sequential(nn.BatchNorm2d(ch[-1]), nn.ReLU(), nn.Conv2d(ch[-1], out_channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z.flatten(1)).view(len(z), self.channels[0], self.bottom, self.bottom)
        return self.out(self.blocks(h))


class SNResNetDiscriminator(nn.Module):
    """Spectral-norm residual discriminator x (N, C, S, S) -> pre-sigmoid logit (N,).

    One down-sampling block per entry of ``channels``, then one more block of the last width at
    the same resolution, ReLU, sum over positions, spectral-norm linear.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64), img_size: int = 32):
        super().__init__()
        ch = _check_channels(channels)
        if int(img_size) % 2 ** len(ch):
            raise ValueError(f"img_size={img_size} must be divisible by 2**len(channels)={2 ** len(ch)}")
        widths = (int(in_channels),) + ch
        blocks = [_DownBlock(a, b, down=True, first=i == 0) for i, (a, b) in enumerate(zip(widths, ch))]
        self.blocks = nn.Sequential(*blocks, _DownBlock(ch[-1], ch[-1], down=False, first=False))
        self.head = spectral_norm(nn.Linear(ch[-1], 1))
        self.img_size = int(img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.head(h).squeeze(1)
