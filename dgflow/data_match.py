"""The real-data stop rule :class:`DataMatch` (``refine(..., real=x_real)``'s default; the rules'
overview is :mod:`dgflow.stopping`, which re-exports it)."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from ._checks import check_batch_size, check_float, check_int
from .distances import (DISTANCES, MMD_SCALES, _kernel_mean, _median_offdiag, auto_features, energy_distance,
                        mean_pairwise_distance, mmd2)
from .gain import calibrated_gain
from .passes import generate, logits

__all__ = ["FEATURES_TOL", "STEP_GROW", "STEP_SHRINK", "STEP_MAX", "DataMatch", "within_bound"]

Model = Callable[[torch.Tensor], torch.Tensor]

#: DataMatch's step control (``adapt_step=True``): the step size after a check that improved on the
#: best (times STEP_GROW, at most STEP_MAX times the first step's) and after one that did not (the
#: flow goes back to the best state, times STEP_SHRINK); set a priori, docs/design.md §8.3
STEP_GROW, STEP_SHRINK, STEP_MAX = 2.0, 0.25, 8.0
#: DataMatch's ``tol="auto"`` when its distance is taken on features of the samples (images): the
#: latest state no farther from the data than the start nor than twice the lowest; on the samples
#: themselves the lowest (tol 0). Chosen on the seen halves of the safe-defaults study, docs/design.md §8.3
FEATURES_TOL = 1.0


def within_bound(first: float, lowest: float, tol: float) -> float:
    """DataMatch's bound: the largest distance a check may have to count as *within*, ``lowest + tol *
    min(first - lowest, lowest)`` (first: step 0's distance; the lowest so far). ``tol=0``: the lowest;
    ``tol=1``: the first distance or twice the lowest, whichever is smaller. It never grows as the
    lowest falls, and a lowest at or below 0 (the unbiased estimate can dip below) leaves no slack."""
    return lowest + tol * min(first - lowest, max(lowest, 0.0)) if tol else lowest


def _resolve_features(features: object, real: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """DataMatch's ``features`` argument as a feature map, or ``None`` for the samples themselves."""
    if isinstance(features, str):
        if features != "auto":
            raise ValueError(f"features must be 'auto', None or a callable (N, ...) -> (N, F), got {features!r}")
        return auto_features(real)
    if features is not None and not callable(features):
        raise TypeError(f"features must be 'auto', None or a callable (N, ...) -> (N, F), got {type(features).__name__}")
    return features


class DataMatch:
    """Stop rule with held-out real data: end the flow once the samples stop getting closer to it,
    and (``adapt_step``) steer its step size by the same checks.

    Before the first update, with the ``critic`` given (as :func:`dgflow.refine` does), the critic
    is calibrated on the real samples and the batch (:func:`calibrated_gain`, kept in :attr:`gain`
    and :attr:`calibration`); with ``min_gain`` set, a gain in nats below it means the critic is at
    chance and the batch comes back unchanged, a test that does not depend on the critic's scale
    (a WGAN critic's, say). It is off by default: on the development bases, gainable 2D WGAN-GP
    bases had calibrated gains of 0.011-0.013 nats and bases nothing could improve 0.015-0.019
    (docs/design.md §8.3), so the distance checks decide.

    Then every ``every`` steps (and at the last), the first ``max_points`` latents of the batch are
    decoded and their distance to ``real`` is taken: the energy distance (:func:`energy_distance`,
    ``distance="energy"``, the default) or a kernel MMD (:func:`mmd2`, ``distance="mmd"``, Gaussian
    kernels at :data:`MMD_SCALES` times the median squared distance between real points; chosen
    against the energy distance on the development bases, docs/design.md §8.3). The flow ends once
    ``patience`` checks in a row have not improved on the best, and :func:`dgflow.refine` returns
    the state of the best check (:meth:`finish`; its step is :attr:`step`, every check's value
    :attr:`history`); with ``tol`` > 0 a check counts as long as its distance stays within a bound
    above the lowest (:meth:`bound`), and the latest such state is returned (``tol`` below;
    by default 1 on features, 0 on the samples themselves). The distance is taken on ``features``
    of the samples: by default (``"auto"``) images (N, C, H, W) are mapped by a fixed untrained CNN
    (:class:`dgflow.distances.RandomConvFeatures`) and anything else (2D points, one-hot text) is
    compared as it is. On image bases the pixels' energy distance turned up while the FID was still
    falling (docs/design.md §8.3). It ranks states of one run; it is no quality metric. Its cost (setup, calibration, checks) is
    recorded in the run's ``RunInfo.stop_seconds``; ``RunInfo.stop_overhead`` relates it to the steps'.
    Under :func:`dgflow.refine` (models in eval mode) a check decodes nothing: it takes the samples the
    step's own pass decoded (:meth:`samples_wanted`), so it costs the features and the distance only.

    With ``adapt_step`` (the default) the checks also set the step size, a trust region on the
    distance: after a check that improved on the best the step grows :data:`STEP_GROW`-fold (up to
    :data:`STEP_MAX` times the first), after one beyond the bound (``tol=0``: any that did not
    improve) the flow goes back to the best state and continues at :data:`STEP_SHRINK` times the step. So a flow far from the data speeds up and one
    that overshoots goes back and slows down. A state the models cannot score (non-finite logits,
    gradients or latents: a step too long for them) counts as a check at an infinite distance
    (:meth:`reject`), so the flow goes back too instead of failing. A step then counts a gradient
    pass (a rewind costs one), not flow time; :attr:`scales` records every change as (step, step
    scale). It needs an update that can change its step (:func:`dgflow.refine`'s solvers; DDLS and
    DOT cannot: ``adapt_step=False`` there).

    Args:
        real: held-out real samples (M, ...), M >= 2, in the generator's output space.
        generator: the generator of the run (``None``: data-space refinement).
        critic: the run's critic, for the at-chance test (``None``: no test).
        every: check spacing in steps (decoding costs one forward pass of ``max_points`` samples).
        patience: checks without improvement before the flow ends.
        max_points: samples of the batch and of ``real`` compared (the first ones).
        batch_size: decode in chunks of this size.
        min_gain: the at-chance threshold, nats (``None``: no test; :data:`AT_CHANCE_GAIN` is
            :class:`AtChance`'s).
        distance: ``"energy"`` or ``"mmd"`` (:data:`DISTANCES`).
        features: what the distance is taken on: ``"auto"`` (:func:`dgflow.distances.auto_features`),
            ``None`` (the samples themselves) or a callable (N, ...) -> (N, F) applied to the decoded
            and the real samples alike (e.g. an Inception network's pool features).
        adapt_step: steer the flow's step size by the checks (above); ``False``: a plain stop rule.
        tol: how far past its lowest the distance may be for a check to count, in [0, 1] or ``"auto"``
            (:data:`FEATURES_TOL` with a feature map, 0 on the samples themselves): a check is
            *within* when its distance is at most ``lowest + tol * min(first - lowest, lowest)``
            (:meth:`bound`; first: step 0's): it may rise back by ``tol`` times what the flow gained,
            but never past ``1 + tol`` times the lowest, so a flow that came far closer to the data
            than it started may not drift back most of the way. The flow ends after ``patience``
            checks in a row that are not, and the latest check within the final bound is returned
            (:attr:`step`; the lowest: :attr:`best_step`). ``0``: the lowest check; ``1``: the latest
            state no farther from the data than the start nor than twice the lowest, the distance as
            a veto on harm rather than the picker of the step.
            With ``adapt_step``, a check within the bound that is not the lowest keeps the step as it is.
            Memory: the lowest state and the latest one within the bound (a copy of the latents each).
    """

    def __init__(self, real: torch.Tensor, generator: Optional[Model] = None, critic: Optional[Model] = None,
                 every: int = 5, patience: int = 2, max_points: int = 1000, batch_size: Optional[int] = None,
                 min_gain: Optional[float] = None, distance: str = "energy",
                 features: Union[str, Callable[[torch.Tensor], torch.Tensor], None] = "auto",
                 adapt_step: bool = True, tol: Union[float, str] = "auto"):
        if not isinstance(real, torch.Tensor) or real.dim() < 1 or len(real) < 2:
            raise ValueError("real must be a tensor of at least 2 held-out real samples (M, ...)")
        if not bool(torch.isfinite(real).all()):
            raise ValueError("real contains non-finite values (NaN or inf)")
        self.every = check_int(every, "every", 1)
        self.patience = check_int(patience, "patience", 1)
        self.max_points = check_int(max_points, "max_points", 2)
        self.batch_size = check_batch_size(batch_size)
        self.min_gain = None if min_gain is None else check_float(min_gain, "min_gain")
        if self.min_gain is not None and self.min_gain < 0:
            raise ValueError(f"min_gain must be >= 0 or None, got {min_gain}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.distance = distance
        if not isinstance(adapt_step, bool):
            raise TypeError(f"adapt_step must be True or False, got {adapt_step!r}")
        self.adapt_step = adapt_step
        self.generator, self.critic = generator, critic
        self.real = real.detach()[: self.max_points]
        self.features = _resolve_features(features, self.real)
        if isinstance(tol, str) and tol == "auto":
            tol = FEATURES_TOL if self.features is not None else 0.0
        self.tol = check_float(tol, "tol")
        if not 0 <= self.tol <= 1:
            raise ValueError(f"tol must be 'auto' or in [0, 1], got {tol}")
        self._real_points = self._points(self.real)
        self.bandwidth: Optional[float] = None  # the MMD's kernel scale; the energy distance has none
        if distance == "energy":  # the real-real term, once
            self._yy = mean_pairwise_distance(self._real_points)
        else:
            y = self._real_points.flatten(1).double()
            d2 = torch.cdist(y, y).pow(2)
            self.bandwidth = _median_offdiag(d2[:1000, :1000])  # median_bandwidth's first 1,000 points
            self._yy = _kernel_mean(d2, self.bandwidth, MMD_SCALES, True)
        self.gain: Optional[float] = None
        self.calibration: Optional[tuple[float, float]] = None
        self._started = False  # whether this run's step 0 was seen (a run of 0 steps has none)
        self._reset()

    def _reset(self) -> None:
        self.history: dict[int, float] = {}
        self.step: Optional[int] = None  # the step returned: the latest check within the bound
        self.best_step: Optional[int] = None  # the lowest check
        self._best: Optional[torch.Tensor] = None
        self._chosen: Optional[tuple[int, torch.Tensor]] = None  # (step, state) of the latest check within
        self._since_within = 0
        self._next = 0  # the step of the next check
        self.scale = 1.0  # the step size relative to the first step's
        self.scales: list[tuple[int, float]] = []  # (step, new scale) at every change
        self._move: Optional[tuple[Optional[torch.Tensor], float]] = None  # for steer()

    @property
    def steers(self) -> bool:
        """Whether the rule steers the step size (the engine then needs an update that can rescale)."""
        return self.adapt_step

    def as_dict(self) -> dict:
        return {"rule": "DataMatch", "every": self.every, "patience": self.patience, "tol": self.tol,
                "best_step": self.best_step, "max_points": self.max_points,
                "n_real": len(self.real), "distance": self.distance, "features": self.features_name,
                "bandwidth": self.bandwidth,
                "min_gain": self.min_gain, "gain": self.gain, "calibration": self.calibration,
                "adapt_step": self.adapt_step, "scales": [list(m) for m in self.scales]}

    @property
    def at_chance(self) -> bool:
        return self.gain is not None and self.min_gain is not None and self.gain < self.min_gain

    @property
    def reason(self) -> str:
        if self.at_chance:
            return (f"critic at chance on the real data: calibrated gain {self.gain:.3g} < {self.min_gain:g} "
                    "nats, latents returned unchanged")
        if self.step is None:
            return "not run"
        first, last = min(self.history), max(self.history)
        name = "energy distance" if self.distance == "energy" else "kernel MMD^2"
        if self.features is not None:
            name += f" ({self.features_name})"
        steered = f", step size changed {len(self.scales)}x" if self.scales else ""
        best = self.best_step
        out = (f"{name} to the real samples lowest at step {best}: {self.history[best]:.3g} "
               f"(step {first}: {self.history[first]:.3g}; {len(self.history)} checks to step {last}{steered})")
        if self.step != best:
            out += (f"; returned step {self.step} ({self.history[self.step]:.3g}), the latest check within "
                    f"the bound {self.bound():.3g} (tol = {self.tol:g}: lowest + tol * min(step {first}'s - "
                    "lowest, lowest))")
        return out

    @property
    def features_name(self) -> Optional[str]:
        """The feature map's name (its class or function name), ``None`` without one."""
        f = self.features
        return None if f is None else getattr(f, "__name__", type(f).__name__)

    def _points(self, x: torch.Tensor) -> torch.Tensor:
        """What the distance compares: ``features(x)`` (checked), or ``x``."""
        if self.features is None:
            return x
        with torch.no_grad():
            out = self.features(x)
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or len(out) != len(x):
            raise ValueError(f"features must map samples (N, ...) to a tensor (N, F), got "
                             f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))} for N = {len(x)}")
        return out.detach()

    def score(self, z: torch.Tensor) -> float:
        """The distance of the decoded first ``max_points`` latents of ``z`` to the real samples."""
        return self.distance_to(generate(self.generator, z[: self.max_points], self.batch_size))

    def distance_to(self, x: torch.Tensor) -> float:
        """The distance of samples ``x`` (in the generator's output space; the first ``max_points``
        are used) to the real samples, on the rule's features."""
        x = self._points(x[: self.max_points].to(self.real.device, self.real.dtype))
        if self.distance == "energy":
            return energy_distance(x, self._real_points, yy=self._yy)
        return mmd2(x, self._real_points, self.bandwidth, yy=self._yy)

    def samples_wanted(self, step: int, generator: Optional[Model] = None) -> int:
        """How many decoded samples the call at ``step`` compares (0: none) if the run decodes with
        ``generator``: :func:`dgflow.refine`'s loop hands over those its own pass decoded
        (``samples=``), so a check decodes nothing again. 0 for a run with another generator than
        the rule's (its checks then decode with their own, as they always did)."""
        if generator is not self.generator:
            return 0
        return self.max_points if step == 0 or step >= self._next else 0

    def _check(self, step: int, z: torch.Tensor, samples: Optional[torch.Tensor] = None) -> bool:
        """Score the state (``samples``: its first decoded latents, if at hand); whether it is the best so far."""
        if samples is not None and len(samples) == min(len(z), self.max_points):
            return self._record(step, self.distance_to(samples), z)
        return self._record(step, self.score(z), z)

    def bound(self) -> float:
        """The distance a check may have to count as *within* now (:func:`within_bound` of the first
        check's distance, the lowest and ``tol``; ``tol=0``: the lowest, so only improvements count)."""
        return within_bound(self.history[min(self.history)], self.history[self.best_step], self.tol)

    def _record(self, step: int, value: float, z: Optional[torch.Tensor]) -> bool:
        """Record the check of ``step`` at distance ``value``; whether it is the lowest so far (then
        ``z`` is kept as the best state, where the step control goes back to). A check within
        :meth:`bound` becomes the state to return (:attr:`step`), else it counts towards ``patience``."""
        self.history[step] = value
        improved = self.best_step is None or value < self.history[self.best_step]
        if improved:
            self.best_step, self._best = step, z.detach().clone()
        # the bound only tightens at a new lowest, which is itself within it: so the latest check within
        # the bound when it was made stays within the final one, and no earlier check is needed
        if value <= self.bound():
            self._chosen = (step, self._best if improved else z.detach().clone())
            self._since_within = 0
        else:
            self._since_within += 1
        self.step = self._chosen[0]
        return improved

    def _conclude(self, step: int, improved: bool) -> bool:
        """After the check of ``step``: whether the flow ends (patience), else plan the step control."""
        if self._since_within >= self.patience:
            return True
        self._plan(step, improved)
        return False

    def _plan(self, step: int, improved: bool) -> None:
        """The step control after a check at ``step`` (that did not end the flow), and the next check."""
        self._next = step + self.every
        if not self.adapt_step or step == 0:
            return
        if not improved and self._since_within == 0:  # within the bound (tol > 0): go on at this step
            return
        scale = min(self.scale * STEP_GROW, STEP_MAX) if improved else self.scale * STEP_SHRINK
        if scale != self.scale:
            self._move = (None if improved else self._best, scale / self.scale)
            self.scale = scale
            self.scales.append((step, scale))
        if not improved:  # the rewind takes the next step's pass: `every` updates follow it
            self._next += 1

    def reject(self, step: int) -> bool:
        """The flow's state at ``step`` is not finite (a step too long for the models): count it as a
        check at an infinite distance, so the flow goes back to the best state at a shorter step
        (:meth:`steer`); returns whether that ends the flow (patience)."""
        return self._conclude(step, self._record(step, math.inf, None))

    def steer(self) -> Optional[tuple[Optional[torch.Tensor], float]]:
        """What the last call asks of the flow (and forgets it): ``None``, or ``(state, factor)``: the
        step size times ``factor``, from ``state`` (the best checked one) or, if ``None``, from where it is."""
        move, self._move = self._move, None
        return move

    def _calibrate(self, fake_logits: torch.Tensor) -> None:
        self.gain = self.calibration = None
        if self.critic is not None:
            d_real = logits(None, self.critic, self.real, self.batch_size).to(fake_logits.device)
            self.gain, self.calibration = calibrated_gain(d_real, fake_logits.detach().flatten())

    def __call__(self, step: int, z: torch.Tensor, logits: torch.Tensor,
                 samples: Optional[torch.Tensor] = None) -> bool:
        """The check of ``step`` (state ``z``, its ``logits``; ``samples``: the generator's samples of
        the first latents, if the caller decoded them already); whether the flow ends."""
        if step == 0:
            self._reset()
            self._calibrate(logits)
            self._started = True
            if self.at_chance:
                return True
        if step < self._next:
            return False
        return self._conclude(step, self._check(step, z, samples))

    def finish(self, step: int, z: torch.Tensor) -> tuple[int, torch.Tensor]:
        """The (step, state) to return when the flow has ended at ``step`` with state ``z``: the
        best checked one (``z`` itself is checked first if the budget ended the flow)."""
        if step == 0:  # a run of 0 steps, or a critic at chance: the state is the start
            self._reset()
            if not self._started:
                self.gain = self.calibration = None
        self._started = False
        if step not in self.history:
            self._check(step, z)
        return self._chosen
