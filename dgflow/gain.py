"""How much the critic says a batch has to gain: from its own logits (:func:`estimated_gain`, the
no-data rule :class:`dgflow.stopping.AtChance`) or after Platt scaling on real data
(:func:`calibrated_gain`, recorded by :class:`dgflow.data_match.DataMatch`)."""
from __future__ import annotations

import math

import torch

from .calibration import fit_affine

__all__ = ["calibrated_gain", "estimated_gain"]


def estimated_gain(logits: torch.Tensor) -> float:
    """How much mean logit the critic says the batch has to gain, from the batch's logits alone.

    With d = log mu/rho (a calibrated critic), real data's mean logit E_mu[d] is the mean of d
    under the weights e^d / sum e^d (self-normalised importance sampling of mu by rho's samples),
    so the estimate is ``sum_i w_i d_i - mean_i d_i`` >= 0: the Jeffreys divergence
    KL(mu||rho) + KL(rho||mu) when d is exact, about Var(d) for Gaussian logits, 0 when the critic
    scores every sample alike. Needs no real data; a WGAN critic's logits are not in nats, so there
    it is a scale, not a divergence.
    """
    if not isinstance(logits, torch.Tensor) or logits.numel() == 0:
        raise ValueError("logits must be a non-empty tensor of the batch's critic logits")
    d = logits.detach().double().flatten()
    if not bool(torch.isfinite(d).all()):
        raise FloatingPointError("logits contain non-finite values")
    return float((torch.softmax(d, 0) * d).sum() - d.mean())


def calibrated_gain(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """:func:`estimated_gain` of the fakes' logits after Platt scaling a*d + b on real vs fake logits
    (:func:`dgflow.calibration.fit_affine`), in nats whatever the critic's scale; and (a, b).

    A critic that ranks backwards or not at all (a <= 0) has nothing to gain (0); one whose fit
    diverges (the logits separate the two sets perfectly) an unbounded gain (``inf``).
    """
    try:
        a, b = fit_affine(d_real, d_fake, "platt")
    except FloatingPointError:  # the logits separate real from fake perfectly
        return math.inf, (math.inf, math.nan)
    return (estimated_gain(a * d_fake) if a > 0 else 0.0), (a, b)
