"""Distances between two samples, for stopping rules (:class:`dgflow.stopping.DataMatch`).

:func:`energy_distance` (bandwidth-free) and :func:`mmd2` (Gaussian kernels at multiples of the
median squared distance, :func:`median_bandwidth`), both unbiased, on samples flattened to vectors.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["DISTANCES", "MMD_SCALES", "as_points", "energy_distance", "mean_pairwise_distance", "median_bandwidth",
           "mmd2"]


def median_bandwidth(x: torch.Tensor, max_points: int = 1000) -> float:
    """The median squared distance between points of ``x`` (N, ...) (the first ``max_points``)."""
    x = x[:max_points].flatten(1).double()
    return _median_offdiag(torch.cdist(x, x).pow(2))


def _median_offdiag(d2: torch.Tensor) -> float:
    """The median of a square matrix of squared distances, its diagonal left out."""
    off = d2[~torch.eye(len(d2), dtype=torch.bool)]
    h = float(off.median()) if off.numel() else 0.0
    if not h > 0:
        raise ValueError("real samples are all identical: no kernel bandwidth can be set from them")
    return h


MMD_SCALES = (0.25, 1.0, 4.0)  # kernel bandwidths, multiples of the median squared distance


def _kernel_mean(d2: torch.Tensor, bandwidth: float, scales: Sequence[float], unbiased: bool) -> float:
    """Mean of the summed Gaussian kernels over a matrix of squared distances (diagonal left out
    when ``unbiased``: a set against itself)."""
    n = len(d2)
    total = sum(float(torch.exp(-d2 / (s * bandwidth)).sum()) for s in scales)
    if unbiased:
        return (total - len(scales) * n) / (n * (n - 1))
    return total / d2.numel()


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float, scales: Sequence[float] = MMD_SCALES,
         yy: Optional[float] = None) -> float:
    """Unbiased squared MMD between samples ``x`` (N, ...) and ``y`` (M, ...), N, M >= 2, with the sum
    of Gaussian kernels exp(-||a - b||^2 / (s * bandwidth)) over ``scales`` s. ``yy``: the y-y term
    if already known (it depends on ``y`` only)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    if len(x) < 2 or len(y) < 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2 needs two sets of >= 2 samples of the same size, got {tuple(x.shape)}, {tuple(y.shape)}")
    if yy is None:
        yy = _kernel_mean(torch.cdist(y, y).pow(2), bandwidth, scales, True)
    return (_kernel_mean(torch.cdist(x, x).pow(2), bandwidth, scales, True) + yy
            - 2 * _kernel_mean(torch.cdist(x, y).pow(2), bandwidth, scales, False))


def _mean_offdiag(d: torch.Tensor) -> float:
    """Mean of a square matrix of distances, its diagonal left out (zero in exact arithmetic, not
    quite in cdist's); summed in float64."""
    n = len(d)
    return float((d.sum(dtype=torch.float64) - d.diagonal().sum(dtype=torch.float64)) / (n * (n - 1)))


def as_points(x: torch.Tensor) -> torch.Tensor:
    """Samples (N, ...) as vectors (N, D) in their own floating precision, at least float32 (the
    pairwise distances are then as exact as the samples; sums over them are taken in float64)."""
    x = x.flatten(1)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def mean_pairwise_distance(y: torch.Tensor) -> float:
    """E||Y - Y'|| over the distinct pairs of samples ``y`` (M, ...), M >= 2 (the real-real term of
    :func:`energy_distance`, for its ``yy``)."""
    y = as_points(y)
    y = y - y.mean(0)  # centred as in energy_distance
    return _mean_offdiag(torch.cdist(y, y))


def energy_distance(x: torch.Tensor, y: torch.Tensor, yy: Optional[float] = None) -> float:
    """Unbiased energy distance 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| (Szekely & Rizzo 2013)
    between samples ``x`` (N, ...) and ``y`` (M, ...), N, M >= 2: >= 0 in expectation, 0 iff the
    laws agree, with no bandwidth (Euclidean distances, so far-apart mass counts in full).
    ``yy``: E||Y - Y'|| if already known. Distances in the samples' precision (:func:`as_points`),
    means in float64."""
    x, y = as_points(x), as_points(y)
    if len(x) < 2 or len(y) < 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"energy_distance needs two sets of >= 2 samples of the same size, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    centre = y.to(dtype).mean(0)  # distances do not move with it; cdist's |a|^2 + |b|^2 - 2ab cancels less
    x, y = x.to(dtype) - centre, y.to(dtype) - centre
    if yy is None:
        yy = mean_pairwise_distance(y)
    xy = float(torch.cdist(x, y).sum(dtype=torch.float64)) / (len(x) * len(y))  # one matrix alive at a time
    return 2 * xy - _mean_offdiag(torch.cdist(x, x)) - yy


DISTANCES = ("energy", "mmd")  # DataMatch's criteria: energy_distance (the default), mmd2
