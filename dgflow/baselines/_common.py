"""Pieces shared by the baselines: model checks, latent priors, random draws."""
from __future__ import annotations

import numbers
from typing import Callable, Sequence, Union

import torch

from .._checks import check_int, make_rng
from ..models.protocol import AdaptedGenerator, GaussianPrior

Model = Callable[[torch.Tensor], torch.Tensor]
#: how a rejection-type baseline draws latents: a latent size, a shape, a prior, or ``n -> z``
PriorLike = Union[int, Sequence[int], GaussianPrior, AdaptedGenerator, Callable[[int], torch.Tensor]]
Sampler = Callable[[int], torch.Tensor]


def make_sampler(prior: PriorLike | None, generator: object, rng: torch.Generator | None,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> Sampler:
    """A function ``n -> z`` drawing ``n`` latents.

    ``prior`` may be an int latent size or a shape (standard normal), a
    :class:`~dgflow.models.GaussianPrior`, an adapted generator (its prior is used), a callable
    ``n -> z``, or ``None`` when ``generator`` is an adapted generator that carries its prior.
    Standard normal priors draw from ``rng`` on ``device``; a callable manages its own randomness.
    """
    if prior is None:
        if isinstance(generator, AdaptedGenerator):
            prior = generator.prior
        else:
            raise ValueError("prior: pass the latent size (e.g. 128), a shape, a GaussianPrior or a "
                             "sampler n -> z; it can only be omitted for dgflow.as_generator(...) models")
    if isinstance(prior, AdaptedGenerator):
        prior = prior.prior
    if isinstance(prior, numbers.Integral) and not isinstance(prior, bool):
        prior = GaussianPrior((check_int(prior, "prior", 1),))
    elif isinstance(prior, (tuple, list)):
        prior = GaussianPrior(tuple(check_int(s, "prior", 1) for s in prior))
    if isinstance(prior, GaussianPrior):
        shape = prior.shape
        return lambda n: torch.randn((n, *shape), generator=rng, device=device, dtype=dtype)
    if callable(prior):
        return _checked_sampler(prior)
    raise TypeError(f"prior must be an int, a shape, a GaussianPrior or a callable n -> z, "
                    f"got {type(prior).__name__}")


def _checked_sampler(fn: Callable[[int], torch.Tensor]) -> Sampler:
    def draw(n: int) -> torch.Tensor:
        z = fn(n)
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() < 2 or len(z) != n:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"prior: the sampler must return a floating tensor of shape ({n}, ...), got {got}")
        return z
    return draw


def resolve_rng(generator_rng: torch.Generator | int | None, device: torch.device | str | None
                ) -> tuple[torch.Generator | None, torch.device]:
    """The random generator and the device the latents live on (the generator's, else ``device``)."""
    if isinstance(generator_rng, torch.Generator) and device is None:
        device = generator_rng.device
    device = torch.device("cpu" if device is None else device)
    return make_rng(generator_rng, device), device


def uniform(n: int, rng: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` uniform draws in [0, 1) as float64 (acceptance tests)."""
    return torch.rand(n, generator=rng, device=device, dtype=torch.float64)
