"""Small DCGAN-style image networks (Radford et al. 2016; Miyato et al. 2018 for spectral norm).

Sized for Fashion-MNIST on a CPU (docs/design.md §5), with the width and resolution as arguments so
the same classes build the CIFAR10 (32x32) and STL10 (48x48) variants on a GPU:

* :class:`DCGANGenerator`: z -> linear -> ``channels[0]`` x b x b -> one stride-2 transposed
  convolution per further entry of ``channels`` and a last one to ``out_channels``, each
  doubling the resolution: image size b * 2**len(channels); tanh output in [-1, 1].
* :class:`WGANGPCritic`: stride-2 convolutions ``channels`` with LeakyReLU(0.2), then a linear
  logit; no normalisation layer (the gradient penalty is per sample, Gulrajani et al. 2017).
* :class:`SNDCGANDiscriminator`: the same with spectral norm on every layer (LeakyReLU 0.1),
  for the non-saturating loss; its logit estimates log mu/rho at the optimum.
* :class:`SmallCNNClassifier`: a two-convolution classifier whose penultimate (``feat_dim``)
  activations are the domain features of :mod:`dgflow.metrics.fid`.

Every critic returns logits of shape (N,), larger on real data.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _check_channels(channels: Sequence[int], name: str = "channels") -> tuple[int, ...]:
    ch = tuple(int(c) for c in channels)
    if not ch or any(c <= 0 for c in ch):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {channels!r}")
    return ch


class DCGANGenerator(nn.Module):
    """z (N, z_dim) -> images (N, out_channels, S, S), S = bottom * 2**len(channels), in [-1, 1].

    Default: 64-d z -> 128x4x4 -> transposed convs to 64, 32, 1 channels at 8, 16, 32 pixels.
    """

    def __init__(self, z_dim: int = 64, channels: Sequence[int] = (128, 64, 32), out_channels: int = 1,
                 bottom: int = 4):
        super().__init__()
        ch = _check_channels(channels)
        self.z_dim, self.bottom, self.channels = int(z_dim), int(bottom), ch
        self.img_size = self.bottom * 2 ** len(ch)
        self.project = nn.Sequential(nn.Linear(self.z_dim, ch[0] * self.bottom ** 2),
                                     nn.BatchNorm1d(ch[0] * self.bottom ** 2), nn.ReLU(True))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(ch, ch[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z.flatten(1))
        return self.net(h.view(len(z), self.channels[0], self.bottom, self.bottom))


class _ConvCritic(nn.Module):
    """Stride-2 4x4 convolutions then a linear layer; optional spectral norm on every layer, optional
    batch norm after every convolution but the first (DCGAN's discriminator).

    With ``out_features=1`` (critics) the output is a logit of shape (N,), else (N, out_features).
    """

    def __init__(self, in_channels: int, channels: Sequence[int], img_size: int, slope: float, sn: bool,
                 out_features: int = 1, batch_norm: bool = False):
        super().__init__()
        ch = _check_channels(channels)
        final = int(img_size) // 2 ** len(ch)
        if final < 1 or final * 2 ** len(ch) != int(img_size):
            raise ValueError(f"img_size={img_size} must be divisible by 2**len(channels)={2 ** len(ch)}")
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = int(in_channels)
        for i, c in enumerate(ch):
            norm = [nn.BatchNorm2d(c)] if batch_norm and i > 0 else []
            layers += [wrap(nn.Conv2d(c_in, c, 4, 2, 1)), *norm, nn.LeakyReLU(slope, True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = wrap(nn.Linear(c_in * final * final, int(out_features)))
        self.img_size = int(img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x).flatten(1))
        return out.squeeze(1) if out.shape[1] == 1 else out


class WGANGPCritic(_ConvCritic):
    """WGAN-GP critic x (N, C, S, S) -> (N,): convs ``channels`` (stride 2), LeakyReLU 0.2, linear."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), img_size: int = 32):
        super().__init__(in_channels, channels, img_size, slope=0.2, sn=False)


class DCGANDiscriminator(_ConvCritic):
    """DCGAN discriminator x (N, C, S, S) -> pre-sigmoid logit (N,): convs ``channels`` (stride 2),
    batch norm after all but the first, LeakyReLU 0.2, linear; no spectral norm (Radford et al. 2016)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), img_size: int = 32):
        super().__init__(in_channels, channels, img_size, slope=0.2, sn=False, batch_norm=True)


class SNDCGANDiscriminator(_ConvCritic):
    """Spectral-norm DCGAN discriminator x (N, C, S, S) -> pre-sigmoid logit (N,)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), img_size: int = 32):
        super().__init__(in_channels, channels, img_size, slope=0.1, sn=True)


class SmallCNNClassifier(nn.Module):
    """x (N, C, S, S) -> class logits (N, n_classes); :meth:`features` gives the penultimate layer.

    Two 3x3 conv + ReLU + 2x2 max-pool blocks, a ``feat_dim`` linear layer, ReLU, dropout, linear.
    The features are the ``feat_dim`` linear outputs *before* their ReLU, so no unit is constant
    (dead) over a sample set and the feature covariance of a FID stays full rank.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64), feat_dim: int = 128,
                 n_classes: int = 10, img_size: int = 32, dropout: float = 0.3):
        super().__init__()
        ch = _check_channels(channels)
        layers: list[nn.Module] = []
        c_in = int(in_channels)
        for c in ch:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2)]
            c_in = c
        side = int(img_size) // 2 ** len(ch)
        if side < 1:
            raise ValueError(f"img_size={img_size} is too small for {len(ch)} pooling layers")
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, feat_dim))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feat_dim, n_classes))
        self.feat_dim = int(feat_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate pre-activations (N, feat_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))
