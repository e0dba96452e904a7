"""Discriminator Rejection Sampling (Azadi et al., ICLR 2019), docs/design.md §2.

With d(x) ~ log mu(x)/rho(x), exact rejection sampling accepts x ~ rho with probability
exp(d(x) - D_M), D_M = max d. DRS estimates D_M as the largest logit seen (a burn-in set, then
raised whenever a larger logit appears) and accepts with probability sigma(F(x)),

    F(x) = d(x) - D_M - log(1 - exp(d(x) - D_M - eps)) - gamma,

which equals exp(d - D_M) for gamma = 0 and eps -> 0 (since sigma(u - log(1 - e^u)) = e^u), and
trades exactness for acceptance when gamma > 0. The paper sets gamma per batch to the 95th
percentile of F (the default here: ``gamma_shift=None``, ``shift_quantile=0.95``).
"""
from __future__ import annotations

from typing import Optional

import torch
from tqdm.auto import tqdm

from .._checks import check_batch_size, check_float, check_int, check_models
from ..models.modules import frozen
from ..passes import logits
from ._common import Model, PriorLike, make_sampler, resolve_rng, uniform


def drs_log_accept(d: torch.Tensor, d_max: torch.Tensor | float, eps: float = 1e-6) -> torch.Tensor:
    """F + gamma = (d − D_M) − log(1 − exp(d − D_M − ε)) for logits d ≤ D_M (float64, stable)."""
    u = d.double() - d_max
    return u - torch.log(-torch.expm1(u - eps))


def drs(
    generator: Optional[Model],
    critic: Model,
    prior: PriorLike | None,
    n: int,
    *,
    burn_in: int = 10_000,
    gamma_shift: float | None = None,
    shift_quantile: float = 0.95,
    eps: float = 1e-6,
    draw_size: int | None = None,
    max_draws: int | None = None,
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    eval_mode: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Draw latents from ``prior`` and keep exactly ``n`` accepted by DRS; returns ``(z, info)``.

    Args:
        generator: callable z -> x, or ``None`` (the prior draws are the samples).
        critic: callable x -> logit d ~ log mu/rho (calibrate a WGAN critic first, e.g. with
            :func:`dgflow.calibration.calibrate`: DRS reads the logit's scale).
        prior: latent size, shape, :class:`~dgflow.models.GaussianPrior` or a sampler ``n -> z``
            (``None`` for an adapted generator that carries its prior).
        n: number of samples to return.
        burn_in: prior draws used only to initialise D_M (the maximum logit).
        gamma_shift: fixed shift gamma; ``None`` sets gamma per draw batch to the
            ``shift_quantile`` quantile of F (the paper's choice); ``0.0`` is plain rejection
            sampling with the estimated bound (exact when D_M is the true maximum).
        shift_quantile: quantile in (0, 1) used when ``gamma_shift`` is None.
        eps: the ε inside the logarithm (keeps F finite at d = D_M).
        draw_size: proposals drawn per round (default ``max(n, 1000)``).
        max_draws: give up with ``RuntimeError`` after this many proposals (default ``1000 n``).
        batch_size: chunk size for generator/critic calls.
        generator_rng: ``torch.Generator`` or int seed for proposals and acceptance draws.
        device: device of the latents (default: the rng's device, else CPU).
        progress: tqdm bar over accepted samples.
        eval_mode: run the models in eval mode; their flags are restored afterwards.

    Returns:
        ``z`` (n, ...) accepted latents in draw order, and ``info`` with ``acceptance_rate``
        (accepted / proposals after burn-in, counting accepts
        beyond ``n`` in the last round), ``proposals``, ``burn_in``, ``generator_evals``
        (burn-in + proposals), ``critic_evals``, ``d_max`` and ``gamma_mean`` (mean shift used).
    """
    check_models(generator, critic)
    n = check_int(n, "n")
    burn_in = check_int(burn_in, "burn_in")
    eps = check_float(eps, "eps", positive=True)
    if gamma_shift is not None:
        gamma_shift = check_float(gamma_shift, "gamma_shift")
    shift_quantile = check_float(shift_quantile, "shift_quantile")
    if not 0.0 < shift_quantile < 1.0:
        raise ValueError(f"shift_quantile must be in (0, 1), got {shift_quantile}")
    draw_size = check_int(max(n, 1000) if draw_size is None else draw_size, "draw_size", 1)
    max_draws = check_int(1000 * max(n, 1) if max_draws is None else max_draws, "max_draws", 1)
    batch_size = check_batch_size(batch_size)
    rng, device = resolve_rng(generator_rng, device)
    sample = make_sampler(prior, generator, rng, device)

    kept: list[torch.Tensor] = []
    n_kept, n_accepted, proposals, gammas = 0, 0, 0, []
    with frozen(generator, critic, eval_mode=eval_mode):
        d_max = torch.tensor(float("-inf"), dtype=torch.float64, device=device)
        if burn_in:
            d_max = logits(generator, critic, sample(burn_in), batch_size, eval_mode=None).double().max()
        bar = tqdm(total=n, disable=not progress, desc="drs", leave=False)
        while n_kept < n:
            if proposals >= max_draws:
                raise RuntimeError(f"drs: only {n_kept} of n={n} samples accepted after max_draws={max_draws} "
                                   f"proposals (acceptance {n_kept / proposals:.2e}); raise max_draws, or "
                                   f"check the critic's scale (calibrate it) or gamma_shift")
            z = sample(min(draw_size, max_draws - proposals))
            d = logits(generator, critic, z, batch_size, eval_mode=None).double()
            running_max = torch.maximum(torch.cummax(d, 0).values, d_max)
            f = drs_log_accept(d, running_max, eps)
            gamma = float(torch.quantile(f, shift_quantile)) if gamma_shift is None else gamma_shift
            gammas.append(gamma)
            accept = uniform(len(z), rng, device).log() < torch.nn.functional.logsigmoid(f - gamma)
            d_max = running_max[-1]
            proposals += len(z)
            n_accepted += int(accept.sum())
            take = z[accept][: n - n_kept]
            kept.append(take)
            n_kept += len(take)
            bar.update(len(take))
        bar.close()
    z_out = torch.cat(kept) if kept else sample(0)
    info = {"acceptance_rate": n_accepted / proposals if proposals else float("nan"), "proposals": proposals,
            "burn_in": burn_in, "generator_evals": burn_in + proposals, "critic_evals": burn_in + proposals,
            "d_max": float(d_max), "gamma_mean": sum(gammas) / len(gammas) if gammas else 0.0}
    return z_out, info
