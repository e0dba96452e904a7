"""A small convolutional VAE (Kingma & Welling 2014) for 32x32 images: a non-GAN base to refine.

The encoder is the critics' trunk (stride-2 4x4 convolutions, LeakyReLU 0.2) ending in the mean
and log-variance of a diagonal Gaussian q(z|x); the decoder is :class:`DCGANGenerator`, whose tanh
output in [-1, 1] is read as Bernoulli means (x + 1) / 2 of the pixels. Samples of the model are
``decode(z)`` with z ~ N(0, I): that is the generator ``dgflow.refine`` moves. A VAE has no
discriminator of its own; fit one with :func:`dgflow.fit_critic` (docs/design.md §1).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .dcgan import DCGANGenerator, _check_channels, _ConvCritic


class ConvVAE(nn.Module):
    """x (N, C, S, S) in [-1, 1] <-> z (N, z_dim); S = bottom * 2**len(channels).

    ``channels`` are the encoder's widths; the decoder mirrors them (default 32, 64, 128 down and
    128, 64, 32 up, 32x32 images).
    """

    def __init__(self, z_dim: int = 32, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128),
                 img_size: int = 32):
        super().__init__()
        ch = _check_channels(channels)
        if int(z_dim) < 1:
            raise ValueError(f"z_dim must be a positive int, got {z_dim!r}")
        self.z_dim = int(z_dim)
        self.encoder = _ConvCritic(in_channels, ch, img_size, slope=0.2, sn=False, out_features=2 * self.z_dim)
        self.decoder = DCGANGenerator(self.z_dim, ch[::-1], in_channels, bottom=int(img_size) // 2 ** len(ch))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each (N, z_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [-1, 1]; the model's samples are ``decode(randn(N, z_dim))``."""
        return self.decoder(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)


def negative_elbo(vae: ConvVAE, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample negative ELBO in nats, (N,): Bernoulli reconstruction of (x + 1) / 2 by one
    reparameterised sample of q(z|x), plus KL(q(z|x) || N(0, I)) in closed form."""
    mu, logvar = vae.encode(x)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + (0.5 * logvar).exp() * eps
    p = ((vae.decode(z) + 1) / 2).clamp(1e-6, 1 - 1e-6)
    rec = F.binary_cross_entropy(p, ((x + 1) / 2).clamp(0, 1), reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return rec + kl
