"""Distances between two samples, for stopping rules (:class:`dgflow.stopping.DataMatch`).

:func:`energy_distance` (bandwidth-free) and :func:`mmd2` (Gaussian kernels at multiples of the
median squared distance, :func:`median_bandwidth`), both unbiased, on samples flattened to vectors;
:class:`RandomConvFeatures`, a fixed untrained CNN that maps images to the vectors they are taken on
(:func:`auto_features` chooses it for image-shaped samples).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["DISTANCES", "MMD_SCALES", "RandomConvFeatures", "as_points", "auto_features", "energy_distance",
           "mean_pairwise_distance", "median_bandwidth", "mmd2"]


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


class RandomConvFeatures:
    """A fixed, seeded, untrained ReLU CNN: images (N, C, H, W) -> (N, 2 * sum(widths)) features.

    Layer k is a 3x3 convolution of stride 2 to ``widths[k]`` channels with He-normal weights and no
    bias, then a ReLU; the features are every layer's channel means over space, then every layer's
    channel standard deviations over space (how much of each pattern, and how unevenly it is spread:
    adding the deviations to the means tracked the FID of flows on the seen image bases better,
    docs/design.md §8.3). An untrained network
    needs no download and no training data, and its features are what a distance sees of the images'
    local structure at three scales rather than of their individual pixels (randomly initialised
    embeddings are used to compare image distributions off ImageNet, Naeem et al. 2020, "Reliable
    fidelity and diversity metrics for generative models"). The weights depend on ``channels`` and
    ``seed`` only (drawn on the CPU, then moved to the input's device and dtype), so every device
    and run sees the same network. ``batch_size`` bounds the images in memory at once.
    """

    def __init__(self, channels: int, widths: Sequence[int] = (32, 64, 128), seed: int = 0, batch_size: int = 256):
        rng = torch.Generator().manual_seed(seed)
        self.weights, c = [], channels
        for w in widths:
            self.weights.append(torch.randn(w, c, 3, 3, generator=rng) * (2.0 / (9 * c)) ** 0.5)
            c = w
        self.channels, self.batch_size = channels, batch_size
        self._moved: dict = {}

    def _on(self, x: torch.Tensor) -> list[torch.Tensor]:
        key = (x.device, x.dtype)
        if key not in self._moved:
            self._moved[key] = [w.to(x.device, x.dtype) for w in self.weights]
        return self._moved[key]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"RandomConvFeatures({self.channels}) takes images (N, {self.channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        out = []
        for chunk in x.split(self.batch_size):
            h, means, stds = chunk, [], []
            for w in self._on(chunk):
                h = F.relu(F.conv2d(h, w, stride=2, padding=1))
                means.append(h.mean((2, 3)))
                stds.append(h.std((2, 3), correction=0))  # 0 on a 1 x 1 map, not NaN
            out.append(torch.cat(means + stds, 1))
        return torch.cat(out)


#: the smallest height and width :func:`auto_features` treats as an image
MIN_IMAGE_SIZE = 8


def auto_features(real: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The feature map DataMatch's ``features="auto"`` takes its distance in: :class:`RandomConvFeatures`
    for image-shaped samples (N, C, H, W) with H, W >= :data:`MIN_IMAGE_SIZE`, else ``None`` (the
    samples themselves, flattened: 2D points, one-hot text)."""
    if real.dim() == 4 and min(real.shape[2:]) >= MIN_IMAGE_SIZE:
        return RandomConvFeatures(real.shape[1])
    return None
