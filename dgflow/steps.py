"""Step rules of the flow: the scale-free step ``eta="auto"`` and the per-sample drift cap ``clip``.

Both are set once, from the first step's drifts v_i = s(d_i) grad d_i, and both are invariant to
the critic's scale: multiplying the critic by c multiplies every v_i by c (KL) and so divides the
automatic eta by c, and the cap is a multiple of the median |v_i|.
"""
from __future__ import annotations

import logging
import math

import torch

from .divergences import Weight

logger = logging.getLogger("dgflow")

#: default median latent step length of ``eta="auto"``
AUTO_STEP = 0.02


def _bcast(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return w.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def drift_lengths(weight: Weight, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """||s(d) grad d|| per sample, shape (N,)."""
    return (_bcast(weight(logits), grad) * grad).flatten(1).norm(dim=1)


def auto_eta(weight: Weight, logits: torch.Tensor, grad: torch.Tensor, auto_step: float = AUTO_STEP) -> float:
    """The step size that makes the median drift length ||eta * s(d) grad d|| equal ``auto_step``.

    Scaling the critic by any constant c scales grad d by c and so eta by 1/c: the KL flow's
    steps, and hence the refined samples, do not depend on the critic's scale.
    """
    return _auto_eta(drift_lengths(weight, logits, grad), auto_step)


def _auto_eta(lengths: torch.Tensor, auto_step: float) -> float:
    med = float(lengths.median()) if len(lengths) else 0.0
    if not med > 0 or not math.isfinite(med):
        raise ValueError(f"eta='auto' needs a non-zero drift at the median sample (got {med}); "
                         "the critic is flat here: pass a numeric eta")
    return auto_step / med


def resolve_step(eta: float | str, auto_step: float, clip: float | None, weight: Weight,
                 logits: torch.Tensor, grad: torch.Tensor) -> tuple[float, float | None]:
    """``(eta, cap)`` from the first step: eta resolved if ``"auto"``; ``cap`` the largest drift
    rate ||s(d) grad d|| allowed (``clip`` times the median over samples that move), or None."""
    if not isinstance(eta, str) and clip is None:
        return eta, None
    lengths = drift_lengths(weight, logits, grad)
    if isinstance(eta, str):
        eta = _auto_eta(lengths, auto_step)
        logger.info("dgflow: eta='auto' chose eta=%.4g (median drift length %.3g)", eta, auto_step)
    moving = lengths[lengths > 0]
    if clip is None or not len(moving):  # no cap asked for, or nothing moves
        return eta, None
    return eta, clip * float(moving.median())


def drift(weight: Weight, logits: torch.Tensor, grad: torch.Tensor, eta: float, cap: float | None) -> torch.Tensor:
    """eta * s(d) grad d per sample, each sample's rate ||s(d) grad d|| capped at ``cap``."""
    w = _bcast(weight(logits), grad)
    if cap is None:
        return eta * w * grad  # the paper's update, in the order of a plain loop (bitwise comparable)
    rate = (w * grad).flatten(1).norm(dim=1)
    shrink = torch.clamp(cap / rate.clamp_min(torch.finfo(rate.dtype).tiny), max=1.0)
    return eta * (w * _bcast(shrink, grad)) * grad  # the order the benchmarks were run with
