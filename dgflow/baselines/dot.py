"""Discriminator Optimal Transport in latent space (Tanaka, NeurIPS 2019), DESIGN.md §2.

Each latent z_y is moved to an approximate minimiser of

    c(z) = ||z - z_y||_2 - d(G(z)) / K_eff,

K_eff = max over sample pairs |d(G(z1)) - d(G(z2))| / ||z1 - z2|| (the critic's effective
Lipschitz constant in latent space), by a few Adam steps. The norm is smoothed as
sqrt(||z - z_y||^2 + delta) so its gradient is 0, not NaN, at the start z = z_y.
"""
from __future__ import annotations

from typing import Optional

import torch
from tqdm.auto import tqdm

from .._checks import check_batch_size, check_float, check_int, check_latents, make_rng
from ..flow import (Callback, _check_finite, _chunked_logits_and_grad, _chunks, _make_callback, chunked_logits,
                    frozen, step_stats)
from ._common import Model, check_models

#: smoothing inside the square root of the transport cost (squared latent units)
NORM_DELTA = 1e-12


def estimate_k_eff(
    generator: Optional[Model],
    critic: Model,
    z: torch.Tensor,
    n_pairs: int = 500,
    *,
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    eval_mode: bool = True,
) -> float:
    """K_eff = max over ``n_pairs`` random pairs of rows of ``z`` of |d(G(z1)) − d(G(z2))| / ||z1 − z2||.

    Pairs are drawn uniformly among distinct rows (``generator_rng`` seeds the draw). Raises
    ``ValueError`` if fewer than 2 latents are given or the critic is constant on the pairs.
    """
    z = check_latents(z)
    n_pairs = check_int(n_pairs, "n_pairs", 1)
    batch_size = check_batch_size(batch_size)
    check_models(generator, critic)
    if len(z) < 2:
        raise ValueError(f"z: estimating K_eff needs at least 2 latents, got {len(z)}")
    rng = make_rng(generator_rng, z.device)
    i = torch.randint(0, len(z), (n_pairs,), generator=rng, device=z.device)
    j = (i + torch.randint(1, len(z), (n_pairs,), generator=rng, device=z.device)) % len(z)
    with frozen(generator, critic, eval_mode=eval_mode):
        d = chunked_logits(generator, critic, torch.cat([z[i], z[j]]), batch_size).double()
    dist = (z[i] - z[j]).flatten(1).double().norm(dim=1)
    keep = dist > 0
    k = float(((d[:n_pairs] - d[n_pairs:]).abs()[keep] / dist[keep]).max()) if bool(keep.any()) else 0.0
    if not k > 0:
        raise ValueError("critic is constant on the sampled latent pairs (K_eff = 0): DOT's objective is "
                         "undefined; pass k_eff explicitly or check the critic")
    return k


def dot(
    generator: Optional[Model],
    critic: Model,
    z: torch.Tensor,
    steps: int = 25,
    lr: float = 0.01,
    *,
    k_eff: float | None = None,
    n_pairs: int = 500,
    betas: tuple[float, float] = (0.9, 0.999),
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    eval_mode: bool = True,
) -> torch.Tensor:
    """Move each latent by ``steps`` Adam steps on ||z − z_y|| − d(G(z))/K_eff; returns latents.

    Args:
        generator: callable z -> x, or ``None`` (``z`` is the sample).
        critic: callable x -> logit d of shape (N,) or (N, 1), larger on data.
        z: the starting latents z_y (N, ...); the result has the same device/dtype.
        steps: number of Adam steps (``0`` returns a copy).
        lr: Adam learning rate (latent units per step, roughly).
        k_eff: the critic's effective Lipschitz constant; ``None`` estimates it from
            ``n_pairs`` random pairs of ``z`` (:func:`estimate_k_eff`, seeded by ``generator_rng``).
        betas: Adam's moment decay rates.
        batch_size: chunk size of the forward/backward passes; results do not depend on it
            (Adam's moments are per coordinate, so each sample is optimised independently).
        callback: ``callback(step, z_step, logits)`` before each update (also ``grad=`` the
            gradient of d if it accepts that keyword), as in :func:`dgflow.refine`.
        progress: tqdm bar with per-step diagnostics.
        eval_mode: run the models in eval mode; their flags are restored afterwards.
    """
    z = check_latents(z)
    steps = check_int(steps, "steps")
    lr = check_float(lr, "lr", positive=True)
    batch_size = check_batch_size(batch_size)
    check_models(generator, critic)
    if k_eff is None:
        k_eff = estimate_k_eff(generator, critic, z, n_pairs, batch_size=batch_size,
                               generator_rng=generator_rng, eval_mode=eval_mode)
    k_eff = check_float(k_eff, "k_eff", positive=True)
    cb = _make_callback(callback)
    chunks = _chunks(len(z), batch_size)
    start = z.detach().clone()
    state = start.clone().requires_grad_(False)
    opt = torch.optim.Adam([state], lr=lr, betas=betas)
    with frozen(generator, critic, eval_mode=eval_mode):
        bar = tqdm(range(steps), disable=not progress, desc="dot", leave=False)
        for step in bar:
            logits, grad = _chunked_logits_and_grad(generator, critic, state.detach(), chunks)
            _check_finite(step, logits, grad)
            if cb is not None:
                cb(step, state.detach().clone(), logits, grad)
            state.grad = transport_grad(state.detach(), start) - grad / k_eff
            if progress:
                bar.set_postfix({k: f"{v:.3g}" for k, v in step_stats(state.detach(), logits, grad).items()})
            opt.step()
    return state.detach()


def transport_grad(z: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Gradient of sqrt(||z − start||² + δ) w.r.t. z, per sample (0 at z = start)."""
    diff = z - start
    norm = (diff.flatten(1).pow(2).sum(1) + NORM_DELTA).sqrt()
    return diff / norm.view(-1, *([1] * (z.dim() - 1)))


def dot_objective(generator: Optional[Model], critic: Model, z: torch.Tensor, start: torch.Tensor,
                  k_eff: float, batch_size: int | None = None, eval_mode: bool = True) -> torch.Tensor:
    """Per-sample DOT cost ||z − start|| − d(G(z))/K_eff, shape (N,) (for diagnostics and tests)."""
    with frozen(generator, critic, eval_mode=eval_mode):
        d = chunked_logits(generator, critic, z, batch_size)
    return (z - start).flatten(1).norm(dim=1).float() - d / k_eff
