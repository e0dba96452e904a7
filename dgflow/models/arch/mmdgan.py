"""MMD-GAN (Li et al. 2017): a generator trained against a kernel MMD on a learned feature map.

The critic of an MMD-GAN is not a discriminator: :class:`MMDFeatureCritic` maps an image to a
feature vector f(x) (N, features), and the two players optimise the squared maximum mean
discrepancy between f(data) and f(samples) under a mixture of RBF kernels,
k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)), :func:`mix_rbf_mmd2`. Its output is no logit, so
refining an MMD-GAN needs a fitted critic (the corrector D0 + C of :func:`dgflow.fit_critic`, or a
fresh one). The generator is the DCGAN one (:class:`~dgflow.models.arch.DCGANGenerator`).

Deviation from Li et al.: the feature map is held Lipschitz by spectral norm (Miyato et al.
2018) rather than weight clipping plus an autoencoder term, which trains far faster on a CPU.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .dcgan import _ConvCritic

RBF_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)   # Li et al.'s bandwidths


class MMDFeatureCritic(_ConvCritic):
    """x (N, C, S, S) -> features (N, ``features``): stride-2 spectral-norm convolutions
    ``channels`` (LeakyReLU 0.2) and a spectral-norm linear layer."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128), img_size: int = 32,
                 features: int = 16):
        if isinstance(features, bool) or not isinstance(features, int) or features < 2:
            raise ValueError(f"features must be an int >= 2 (a feature vector, not a logit), got {features!r}")
        super().__init__(in_channels, channels, img_size, slope=0.2, sn=True, out_features=features)


def mix_rbf_mmd2(fx: torch.Tensor, fy: torch.Tensor, sigmas: Sequence[float] = RBF_SIGMAS,
                 biased: bool = False) -> torch.Tensor:
    """Squared MMD between the rows of ``fx`` (N, D) and ``fy`` (M, D) under the sum of RBF kernels
    of bandwidths ``sigmas``. Unbiased (diagonal terms left out, N, M >= 2) unless ``biased``."""
    if fx.dim() != 2 or fy.dim() != 2 or fx.shape[1] != fy.shape[1]:
        raise ValueError(f"fx and fy must be (N, D) and (M, D), got {tuple(fx.shape)} and {tuple(fy.shape)}")
    if not sigmas or any(s <= 0 for s in sigmas):
        raise ValueError(f"sigmas must be positive bandwidths, got {sigmas!r}")
    n, m = len(fx), len(fy)
    if not biased and min(n, m) < 2:
        raise ValueError("the unbiased estimate needs at least 2 rows in fx and in fy")
    z = torch.cat([fx, fy])
    sq = z.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.t()).clamp_min(0)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    sum_xx = kxx.sum() - kxx.diagonal().sum()
    sum_yy = kyy.sum() - kyy.diagonal().sum()
    return sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2 * kxy.mean()
