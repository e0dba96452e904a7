"""What dgflow needs of a generative model: a callable z -> x and a prior over z.

Nothing needs subclassing: any ``nn.Module``, function or bound method (``vae.decode``) that
maps a batch of latents to a batch of samples is a generator. :func:`as_generator` wraps one
with its prior so the rest of the library (CLI, zoo, benchmarks) can draw latents for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .modules import attach_modules


@runtime_checkable
class LatentGenerator(Protocol):
    """Structural type of a generator: ``x = generator(z)`` with a batch dimension first."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class GaussianPrior:
    """Standard normal prior N(0, I) over latents of shape ``shape`` (without the batch dim)."""

    shape: tuple[int, ...]

    def __post_init__(self):
        if not self.shape or any(int(s) <= 0 for s in self.shape):
            raise ValueError(f"z_shape must be a non-empty tuple of positive sizes, got {self.shape}")

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def typical_radius(self) -> float:
        """sqrt(dim): where the norm of a standard normal latent concentrates."""
        return math.sqrt(self.dim)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if generator is not None and device is None:
            device = generator.device
        return torch.randn((n, *self.shape), generator=generator, device=device, dtype=dtype)


class AdaptedGenerator(nn.Module):
    """A generator callable together with its latent prior (see :func:`as_generator`)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], prior: GaussianPrior):
        super().__init__()
        if isinstance(fn, nn.Module):
            self.module = fn  # registered, so .to()/.eval()/state_dict() reach it
        else:  # a function or closure: the modules behind it (see dgflow.models.modules)
            attach_modules(self, fn)
        self.fn = fn
        self.prior = prior

    @property
    def z_shape(self) -> tuple[int, ...]:
        return self.prior.shape

    def sample_prior(self, n: int, **kw) -> torch.Tensor:
        return self.prior.sample(n, **kw)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def as_generator(fn: Callable[[torch.Tensor], torch.Tensor], z_shape: int | Sequence[int] | None = None
                 ) -> AdaptedGenerator:
    """Wrap any callable z -> x with a standard normal prior over latents of ``z_shape``.

    ``z_shape`` defaults to ``fn.z_dim`` when the model has that attribute.
    """
    if isinstance(fn, AdaptedGenerator):
        return fn
    if not callable(fn):
        raise TypeError(f"generator must be callable (z -> x), got {type(fn).__name__}")
    if z_shape is None:
        z_shape = getattr(fn, "z_dim", None) or getattr(getattr(fn, "__self__", None), "z_dim", None)
        if z_shape is None:
            raise ValueError("z_shape: cannot infer the latent shape; pass z_shape=(z_dim,) "
                             "or give the model a z_dim attribute")
    shape = (int(z_shape),) if isinstance(z_shape, int) else tuple(int(s) for s in z_shape)
    return AdaptedGenerator(fn, GaussianPrior(shape))


