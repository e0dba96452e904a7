"""Discriminator Driven Latent Sampling (Che et al., NeurIPS 2020), DESIGN.md §2.

Unadjusted Langevin dynamics on the latent energy

    E(z) = ||z||^2 / 2 - d(G(z)),    z <- z - (eps / 2) grad E(z) + sqrt(eps) xi,   xi ~ N(0, I),

whose stationary law (as eps -> 0) is proportional to p0(z) exp(d(G(z))), p0 = N(0, I): with
d = log mu/rho it pushes the generator's distribution to the data distribution.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from tqdm.auto import tqdm

from .._checks import check_batch_size, check_float, check_int, check_latents, make_rng
from ..flow import (Callback, _check_finite, _chunked_logits_and_grad, _chunks, _make_callback, frozen,
                    step_stats)
from ._common import Model, check_models


def ddls(
    generator: Optional[Model],
    critic: Model,
    z: torch.Tensor,
    steps: int = 25,
    eps: float = 0.01,
    *,
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    eval_mode: bool = True,
) -> torch.Tensor:
    """Run ``steps`` Langevin steps of size ``eps`` on E(z) = ||z||²/2 − d(G(z)); returns latents.

    Args:
        generator: callable z -> x, or ``None`` (``z`` is the sample, identity generator).
        critic: callable x -> logit d of shape (N,) or (N, 1), larger on data.
        z: starting latents (N, ...), usually prior draws; result has the same device/dtype.
        steps: number of Langevin steps (``0`` returns a copy).
        eps: step size (the noise has variance ``eps`` per step).
        batch_size: chunk size for the forward/backward passes; results do not depend on it.
        generator_rng: ``torch.Generator`` on ``z``'s device or int seed for the noise.
        callback: ``callback(step, z_step, logits)`` before each update (also ``grad=`` if it
            accepts that keyword), as in :func:`dgflow.refine`.
        progress: tqdm bar with per-step diagnostics.
        eval_mode: run the models in eval mode; their flags are restored afterwards.

    The models come back unchanged and no parameter gradient is accumulated.
    """
    z = check_latents(z)
    steps = check_int(steps, "steps")
    eps = check_float(eps, "eps", positive=True)
    batch_size = check_batch_size(batch_size)
    check_models(generator, critic)
    rng = make_rng(generator_rng, z.device)
    cb = _make_callback(callback)
    chunks = _chunks(len(z), batch_size)
    state = z.detach().clone()
    with frozen(generator, critic, eval_mode=eval_mode):
        bar = tqdm(range(steps), disable=not progress, desc="ddls", leave=False)
        for step in bar:
            logits, grad = _chunked_logits_and_grad(generator, critic, state, chunks)
            _check_finite(step, logits, grad)
            if cb is not None:
                cb(step, state, logits, grad)
            delta = -0.5 * eps * (state - grad)
            if progress:
                bar.set_postfix({k: f"{v:.3g}" for k, v in step_stats(state, logits, grad, delta).items()})
            noise = torch.randn(state.shape, generator=rng, device=state.device, dtype=state.dtype)
            state = state + delta + math.sqrt(eps) * noise
    return state
