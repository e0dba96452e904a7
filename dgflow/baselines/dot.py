"""Discriminator Optimal Transport in latent space (Tanaka, NeurIPS 2019), docs/design.md §2.

Each latent z_y is moved to an approximate minimiser of

    c(z) = ||z - z_y||_2 - d(G(z)) / K_eff,

K_eff = max over sample pairs |d(G(z1)) - d(G(z2))| / ||z1 - z2|| (the critic's effective
Lipschitz constant in latent space), by a few Adam steps. The norm is smoothed as
sqrt(||z - z_y||^2 + delta) so its gradient is 0, not NaN, at the start z = z_y.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_batch_size, check_float, check_int, check_latents, check_models, make_rng
from ..engine import Callback, Model, RunInfo, run
from ..passes import logits

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
    d = logits(generator, critic, torch.cat([z[i], z[j]]), batch_size, eval_mode=eval_mode).double()
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
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, RunInfo]:
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
        return_info: also return a :class:`dgflow.engine.RunInfo` (``params['k_eff']``, per-step
            diagnostics).
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
    out, _, info = run(AdamTransport(z, k_eff, lr, betas), generator, critic, z, steps, batch_size=batch_size,
                       callback=callback, progress=progress, eval_mode=eval_mode, diagnostics=return_info)
    return (out, info) if return_info else out


class AdamTransport:
    """One DOT step: Adam on ||z − z_y|| − d(G(z))/K_eff, every sample on its own coordinates."""

    name = "dot"

    def __init__(self, start: torch.Tensor, k_eff: float, lr: float, betas: tuple[float, float]):
        self.origin, self.k_eff, self.lr = start.detach().clone(), k_eff, lr
        self.param = self.origin.clone()
        self.opt = torch.optim.Adam([self.param], lr=lr, betas=betas)
        self.hint = f" (lr={lr:.4g}, K_eff={k_eff:.4g}): use a smaller lr"

    def start(self, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> dict:
        return {"k_eff": self.k_eff, "lr": self.lr}

    def __call__(self, step: int, state: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        self.param.grad = transport_grad(state, self.origin) - grad / self.k_eff
        self.opt.step()
        return self.param.detach().clone()


def transport_grad(z: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Gradient of sqrt(||z − start||² + δ) w.r.t. z, per sample (0 at z = start)."""
    diff = z - start
    norm = (diff.flatten(1).pow(2).sum(1) + NORM_DELTA).sqrt()
    return diff / norm.view(-1, *([1] * (z.dim() - 1)))


def dot_objective(generator: Optional[Model], critic: Model, z: torch.Tensor, start: torch.Tensor,
                  k_eff: float, batch_size: int | None = None, eval_mode: bool = True) -> torch.Tensor:
    """Per-sample DOT cost ||z − start|| − d(G(z))/K_eff, shape (N,) (for diagnostics and tests)."""
    d = logits(generator, critic, z, batch_size, eval_mode=eval_mode)
    return (z - start).flatten(1).norm(dim=1).float() - d / k_eff
