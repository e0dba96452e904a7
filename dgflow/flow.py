"""Discriminator Gradient Flow: the refine() entry point (DESIGN.md §1).

Euler-Maruyama discretisation of the McKean-Vlasov SDE in latent space,

    z_{k+1} = z_k + eta * s(d(z_k)) * grad_z d(z_k) + sqrt(2 gamma eta) * xi_k,

with d(z) = critic(generator(z)) the logit ~ log mu/rho and s the divergence's weight
(:mod:`dgflow.divergences`), which is evaluated on the detached logit and never differentiated.
With ``gamma = 0`` the flow is the ODE dz/dt = s(d) grad d, which may also be integrated by any
torchdiffeq solver (``solver="dopri5"``). The step rule (``eta="auto"``, the drift cap ``clip``)
lives in :mod:`dgflow.steps`, stopping rules in :mod:`dgflow.stopping`.
"""
from __future__ import annotations

import inspect
import logging
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
from tqdm.auto import tqdm

from ._checks import (as_logits, check_batch_size, check_float, check_int, check_latents, make_rng)
from .divergences import DivergenceLike, Weight, get_weight
from .models.protocol import modules_of
from .steps import AUTO_STEP, drift, resolve_step

logger = logging.getLogger("dgflow")

Model = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[..., None]
Stop = Callable[[int, torch.Tensor, torch.Tensor], bool]
ODE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "rk4", "midpoint", "euler_ode")


@contextmanager
def frozen(*models: object, eval_mode: bool = True) -> Iterator[None]:
    """Turn off parameter gradients (and train mode) of the models' modules; restore them on exit.

    Restores every parameter's ``requires_grad`` and every submodule's ``training`` flag exactly.
    """
    mods, seen = [], set()
    for model in models:
        for m in modules_of(model):
            if id(m) not in seen:
                seen.add(id(m))
                mods.append(m)
    params = {id(p): (p, p.requires_grad) for m in mods for p in m.parameters()}
    modes = {id(s): (s, s.training) for m in mods for s in m.modules()}
    try:
        for p, _ in params.values():
            p.requires_grad_(False)
        if eval_mode:
            for m in mods:
                m.eval()
        yield
    finally:
        for p, flag in params.values():
            p.requires_grad_(flag)
        for s, flag in modes.values():
            s.training = flag


def logits_and_grad(generator: Optional[Model], critic: Model, z: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """d(z) = critic(generator(z)) of shape (N,) and its gradient w.r.t. z (same shape as z)."""
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        x = zg if generator is None else generator(zg)
        d = as_logits(critic(x), len(z))
        if d.requires_grad:
            (g,) = torch.autograd.grad(d.sum(), zg, allow_unused=True)
        else:
            g = None
    return d.detach(), (torch.zeros_like(z) if g is None else g)


def _chunked_logits_and_grad(generator, critic, state: torch.Tensor, chunks: list[slice]
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`logits_and_grad` over chunks of ``state``; logits in float32."""
    if len(chunks) == 1:  # one chunk: no buffers to fill, no copies
        d, g = logits_and_grad(generator, critic, state)
        return d.float(), g
    logits = torch.empty(len(state), device=state.device, dtype=torch.float32)
    grad = torch.empty_like(state)
    for s in chunks:
        d, g = logits_and_grad(generator, critic, state[s])
        logits[s] = d.float()
        grad[s] = g
    return logits, grad


@torch.no_grad()
def chunked_logits(generator: Optional[Model], critic: Model, z: torch.Tensor,
                   batch_size: int | None = None) -> torch.Tensor:
    """d(G(z)) of shape (N,) in float32, computed chunk by chunk without autograd.

    The caller is responsible for the models' mode (wrap in :func:`dgflow.flow.frozen`).
    Raises ``FloatingPointError`` on non-finite logits.
    """
    out = torch.empty(len(z), device=z.device, dtype=torch.float32)
    for s in _chunks(len(z), batch_size):
        x = z[s] if generator is None else generator(z[s])
        out[s] = as_logits(critic(x), len(x)).float()
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError(f"critic produced non-finite logits for {int((~torch.isfinite(out)).sum())} "
                                 f"of {len(out)} samples")
    return out


def record_steps(steps: int, every: int) -> list[int]:
    """The steps ``refine(..., steps=steps, return_trajectory=every)`` records: 0, every, ..., steps."""
    return sorted(set(range(0, steps + 1, every)) | {steps})


def _stopped(stop: Stop | None, step: int, state: torch.Tensor, logits: torch.Tensor) -> bool:
    if stop is None or not bool(stop(step, state, logits)):
        return False
    logger.info("dgflow: stop rule ended the flow at step %d", step)
    return True


def _chunks(n: int, batch_size: int | None) -> list[slice]:
    b = n if batch_size is None else batch_size
    return [slice(i, min(i + b, n)) for i in range(0, n, max(b, 1))]


def _check_finite(step: int, logits: torch.Tensor, grad: torch.Tensor) -> None:
    # Fast path, one reduction per tensor: a sum is finite only if every term is (a NaN or inf
    # term makes it NaN or inf); a finite sum that overflows just falls through to the full check.
    if bool(torch.isfinite(logits.sum() + grad.sum())):
        return
    ok_d = torch.isfinite(logits)
    ok = ok_d & torch.isfinite(grad).flatten(1).all(1)
    if not bool(ok.all()):
        what = "logits" if not bool(ok_d.all()) else "logit gradients"
        bad = int((~ok).sum())
        raise FloatingPointError(f"critic produced non-finite {what} at step {step} for {bad} of "
                                 f"{len(ok)} samples (first bad sample index {int((~ok).nonzero()[0])})")


def step_stats(z: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor,
               delta: torch.Tensor | None = None) -> dict[str, float]:
    """Diagnostics of one step: logit mean/std, median |grad d|, mean step length, ||z||/sqrt(dim)."""
    gn = grad.flatten(1).norm(dim=1)
    out = {"d_mean": float(logits.mean()), "d_std": float(logits.std()) if len(logits) > 1 else 0.0,
           "grad_median": float(gn.median()),
           "z_radius": float(z.flatten(1).norm(dim=1).mean() / math.sqrt(z[0].numel()))}
    if delta is not None:
        out["step_mean"] = float(delta.flatten(1).norm(dim=1).mean())
    return out


def _make_callback(callback: Callback | None):
    if callback is None:
        return None
    try:
        params = inspect.signature(callback).parameters.values()
        takes_grad = any(p.name == "grad" or p.kind == p.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):  # builtins without a signature
        takes_grad = False
    if takes_grad:
        return lambda step, z, d, g: callback(step, z, d, grad=g)
    return lambda step, z, d, g: callback(step, z, d)


def refine(
    generator: Optional[Model],
    critic: Model,
    z: torch.Tensor,
    steps: int = 25,
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
    stop: Stop | None = None,
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
        steps: number of flow steps (``0`` returns a copy of ``z``).
        eta: step size of the flow (time per step), or ``"auto"``: chosen once, from the
            first step, so that the median drift length ||eta * s(d) grad d|| over the batch is
            ``auto_step`` (see :func:`dgflow.steps.auto_eta`). This makes the step invariant to the
            critic's scale. The default: it beat fixed steps on all 14 bases of
            ``benchmarks/step_rules.py``; the paper's fixed value is ``eta=0.1`` (with ``clip=None``).
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
            cap measured (``benchmarks/step_rules.py``).
        stop: optional predicate ``stop(step, z_step, logits) -> bool`` checked before each
            update; when it returns True the flow ends there and ``z_step`` is returned (so
            ``steps`` becomes a maximum). :class:`dgflow.stopping.LogitMatch` stops once the
            critic scores the batch like held-out real data.

    The models come back exactly as they were: parameters, ``requires_grad`` flags and
    train/eval modes are restored and no parameter ``.grad`` is accumulated.

    Raises:
        FloatingPointError: if the critic's logits or gradients become non-finite (names the step).
    """
    z = check_latents(z)
    steps = check_int(steps, "steps")
    if isinstance(eta, str):
        if eta != "auto":
            raise ValueError(f"eta must be a positive number or 'auto', got {eta!r}")
        check_float(auto_step, "auto_step", positive=True)
    else:
        eta = check_float(eta, "eta", positive=True)
    if clip is not None:
        clip = check_float(clip, "clip", positive=True)
    if stop is not None and not callable(stop):
        raise TypeError(f"stop must be callable (step, z, logits) -> bool or None, got {type(stop).__name__}")
    gamma = check_float(gamma, "gamma", nonnegative=True)
    weight = get_weight(divergence)
    batch_size = check_batch_size(batch_size)
    if generator is not None and not callable(generator):
        raise TypeError(f"generator must be callable (z -> x) or None, got {type(generator).__name__}")
    if not callable(critic):
        raise TypeError(f"critic must be callable (x -> logits), got {type(critic).__name__}")
    if solver != "euler":
        if solver not in ODE_SOLVERS:
            raise ValueError(f"solver: unknown solver {solver!r}; use 'euler' or one of {ODE_SOLVERS}")
        if gamma != 0:
            raise ValueError(f"solver={solver!r} integrates the deterministic flow: set gamma=0 "
                             f"(got gamma={gamma}) or use solver='euler'")
    every = 0 if return_trajectory is False else (1 if return_trajectory is True
                                                  else check_int(return_trajectory, "return_trajectory", 1))
    rng = make_rng(generator_rng, z.device)
    cb = _make_callback(callback)
    record = record_steps(steps, every) if every else []

    with frozen(generator, critic, eval_mode=eval_mode):
        run = _euler if solver == "euler" else _odeint
        out, traj = run(generator, critic, z.detach().clone(), steps, eta, gamma, weight, batch_size,
                        rng, cb, progress, record, solver, rtol, atol, auto_step, clip, stop)
    if every:
        return out, torch.stack(traj)
    return out


def _euler(generator, critic, state, steps, eta, gamma, weight: Weight, batch_size, rng, cb, progress,
           record, solver, rtol, atol, auto_step, clip, stop):
    traj = [state.clone()] if 0 in record else []
    chunks = _chunks(len(state), batch_size)
    bar = tqdm(range(steps), disable=not progress, desc="dgflow", leave=False)
    for step in bar:
        logits, grad = _chunked_logits_and_grad(generator, critic, state, chunks)
        _check_finite(step, logits, grad)
        if step == 0:
            eta, cap = resolve_step(eta, auto_step, clip, weight, logits, grad)
            noise_scale = math.sqrt(2.0 * gamma * eta)
        if cb is not None:
            cb(step, state, logits, grad)
        if _stopped(stop, step, state, logits):
            if record and step not in record:  # the last state belongs to the trajectory
                traj.append(state.clone())
            bar.close()
            return state, traj
        delta = drift(weight, logits, grad, eta, cap)
        if progress:
            bar.set_postfix({k: f"{v:.3g}" for k, v in step_stats(state, logits, grad, delta).items()})
        # The new state takes delta's memory and the noise is scaled and added in place: fewer
        # (N, ...) temporaries a step, same numbers (delta + state == state + delta exactly).
        state = delta.add_(state)
        if noise_scale > 0:
            state.add_(torch.randn(state.shape, generator=rng, device=state.device,
                                   dtype=state.dtype).mul_(noise_scale))
        if step + 1 in record:
            traj.append(state.clone())
    return state, traj


def _odeint(generator, critic, state, steps, eta, gamma, weight: Weight, batch_size, rng, cb, progress,
            record, solver, rtol, atol, auto_step, clip, stop):
    from torchdiffeq import odeint

    chunks = _chunks(len(state), batch_size)
    cap = None
    if isinstance(eta, str) or clip is not None:
        logits, grad = _chunked_logits_and_grad(generator, critic, state, chunks)
        _check_finite(0, logits, grad)
        eta, cap = resolve_step(eta, auto_step, clip, weight, logits, grad)

    times = torch.arange(steps + 1, dtype=torch.float64, device=state.device) * eta
    times = times.to(state.dtype)
    paths = []
    for s in tqdm(chunks, disable=not progress, desc="dgflow ode", leave=False):
        def rhs(t, zc):
            d, g = logits_and_grad(generator, critic, zc)
            _check_finite(int(round(float(t) / eta)), d.float(), g)
            return drift(weight, d.float(), g, 1.0, cap)

        method = "euler" if solver == "euler_ode" else solver
        paths.append(odeint(rhs, state[s], times, method=method, rtol=rtol, atol=atol))
    path = torch.cat(paths, dim=1)  # (steps + 1, N, ...)
    end = steps
    if cb is not None or stop is not None:  # both see the solution at the grid points
        for step in range(steps):
            logits, grad = _chunked_logits_and_grad(generator, critic, path[step], chunks)
            if cb is not None:
                cb(step, path[step], logits, grad)
            if _stopped(stop, step, path[step], logits):
                end = step
                break
    keep = [k for k in record if k <= end]
    if record and end not in keep:
        keep.append(end)
    return path[end].clone(), [path[k].clone() for k in keep]


def refine_defaults(*names: str) -> dict:
    """:func:`refine`'s default values of the named arguments (the one source for the CLI, demo and
    benchmarks)."""
    params = inspect.signature(refine).parameters
    return {k: params[k].default for k in names}


def generate(generator: Model, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Decode latents under ``no_grad`` in chunks, models in eval mode (restored afterwards)."""
    z = check_latents(z)
    batch_size = check_batch_size(batch_size)
    with frozen(generator), torch.no_grad():
        return torch.cat([generator(z[s]) for s in _chunks(len(z), batch_size)]) if len(z) else generator(z)
