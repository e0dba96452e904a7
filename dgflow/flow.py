"""Discriminator Gradient Flow: the refine() entry point (docs/design.md §1).

Euler-Maruyama discretisation of the McKean-Vlasov SDE in latent space,

    z_{k+1} = z_k + eta * s(d(z_k)) * grad_z d(z_k) + sqrt(2 gamma eta) * xi_k,

with d(z) = critic(generator(z)) the logit ~ log mu/rho and s the divergence's weight
(:mod:`dgflow.divergences`), which is evaluated on the detached logit and never differentiated.
With ``gamma = 0`` the flow is the ODE dz/dt = s(d) grad d, which may also be integrated by any
torchdiffeq solver (``solver="dopri5"``). The solvers and their settings live in
:mod:`dgflow.solvers`, the step loop they share with the baselines in :mod:`dgflow.engine`, the
step rule (``eta="auto"``, the drift cap ``clip``) in :mod:`dgflow.steps`, stopping rules in
:mod:`dgflow.stopping`.
"""
from __future__ import annotations

import inspect
import time
from typing import Mapping, Optional

import torch

from ._checks import check_batch_size, check_latents, check_models, make_rng
from .divergences import DivergenceLike
from .engine import Callback, Model, Stop, check_stop, make_callback, run, trajectory_every
from .passes import generate
from .solvers import SOLVERS, Problem, make_settings
from .steps import AUTO_STEP
from .stopping import AtChance, DataMatch

__all__ = ["refine", "generate", "check_refine_kwargs", "refine_defaults", "resolve_stop", "resolve_steps", "PAPER",
           "DEFAULT_STEPS", "DATA_STEPS"]

#: ``steps=None``: the budget without real data, and with ``real=`` data (docs/design.md §8.3)
DEFAULT_STEPS = 25
DATA_STEPS = 100

# The DGflow authors' scheme (docs/design.md §1, §7): ``refine(G, D, z, **dgflow.PAPER)`` is their
# update exactly, a fixed step, no drift cap and no stop rule (Glow: ``{**dgflow.PAPER, "eta": 0.05}``).
PAPER = {"steps": 25, "eta": 0.1, "gamma": 0.01, "divergence": "kl", "clip": None, "stop": None}


def refine(
    generator: Optional[Model],
    critic: Model,
    z: torch.Tensor,
    steps: int | None = None,
    eta: float | str = "auto",
    gamma: float = 0.01,
    divergence: DivergenceLike = "kl",
    *,
    auto_step: float = AUTO_STEP,
    solver: str = "euler",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    return_trajectory: bool | int = False,
    callback: Callback | None = None,
    progress: bool = False,
    eval_mode: bool = True,
    clip: float | None = 1.0,
    stop: Stop | str | None = "auto",
    real: torch.Tensor | None = None,
    return_info: bool = False,
):
    """Refine latents ``z`` by Discriminator Gradient Flow; returns the refined latents.

    Args:
        generator: callable z -> x (any ``nn.Module``, function or bound method), or ``None``
            for data-space refinement, where ``z`` is the sample itself.
        critic: callable x -> logit of shape (N,) or (N, 1), larger on data. For a
            non-saturating or hinge discriminator pass its raw pre-sigmoid output; for a WGAN
            critic its output (a log density ratio up to scale). See :mod:`dgflow.critics` for
            other conventions (probabilities, flipped sign, temperature).
        z: latents (N, ...) on any device, floating dtype; the result has the same device/dtype.
        steps: number of flow steps, the budget of a stop rule (``0`` returns a copy of ``z``).
            ``None`` (the default): :data:`DEFAULT_STEPS` (25); with ``real`` data and
            ``stop="auto"``, :data:`DATA_STEPS` (100), since the data, not the budget, then ends the
            flow (on every development base it ended before step 25 on its own).
        eta: step size of the flow (time per step), or ``"auto"``: chosen once, from the
            first step, so that the median drift length ||eta * s(d) grad d|| over the batch is
            ``auto_step`` (see :func:`dgflow.steps.auto_eta`). This makes the step invariant to the
            critic's scale. The default: it beat fixed steps on all 14 bases of
            ``benchmarks/step_rules.py``. A number is the step size itself; the drift cap ``clip``
            still applies to it, so the paper's exact update is ``eta=0.1, clip=None, stop=None``
            (:data:`dgflow.PAPER`).
            (the cap improved fixed eta 0.1 and 0.01 under every stopping rule measured:
            ``benchmarks/results/fixed_eta_cap.md``).
        gamma: entropy weight; the diffusion adds sqrt(2 gamma eta) N(0, I) each step.
        auto_step: median latent step length targeted by ``eta="auto"``.
        divergence: ``"kl"``, ``"js"``, ``"logd"``, ``"rkl"``, ``"pearson"`` or a callable f(r)
            whose weight f''(r) r is taken by autograd.
        solver: ``"euler"`` (Euler-Maruyama) or, with ``gamma=0``, a torchdiffeq method
            (``"dopri5"``, ...) integrating the deterministic flow over time ``steps * eta``.
        rtol, atol: tolerances of an adaptive ``solver``.
        batch_size: chunk size for the forward/backward passes, so only one chunk's
            activations are alive at once. Euler results are identical for any chunking.
        generator_rng: ``torch.Generator`` (on ``z``'s device) or int seed for the noise.
        return_trajectory: ``True`` or ``k``: also return the states at steps 0, k, 2k, ...
            and the last step, stacked as a tensor (T, N, ...) on ``z``'s device.
        callback: called as ``callback(step, z_step, logits)`` for step = 0..steps-1 with the
            state and its logits d(z_step) before the update; if it accepts a ``grad`` keyword,
            also ``grad=`` the gradient of d w.r.t. z.
        progress: show a tqdm bar with per-step diagnostics.
        eval_mode: run the models in eval mode (no batch-norm statistics or spectral-norm
            power iterations are updated); their modes are restored afterwards.
        clip: cap every sample's drift length ||s(d) grad d|| at ``clip`` times the median
            drift length of the first step (``None``: no cap, the paper's scheme). Scale-free like
            ``eta="auto"``; it stops the few samples with a huge gradient (common with
            non-saturating critics) from jumping across the latent space in one step. The
            default 1 (with ``eta="auto"``: no sample's drift exceeds ``auto_step``) was the best
            cap measured (``benchmarks/step_rules.py``). It applies to a numeric ``eta`` too
            (no sample's drift then exceeds eta times the first step's median drift).
        stop: when to end the flow before ``steps`` (which is then a budget). ``"auto"`` (the
            default): with ``real`` data :class:`dgflow.stopping.DataMatch` (the energy distance of the
            decoded samples to ``real``, images through a fixed untrained CNN, every 5 steps; the
            lowest state is returned, on images the latest no farther from the data than the start nor
            than twice the lowest;
            the checks also steer the step: it doubles after a check that improved, up to 8 times
            the first, and after one beyond that bound the flow goes back to the best state at a
            quarter of the step), without
            :class:`dgflow.stopping.AtChance` (a critic at chance on the batch, estimated gain below
            0.02 nats, leaves it unchanged; otherwise all ``steps`` run, and on samples that are not
            images the start is returned if by the end the batch's mean logit has risen twice its
            estimated gain, as far past the critic's estimate of the data's as it started short of
            it, while that gain has not fallen: the critic contradicting itself). ``None``: exactly
            ``steps`` steps, the paper's scheme. Or a predicate ``stop(step, z_step, logits) ->
            bool`` checked before each update; when it returns True the flow ends there and
            ``z_step`` is returned (e.g. :class:`dgflow.stopping.LogitMatch`). The choice of rule
            is measured in ``benchmarks/safe_defaults.py`` (docs/design.md §8.3).
        real: held-out real samples (M, ...) in the generator's output space, for ``stop="auto"``
            (a trajectory still holds every state the flow reached, also those after the one returned).
        return_info: also return a :class:`dgflow.engine.RunInfo`: the eta and drift cap chosen,
            the step a ``stop`` rule fired at and why, the updates run and per-step diagnostics.

    Returns:
        The refined latents; with ``return_trajectory`` ``(z, trajectory)``, with ``return_info``
        ``(z, info)``, with both ``(z, trajectory, info)``.

    The models come back exactly as they were: parameters, ``requires_grad`` flags and
    train/eval modes are restored and no parameter ``.grad`` is accumulated. This holds for a
    model given as a function, lambda or ``functools.partial`` too (:func:`dgflow.models.frozen`).

    Raises:
        FloatingPointError: if the critic's logits or gradients, or the updated latents, become
            non-finite (names the step).
        ValueError: if critic(generator(z)) has no gradient path to z (a forward under
            ``torch.no_grad()`` or a detached output), or for an invalid argument (named).
    """
    z = check_latents(z)
    steps = resolve_steps(steps, stop, real)
    settings = make_settings(steps, eta, gamma, divergence, auto_step=auto_step, clip=clip, solver=solver,
                             rtol=rtol, atol=atol)
    batch_size = check_batch_size(batch_size)
    check_models(generator, critic)
    t_setup = time.perf_counter()
    stop = resolve_stop(stop, real, generator, batch_size, critic)
    t_setup = time.perf_counter() - t_setup  # the stop rule's setup (DataMatch: the real samples' distances)
    every = trajectory_every(return_trajectory)
    problem = Problem(generator, critic, batch_size, make_rng(generator_rng, z.device))
    update = SOLVERS[settings.solver](settings, problem)
    out, traj, info = run(update, generator, critic, z, settings.steps, batch_size=batch_size, callback=callback,
                          stop=stop, every=every, progress=progress, eval_mode=eval_mode,
                          diagnostics=bool(return_info))
    if stop is not None:
        info.seconds += t_setup
        info.stop_seconds += t_setup
    result = (out,) + ((torch.stack(traj),) if every else ()) + ((info,) if return_info else ())
    return result[0] if len(result) == 1 else result


def resolve_steps(steps: int | None, stop: object, real: object) -> int:
    """The step budget of :func:`refine`'s ``steps``: ``None`` is :data:`DATA_STEPS` when real data
    ends the flow (``stop="auto"`` with ``real``), else :data:`DEFAULT_STEPS`."""
    if steps is not None:
        return steps
    return DATA_STEPS if real is not None and isinstance(stop, str) else DEFAULT_STEPS


def resolve_stop(stop: Stop | str | None, real: torch.Tensor | None, generator: Optional[Model],
                 batch_size: int | None, critic: Optional[Model] = None) -> Stop | None:
    """The stop rule of :func:`refine`'s ``stop`` and ``real`` arguments (a fresh one per run)."""
    if isinstance(stop, str):
        if stop != "auto":
            raise ValueError(f"stop must be 'auto', None or a callable (step, z, logits) -> bool, got {stop!r}")
        if real is not None:
            return DataMatch(real, generator, critic, batch_size=batch_size)
        return AtChance(critic=critic, generator=generator, batch_size=batch_size)
    if real is not None:
        raise ValueError("real is read by stop='auto' only; with another stop rule give the real data to that rule")
    return check_stop(stop)


def check_refine_kwargs(kwargs: Mapping[str, object]) -> None:
    """Check keyword arguments of :func:`refine` without running it, with refine's own checks and
    messages (e.g. before a long sharded run writes anything)."""
    params = inspect.signature(refine).parameters
    unknown = sorted(k for k in kwargs if k not in params or k in ("generator", "critic", "z"))
    if unknown:
        raise TypeError(f"refine() got unknown keyword arguments {unknown}")
    settings = {k: kwargs[k] for k in inspect.signature(make_settings).parameters if k in kwargs}
    if "steps" in settings:
        settings["steps"] = resolve_steps(settings["steps"], kwargs.get("stop", "auto"), kwargs.get("real"))
    make_settings(**settings)
    resolve_stop(kwargs.get("stop", "auto"), kwargs.get("real"), None, None)
    check_batch_size(kwargs.get("batch_size"))
    make_callback(kwargs.get("callback"))
    trajectory_every(kwargs.get("return_trajectory", False))


def refine_defaults(*names: str) -> dict:
    """:func:`refine`'s default values of the named arguments (the one source for the CLI, demo and
    benchmarks)."""
    params = inspect.signature(refine).parameters
    return {k: params[k].default for k in names}
