"""When to stop refining, without looking at test metrics.

:func:`dgflow.refine` stops by itself (``stop="auto"``, its default) with one of two rules,
chosen on the development half of the bases of ``benchmarks/safe_defaults.py``:

* :class:`AtChance` (no real data): before the first update, estimate from the batch's own logits
  how much the critic says there is to gain (:func:`estimated_gain`); below
  :data:`AT_CHANCE_GAIN` nats the critic cannot tell the samples from data, and the batch is
  returned unchanged. Otherwise the flow runs its ``steps``.
* :class:`DataMatch` (``refine(..., real=x_real)``, a budget of 100 steps): every few steps, the
  energy distance between the decoded samples and held-out real samples. On the samples themselves
  (2D points, text) the flow ends once the distance has stopped falling and the lowest state is
  returned; on features of them (images, through a random CNN whose distance turns before the FID
  does) it ends once the distance has risen past its start and the latest state no farther than
  the start is returned (``tol``: the distance as a veto on harm). The same checks steer the step
  size (longer steps while the distance falls, back to the best state and shorter ones when it
  rises past the bound). It also records the critic's estimated gain after calibration on the
  real samples (:func:`calibrated_gain`).

Two more, measured in ``benchmarks/step_rules.py``:

* :class:`LogitMatch`, a ``stop=`` predicate for :func:`dgflow.refine`: stop once the critic
  scores the refined batch like held-out real data (by default: once half of the gap between the
  batch's and real data's mean logit is closed). With d ~ log mu/rho, the mean logit of the
  refined samples rises towards the mean logit of real data as rho approaches mu, so reaching it
  means the critic can no longer tell the two apart on average; pushing further only climbs the
  critic. It needs a few hundred real samples and nothing else.
* :func:`best_step`: score a recorded trajectory (``refine(..., return_trajectory=k)``) with any
  validation score of the decoded samples, e.g. FID against a held-out split of the training
  data, and take the best step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ._checks import check_float
from .data_match import FEATURES_TOL, STEP_GROW, STEP_MAX, STEP_SHRINK, DataMatch
from .gain import calibrated_gain, estimated_gain
from .logit_rules import LogitMatch, best_step, mean_logit

__all__ = ["AT_CHANCE_GAIN", "FEATURES_TOL", "STEP_GROW", "STEP_SHRINK", "STEP_MAX", "AtChance", "DataMatch",
           "LogitMatch", "best_step", "calibrated_gain", "estimated_gain", "mean_logit"]

Model = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- the default rules
AT_CHANCE_GAIN = 0.02  # nats; docs/design.md §8.3 (chosen on the development bases only)


class AtChance:
    """Stop predicate: leave the batch as it is when the critic is at chance on it.

    At step 0 the rule computes :func:`estimated_gain` of the batch's logits (kept in
    :attr:`gain`); if it is below ``min_gain`` the flow stops there (:attr:`step` = 0) and the
    latents come back unchanged, since what such a critic's gradient points at is its own noise.
    Otherwise it never fires. :func:`dgflow.refine` uses it by default when no ``real`` data is given.
    """

    def __init__(self, min_gain: float = AT_CHANCE_GAIN):
        self.min_gain = check_float(min_gain, "min_gain")
        if self.min_gain < 0:
            raise ValueError(f"min_gain must be >= 0, got {min_gain}")
        self.gain: Optional[float] = None
        self.step: Optional[int] = None

    def as_dict(self) -> dict:
        return {"rule": "AtChance", "min_gain": self.min_gain, "gain": self.gain}

    @property
    def reason(self) -> str:
        if self.gain is None:
            return "not run"
        if self.step == 0:
            return (f"critic at chance: estimated gain {self.gain:.3g} < {self.min_gain:g} nats, "
                    "latents returned unchanged")
        return f"estimated gain {self.gain:.3g} nats >= {self.min_gain:g}: ran the step budget"

    def __call__(self, step: int, z: torch.Tensor, logits: torch.Tensor) -> bool:
        if step == 0:
            self.gain = estimated_gain(logits)
            self.step = 0 if self.gain < self.min_gain else None
            return self.step == 0
        return False
