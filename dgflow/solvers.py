"""Solvers of the flow and the settings they read, behind one registry (:data:`SOLVERS`).

:func:`dgflow.refine` validates its arguments once into :class:`FlowSettings` and asks the
registry for the solver's update; each solver reads from the settings only what it uses.

* ``"euler"``: Euler-Maruyama of the SDE dz = s(d) grad d dt + sqrt(2 gamma) dW (docs/design.md §1):
  z <- z + eta * s(d) grad d + sqrt(2 gamma eta) xi.
* a torchdiffeq method (``"dopri5"``, ``"rk4"``, ...; ``"euler_ode"`` is torchdiffeq's own Euler):
  with ``gamma = 0``, the ODE dz/dt = s(d) grad d integrated over each step's interval
  [k eta, (k + 1) eta] in turn, so callbacks and stop rules see every grid point as it is reached.

Both resolve the step rule (``eta="auto"``, the drift cap ``clip``: :mod:`dgflow.steps`) from the
first step's drifts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ._checks import check_float, check_int
from .divergences import DivergenceLike, Weight, get_weight
from .passes import chunk_slices, logits_and_grad, check_finite
from .steps import AUTO_STEP, drift, resolve_step

Model = Callable[[torch.Tensor], torch.Tensor]
ODE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "rk4", "midpoint", "euler_ode")


@dataclass(frozen=True)
class FlowSettings:
    """refine()'s flow settings, validated (see :func:`make_settings`)."""

    steps: int = 25
    eta: float | str = "auto"
    gamma: float = 0.01
    weight: Weight = get_weight("kl")
    auto_step: float = AUTO_STEP
    clip: Optional[float] = 1.0
    solver: str = "euler"
    rtol: float = 1e-5
    atol: float = 1e-6


def make_settings(steps: int = 25, eta: float | str = "auto", gamma: float = 0.01, divergence: DivergenceLike = "kl",
                  *, auto_step: float = AUTO_STEP, clip: float | None = 1.0, solver: str = "euler",
                  rtol: float = 1e-5, atol: float = 1e-6) -> FlowSettings:
    """Check refine()'s flow arguments (every error names the argument) and bundle them."""
    steps = check_int(steps, "steps")
    if isinstance(eta, str):
        if eta != "auto":
            raise ValueError(f"eta must be a positive number or 'auto', got {eta!r}")
        auto_step = check_float(auto_step, "auto_step", positive=True)
    else:
        eta = check_float(eta, "eta", positive=True)
    if clip is not None:
        clip = check_float(clip, "clip", positive=True)
    gamma = check_float(gamma, "gamma", nonnegative=True)
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"solver: unknown solver {solver!r}; use 'euler' or one of {ODE_METHODS}")
    if solver != "euler":
        if gamma != 0:
            raise ValueError(f"solver={solver!r} integrates the deterministic flow: set gamma=0 "
                             f"(got gamma={gamma}) or use solver='euler'")
        rtol = check_float(rtol, "rtol", positive=True)
        atol = check_float(atol, "atol", positive=True)
    return FlowSettings(steps, eta, gamma, get_weight(divergence), auto_step, clip, solver, rtol, atol)


@dataclass(frozen=True)
class Problem:
    """What a solver may evaluate: the models, the chunk size of their passes, the noise source."""

    generator: Optional[Model]
    critic: Model
    batch_size: Optional[int] = None
    rng: Optional[torch.Generator] = None


class _FlowStep:
    """The step rule shared by the solvers: eta and the drift cap resolved from the first step."""

    name = "flow"

    def __init__(self, settings: FlowSettings):
        self.weight, self.gamma = settings.weight, settings.gamma
        self.eta, self.auto_step, self.clip = settings.eta, settings.auto_step, settings.clip
        self.cap: float | None = None
        self.hint = ""

    def start(self, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> dict:
        self.eta, self.cap = resolve_step(self.eta, self.auto_step, self.clip, self.weight, logits, grad)
        self.hint = f" (eta={self.eta:.4g}, drift cap {self.cap}): use a smaller eta, or keep the cap clip"
        return {"eta": self.eta, "cap": self.cap, "gamma": self.gamma}

    def rescale(self, factor: float) -> None:
        """Multiply the step size eta by ``factor`` from the next step on (a stop rule that steers the
        flow asks for it, :meth:`dgflow.stopping.DataMatch.steer`); the drift cap is a rate and stays."""
        self.eta *= factor


class EulerMaruyama(_FlowStep):
    """z <- z + eta * s(d) grad d (drift capped at ``cap``) + sqrt(2 gamma eta) xi, xi ~ N(0, I)."""

    name = "euler"

    def __init__(self, settings: FlowSettings, rng: torch.Generator | None):
        super().__init__(settings)
        self.rng = rng
        self.noise_scale = 0.0

    def start(self, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> dict:
        params = super().start(state, logits, grad)
        self.noise_scale = math.sqrt(2.0 * self.gamma * self.eta)
        return params

    def rescale(self, factor: float) -> None:
        super().rescale(factor)
        self.noise_scale = math.sqrt(2.0 * self.gamma * self.eta)  # the SDE's noise for the new step

    def __call__(self, step: int, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        # The new state takes the drift's memory and the noise is scaled and added in place: fewer
        # (N, ...) temporaries a step, same numbers (delta + state == state + delta exactly).
        new = drift(self.weight, logits, grad, self.eta, self.cap).add_(state)
        if self.noise_scale > 0:
            new.add_(torch.randn(new.shape, generator=self.rng, device=new.device,
                                 dtype=new.dtype).mul_(self.noise_scale))
        return new


class OdeInterval(_FlowStep):
    """The deterministic flow (gamma = 0) integrated by a torchdiffeq method over each step's interval."""

    def __init__(self, settings: FlowSettings, generator: Optional[Model], critic: Model,
                 batch_size: int | None = None):
        super().__init__(settings)
        self.name = settings.solver
        self.method = "euler" if settings.solver == "euler_ode" else settings.solver
        self.rtol, self.atol = settings.rtol, settings.atol
        self.generator, self.critic, self.batch_size = generator, critic, batch_size

    def __call__(self, step: int, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        from torchdiffeq import odeint

        def rhs(t: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
            d, g, _ = logits_and_grad(self.generator, self.critic, zc)
            check_finite(step, d.float(), g)
            return drift(self.weight, d.float(), g, 1.0, self.cap)

        times = torch.tensor([step, step + 1], dtype=torch.float64, device=state.device).mul_(self.eta)
        times = times.to(state.dtype)
        return torch.cat([odeint(rhs, state[s], times, method=self.method, rtol=self.rtol, atol=self.atol)[-1]
                          for s in chunk_slices(len(state), self.batch_size)])


def _euler(settings: FlowSettings, problem: Problem) -> EulerMaruyama:
    return EulerMaruyama(settings, problem.rng)


def _ode(settings: FlowSettings, problem: Problem) -> OdeInterval:
    return OdeInterval(settings, problem.generator, problem.critic, problem.batch_size)


#: solver name -> factory ``(settings, problem) -> update`` (an :class:`dgflow.engine.Update`)
SOLVERS: dict[str, Callable[[FlowSettings, Problem], _FlowStep]] = {"euler": _euler,
                                                                    **{m: _ode for m in ODE_METHODS}}
