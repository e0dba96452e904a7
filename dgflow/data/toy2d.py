"""2D toy distributions (docs/design.md §3).

* ``25gaussians``: an equal mixture of 25 isotropic Gaussians with means (2i, 2j),
  i, j in {-2, ..., 2}, and standard deviation 0.05.
* ``swissroll``: scikit-learn's ``make_swiss_roll`` with ``noise=0.25``, keeping the (x, z)
  columns and scaling them by 1/5, so the noise around the curve has standard deviation
  0.25 / 5 = 0.05, the same as the Gaussians. The noiseless curve is
  t -> (t cos t, t sin t) / 5 for t in [1.5 pi, 4.5 pi].
"""
from __future__ import annotations

import math

import numpy as np
import torch

GAUSS_STD = 0.05
SWISSROLL_SCALE = 1.0 / 5.0
SWISSROLL_NOISE = 0.25  # before scaling; after scaling the std is 0.05
SWISSROLL_STD = SWISSROLL_NOISE * SWISSROLL_SCALE
DATASETS = ("25gaussians", "swissroll")


def gaussian_means() -> torch.Tensor:
    """The 25 mixture means, shape (25, 2), row-major over i then j."""
    r = torch.arange(-2, 3, dtype=torch.float32) * 2.0
    return torch.cartesian_prod(r, r)


def sample_25gaussians(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    means = gaussian_means()
    idx = torch.randint(0, len(means), (n,), generator=generator)
    return means[idx] + GAUSS_STD * torch.randn(n, 2, generator=generator)


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
    """Draw ``n`` points of the named toy dataset (``"25gaussians"`` or ``"swissroll"``)."""
    if name == "25gaussians":
        return sample_25gaussians(n, generator)
    if name == "swissroll":
        return sample_swissroll(n, generator)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()
