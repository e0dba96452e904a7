"""When to stop refining, without looking at test metrics.

:func:`dgflow.refine` stops by itself (``stop="auto"``, its default) with one of two rules,
chosen on the development half of the bases of ``benchmarks/safe_defaults.py``:

* :class:`AtChance` (no real data): before the first update, estimate from the batch's own logits
  how much the critic says there is to gain (:func:`estimated_gain`); below
  :data:`AT_CHANCE_GAIN` nats the critic cannot tell the samples from data, and the batch is
  returned unchanged. Otherwise the flow runs its ``steps``; on samples that are not images the
  start is returned if, by the end, the batch's mean logit has risen twice the estimated gain (as far
  past the critic's estimate of real data's as it started short of it) while the gain has not fallen
  (the critic contradicting itself).
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

from ._checks import check_batch_size, check_float
from .data_match import FEATURES_TOL, STEP_GROW, STEP_MAX, STEP_SHRINK, DataMatch
from .distances import auto_features
from .gain import calibrated_gain, estimated_gain
from .logit_rules import LogitMatch, best_step, mean_logit
from .passes import generate
from .passes import logits as critic_logits

__all__ = ["AT_CHANCE_GAIN", "MAX_GAIN_RATIO", "OVERSHOOT", "FEATURES_TOL", "STEP_GROW", "STEP_SHRINK", "STEP_MAX", "AtChance", "DataMatch",
           "LogitMatch", "best_step", "calibrated_gain", "estimated_gain", "mean_logit"]

Model = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- the default rules
AT_CHANCE_GAIN = 0.02  # nats; docs/design.md §8.3 (chosen on the development bases only)
#: AtChance's end-of-budget test: the start is returned when the batch's mean logit has risen by at least
#: OVERSHOOT times step 0's estimated gain (2: as far past the critic's estimate of real data's mean logit,
#: step 0's mean plus the gain, as the start was short of it) while its estimated gain is still at least
#: MAX_GAIN_RATIO times step 0's (1: it has not fallen). Both set by the critic's own model, not tuned
#: (docs/design.md §8.3)
OVERSHOOT, MAX_GAIN_RATIO = 2.0, 1.0


class AtChance:
    """Stop rule without real data: leave the batch as it is when the critic is at chance on it, or
    when the flow did not bring it closer to the data by the critic's own measure.

    At step 0 the rule computes :func:`estimated_gain` of the batch's logits (kept in
    :attr:`gain`); if it is below ``min_gain`` the flow stops there (:attr:`step` = 0) and the
    latents come back unchanged, since what such a critic's gradient points at is its own noise.
    Otherwise the flow runs its budget. Given the run's ``critic`` (as :func:`dgflow.refine` passes
    it), the rule then scores the last state too, by the critic's own measure: with d = log mu/rho,
    step 0's mean logit plus its estimated gain g estimates real data's mean logit (the weights e^d
    reweight the batch towards the data). If the last state's mean logit has risen by at least
    :data:`OVERSHOOT` g (as far past that estimate as the start was short of it) while its estimated
    gain (:attr:`end_gain`) is still at least ``max_gain_ratio`` times step 0's, the batch has
    climbed the critic beyond where it puts the data without coming any closer to it: the critic
    contradicts itself, and the start is returned (:attr:`step` = 0; its copy is the rule's memory).
    On an exact linear log ratio (two Gaussians a shift apart) the gain never falls, the mean logit
    reaches the estimate where the batch reaches the data, and a rise of 2g means it is as far
    beyond the data as it started short of it, so the start is then no worse. This end
    test applies to samples compared as they are (2D points, text: :func:`dgflow.distances.auto_features`
    gives no feature map), not to images, on which the gain of flows that improved the FID rose
    (docs/design.md §8.3). It costs one forward pass of the batch at the end.
    :func:`dgflow.refine` uses it by default when no ``real`` data is given.

    Args:
        min_gain: the at-chance threshold, nats.
        critic: the run's critic, for the end test (``None``: no end test; a plain predicate).
        generator: the run's generator (``None``: data-space refinement).
        batch_size: chunk size of the end test's forward pass.
        max_gain_ratio: the end test's threshold (``None``: no end test).
    """

    def __init__(self, min_gain: float = AT_CHANCE_GAIN, critic: Optional[Model] = None,
                 generator: Optional[Model] = None, batch_size: Optional[int] = None,
                 max_gain_ratio: Optional[float] = MAX_GAIN_RATIO):
        self.min_gain = check_float(min_gain, "min_gain")
        if self.min_gain < 0:
            raise ValueError(f"min_gain must be >= 0, got {min_gain}")
        if critic is not None and not callable(critic):
            raise TypeError(f"critic must be callable or None, got {type(critic).__name__}")
        self.max_gain_ratio = None if max_gain_ratio is None else check_float(max_gain_ratio, "max_gain_ratio")
        if self.max_gain_ratio is not None and self.max_gain_ratio <= 0:
            raise ValueError(f"max_gain_ratio must be > 0 or None, got {max_gain_ratio}")
        self.critic, self.generator, self.batch_size = critic, generator, check_batch_size(batch_size)
        self.gain: Optional[float] = None
        self.mean: Optional[float] = None  # step 0's mean logit
        self.end_gain: Optional[float] = None
        self.end_mean: Optional[float] = None
        self.step: Optional[int] = None
        self._start: Optional[torch.Tensor] = None  # step 0's latents, while the end test applies

    @property
    def end_test(self) -> bool:
        """Whether the rule scores the end of the flow (a critic and a threshold given)."""
        return self.critic is not None and self.max_gain_ratio is not None

    def as_dict(self) -> dict:
        return {"rule": "AtChance", "min_gain": self.min_gain, "gain": self.gain, "mean_logit": self.mean,
                "max_gain_ratio": self.max_gain_ratio if self.end_test else None, "end_gain": self.end_gain,
                "end_mean_logit": self.end_mean}

    @property
    def reason(self) -> str:
        if self.gain is None:
            return "not run"
        if self.step == 0 and self.end_gain is None:
            return (f"critic at chance: estimated gain {self.gain:.3g} < {self.min_gain:g} nats, "
                    "latents returned unchanged")
        out = f"estimated gain {self.gain:.3g} nats >= {self.min_gain:g}: ran the step budget"
        if self.end_gain is not None:
            out += (f"; at the end: mean logit {self.end_mean:.3g} (step 0's {self.mean:.3g}, real data's "
                    f"estimated {self.mean + self.gain:.3g}), estimated gain {self.end_gain:.3g} nats "
                    f"({self.end_gain / self.gain:.2f}x step 0's)")
            if self.step == 0:
                out += (f": risen {OVERSHOOT:g}x the gain or more with a gain not below {self.max_gain_ratio:g}x, "
                        "the critic contradicts itself; latents returned unchanged")
        return out

    def samples_wanted(self, step: int, generator: Optional[Model] = None) -> int:
        """One decoded sample at step 0 (what the end test needs to know of the samples' shape)."""
        return 1 if step == 0 and self.end_test and generator is self.generator else 0

    def __call__(self, step: int, z: torch.Tensor, logits: torch.Tensor,
                 samples: Optional[torch.Tensor] = None) -> bool:
        if step == 0:
            self.gain, self.mean = estimated_gain(logits), float(logits.detach().double().mean())
            self.end_gain = self.end_mean = self._start = None
            self.step = 0 if self.gain < self.min_gain else None
            if self.step is None and self.end_test:
                if samples is None or not len(samples):
                    samples = generate(self.generator, z[:1], self.batch_size)
                if auto_features(samples) is None:  # samples compared as they are: the end test applies
                    self._start = z.detach().clone()
            return self.step == 0
        return False

    def finish(self, step: int, z: torch.Tensor) -> tuple[int, torch.Tensor]:
        """The (step, state) to return once the flow has ended at ``step``: the start where the end
        test finds the critic contradicting itself, else ``z``."""
        start, self._start = self._start, None
        if start is None or step == 0:
            return step, z
        d = critic_logits(self.generator, self.critic, z, self.batch_size, eval_mode=None).double()
        self.end_gain, self.end_mean = estimated_gain(d), float(d.mean())
        if self.end_mean >= self.mean + OVERSHOOT * self.gain and self.end_gain >= self.max_gain_ratio * self.gain:
            self.step = 0
            return 0, start
        return step, z
