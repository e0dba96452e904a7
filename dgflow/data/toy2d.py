"""2D toy distributions (docs/design.md §3).

* ``25gaussians``: an equal mixture of 25 isotropic Gaussians with means (2i, 2j),
  i, j in {-2, ..., 2}, and standard deviation 0.05.
* ``swissroll``: scikit-learn's ``make_swiss_roll`` with ``noise=0.25``, keeping the (x, z)
  columns and scaling them by 1/5, so the noise around the curve has standard deviation
  0.25 / 5 = 0.05, the same as the Gaussians. The noiseless curve is
  t -> (t cos t, t sin t) / 5 for t in [1.5 pi, 4.5 pi].
* ``8gaussians``: an equal mixture of 8 isotropic Gaussians with means on the circle of radius 2
  (angles k pi / 4) and standard deviation 0.05.
* ``moons``: two interleaved half circles of radius 1, t -> (cos t, sin t) and
  (1 - cos t, 0.5 - sin t) for t in [0, pi], centred at the origin and scaled by 2, with isotropic
  Gaussian noise of standard deviation 0.05 around the curve.
"""
from __future__ import annotations

import math

import numpy as np
import torch

GAUSS_STD = 0.05
SWISSROLL_SCALE = 1.0 / 5.0
SWISSROLL_NOISE = 0.25  # before scaling; after scaling the std is 0.05
SWISSROLL_STD = SWISSROLL_NOISE * SWISSROLL_SCALE
RING_RADIUS = 2.0
MOONS_SCALE = 2.0
MOONS_STD = 0.05
DATASETS = ("25gaussians", "swissroll", "8gaussians", "moons")


def gaussian_means() -> torch.Tensor:
    """The 25 mixture means, shape (25, 2), row-major over i then j."""
    r = torch.arange(-2, 3, dtype=torch.float32) * 2.0
    return torch.cartesian_prod(r, r)


def ring_means() -> torch.Tensor:
    """The 8 ring means, shape (8, 2), at angles 0, pi/4, ..., 7 pi/4."""
    a = torch.arange(8, dtype=torch.float64) * math.pi / 4
    return (RING_RADIUS * torch.stack([torch.cos(a), torch.sin(a)], 1)).float()


def mixture_means(name: str) -> torch.Tensor:
    """The component means of the mixture dataset ``name`` (``25gaussians`` or ``8gaussians``)."""
    if name == "25gaussians":
        return gaussian_means()
    if name == "8gaussians":
        return ring_means()
    raise ValueError(f"{name!r} is not a mixture dataset; choose 25gaussians or 8gaussians")


def _sample_mixture(means: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    idx = torch.randint(0, len(means), (n,), generator=generator)
    return means[idx] + GAUSS_STD * torch.randn(n, 2, generator=generator)


def sample_25gaussians(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return _sample_mixture(gaussian_means(), n, generator)


def moons_curves(num: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense points on the two noiseless, centred and scaled moons, each of shape (num, 2)."""
    t = torch.linspace(0, math.pi, num, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    centre = torch.tensor([0.5, 0.25], dtype=torch.float64)
    return tuple(((c - centre) * MOONS_SCALE).float() for c in (upper, lower))


def sample_moons(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    which = torch.randint(0, 2, (n,), generator=generator)
    t = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    x = torch.where(which[:, None].bool(), lower, upper) - torch.tensor([0.5, 0.25], dtype=torch.float64)
    return (x * MOONS_SCALE).float() + MOONS_STD * torch.randn(n, 2, generator=generator)


def sample_swissroll(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    try:
        from sklearn.datasets import make_swiss_roll
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the swissroll dataset needs scikit-learn: pip install 'dgflow[bench]'") from e
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    x, _ = make_swiss_roll(n_samples=n, noise=SWISSROLL_NOISE, random_state=seed)
    return torch.from_numpy(x[:, [0, 2]] * SWISSROLL_SCALE).float()


def swissroll_curve(num: int = 20000) -> torch.Tensor:
    """Dense points on the noiseless, scaled swiss-roll curve, shape (num, 2)."""
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, num, dtype=torch.float64)
    return (torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) * SWISSROLL_SCALE).float()


def sample(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` points of the named toy dataset (one of :data:`DATASETS`)."""
    if name in ("25gaussians", "8gaussians"):
        return _sample_mixture(mixture_means(name), n, generator)
    if name == "swissroll":
        return sample_swissroll(n, generator)
    if name == "moons":
        return sample_moons(n, generator)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()
