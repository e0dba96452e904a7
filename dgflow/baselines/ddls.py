"""Discriminator Driven Latent Sampling (Che et al., NeurIPS 2020), docs/design.md §2.

Unadjusted Langevin dynamics on the latent energy

    E(z) = ||z||^2 / 2 - d(G(z)),    z <- z - (eps / 2) grad E(z) + sqrt(eps) xi,   xi ~ N(0, I),

whose stationary law (as eps -> 0) is proportional to p0(z) exp(d(G(z))), p0 = N(0, I): with
d = log mu/rho it pushes the generator's distribution to the data distribution.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .._checks import check_batch_size, check_float, check_int, check_latents, check_models, make_rng
from ..engine import Callback, Model, RunInfo, run


class Langevin:
    """One DDLS step: z <- z - (eps / 2) (z - grad d) + sqrt(eps) xi."""

    name = "ddls"

    def __init__(self, eps: float, rng: torch.Generator | None):
        self.eps, self.rng = eps, rng
        self.hint = f" (eps={eps:.4g}): use a smaller eps"

    def start(self, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> dict:
        return {"eps": self.eps}

    def __call__(self, step: int, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        delta = -0.5 * self.eps * (state - grad)
        noise = torch.randn(state.shape, generator=self.rng, device=state.device, dtype=state.dtype)
        return state + delta + math.sqrt(self.eps) * noise


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
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, RunInfo]:
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
        return_info: also return a :class:`dgflow.engine.RunInfo` (per-step diagnostics).

    The models come back unchanged and no parameter gradient is accumulated.
    """
    z = check_latents(z)
    steps = check_int(steps, "steps")
    eps = check_float(eps, "eps", positive=True)
    batch_size = check_batch_size(batch_size)
    check_models(generator, critic)
    update = Langevin(eps, make_rng(generator_rng, z.device))
    out, _, info = run(update, generator, critic, z, steps, batch_size=batch_size, callback=callback,
                       progress=progress, eval_mode=eval_mode, diagnostics=return_info)
    return (out, info) if return_info else out
