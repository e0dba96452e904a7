"""Quality metrics for the 2D toys (docs/design.md §3).

* high-quality fraction: share of samples within 4 sigma of a mixture mean (25Gaussians,
  8Gaussians) or of the noiseless curve (Swissroll, Moons), sigma = 0.05;
* modes covered: mixture components (or moons) with at least one high-quality sample, and the
  stricter count of components holding at least 1% of the high-quality samples;
* EMD: exact earth mover's distance (POT ``ot.emd2``, Euclidean ground cost) between equal-size
  sets of generated and fresh data points.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data import toy2d
from ..passes import chunk_slices

HQ_SIGMAS = 4.0


def _nearest(x: torch.Tensor, points: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, the nearest of ``points`` for each row of ``x``."""
    dists, idx = [], []
    for s in chunk_slices(len(x), chunk):
        dd = torch.cdist(x[s].double(), points.double())
        m = dd.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    if not dists:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.long)
    return torch.cat(dists), torch.cat(idx)


def _check_points(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be a tensor of 2D points, shape (N, 2); got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return x.detach().cpu()


def _coverage(dist: torch.Tensor, idx: torch.Tensor, n_modes: int, std: float) -> dict[str, float]:
    """HQ fraction (distance within HQ_SIGMAS * ``std``) and mode counts from nearest-mode indices."""
    hq = dist <= HQ_SIGMAS * std
    counts = torch.bincount(idx[hq], minlength=n_modes)
    n_hq = int(hq.sum())
    return {"hq": float(hq.float().mean()) if len(dist) else 0.0,
            "modes": int((counts > 0).sum()),
            "modes_1pct": int((counts >= max(0.01 * n_hq, 1e-12)).sum()) if n_hq else 0,
            "n": len(dist)}


def gaussians_report(x: torch.Tensor, dataset: str = "25gaussians") -> dict[str, float]:
    """HQ fraction and mode coverage of samples ``x`` (N, 2) against a Gaussian mixture dataset."""
    x = _check_points(x)
    dist, idx = _nearest(x, toy2d.mixture_means(dataset))
    return _coverage(dist, idx, len(toy2d.mixture_means(dataset)), toy2d.GAUSS_STD)


def moons_report(x: torch.Tensor) -> dict[str, float]:
    """HQ fraction (within 4 sigma of either noiseless moon) and coverage of the two moons."""
    x = _check_points(x)
    upper, lower = toy2d.moons_curves()
    d_up, d_lo = _nearest(x, upper)[0], _nearest(x, lower)[0]
    return _coverage(torch.minimum(d_up, d_lo), (d_lo < d_up).long(), 2, toy2d.MOONS_STD)


def swissroll_report(x: torch.Tensor) -> dict[str, float]:
    """HQ fraction of samples ``x`` (N, 2): within 4 sigma of the noiseless scaled curve."""
    x = _check_points(x)
    dist, _ = _nearest(x, toy2d.swissroll_curve())
    return {"hq": float((dist <= HQ_SIGMAS * toy2d.SWISSROLL_STD).float().mean()) if len(x) else 0.0,
            "n": len(x)}


def emd(x: torch.Tensor, y: torch.Tensor, num_itermax: int = 1_000_000) -> float:
    """Earth mover's distance between two equal-size point sets (uniform weights), via POT."""
    try:
        import ot
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("EMD needs POT: pip install 'dgflow[demo]' (or pip install POT)") from e
    x, y = _check_points(x), _check_points(y)
    if len(x) != len(y):
        raise ValueError(f"emd needs equal-size samples, got {len(x)} and {len(y)}")
    m = ot.dist(x.double().numpy(), y.double().numpy(), metric="euclidean")
    return float(ot.emd2([], [], m, numItermax=num_itermax))


def report(dataset: str, x: torch.Tensor, reference: Optional[torch.Tensor] = None) -> dict[str, float]:
    """All metrics of ``dataset`` for samples ``x``; EMD to ``reference`` if given."""
    reports = {"25gaussians": gaussians_report, "8gaussians": lambda p: gaussians_report(p, "8gaussians"),
               "swissroll": swissroll_report, "moons": moons_report}
    if dataset not in reports:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {toy2d.DATASETS}")
    out = reports[dataset](x)
    if reference is not None:
        out["emd"] = emd(x, reference)
    return out
