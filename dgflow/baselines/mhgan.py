"""Metropolis-Hastings GAN (Turner et al., ICML 2019), docs/design.md §2.

One independence Metropolis-Hastings chain per output sample, with the generator as proposal
and the target mu. With d ~ log mu/rho the acceptance ratio mu(x') rho(x) / (mu(x) rho(x'))
is exp(d(x') - d(x)), so a move to a proposal x' is accepted with probability
min(1, exp(d(x') - d(x))). The chain runs over K proposals and outputs its last state.

Initialisation (``real``): the paper starts each chain at a real data point, which is already
distributed as the target, so no burn-in is needed. A chain that accepts none of its K
proposals would output the real point; such chains are rerun here from a generated start
(first proposal, then K - 1 more), so every output is a generated latent; ``info["restarted"]``
counts them. Without ``real`` every chain starts at its first proposal (K proposals in all).
"""
from __future__ import annotations

from typing import Optional

import torch
from tqdm.auto import tqdm

from .._checks import check_batch_size, check_int, check_models
from ..models.modules import frozen
from ..passes import logits
from ._common import Model, PriorLike, make_sampler, resolve_rng, uniform


def mh_accept(d_current: torch.Tensor, d_proposal: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Accept where u < min(1, exp(d' − d)), i.e. log u < d' − d (u uniform in [0, 1))."""
    return u.log() < (d_proposal.double() - d_current.double())


def _run_chains(generator, critic, sample, d_state, z_state, k, batch_size, rng, device, bar):
    """Advance chains (logits ``d_state``, latents ``z_state``) by ``k`` proposals each, in place.

    Returns a boolean tensor marking the chains that accepted at least one proposal, and the
    number of accepted moves.
    """
    moved = torch.zeros(len(d_state), dtype=torch.bool, device=device)
    accepted = 0
    for _ in range(k):
        z_new = sample(len(d_state))
        d_new = logits(generator, critic, z_new, batch_size, eval_mode=None)
        acc = mh_accept(d_state, d_new, uniform(len(d_state), rng, device))
        z_state[acc] = z_new[acc].to(z_state.dtype)
        d_state[acc] = d_new[acc]
        moved |= acc
        accepted += int(acc.sum())
        bar.update(1)
    return moved, accepted


def mhgan(
    generator: Optional[Model],
    critic: Model,
    prior: PriorLike | None,
    n: int,
    k: int = 20,
    *,
    real: torch.Tensor | None = None,
    real_logits: torch.Tensor | None = None,
    batch_size: int | None = None,
    generator_rng: torch.Generator | int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    eval_mode: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Run ``n`` independence MH chains of ``k`` generator proposals; returns ``(z, info)``.

    Args:
        generator: callable z -> x, or ``None`` (the prior draws are the samples).
        critic: callable x -> logit d ~ log mu/rho (MH-GAN needs a *calibrated* logit, e.g.
            from :func:`dgflow.calibration.calibrate`; the raw scale of a WGAN critic is
            arbitrary).
        prior: latent size, shape, :class:`~dgflow.models.GaussianPrior` or a sampler
            ``n -> z`` (``None`` for an adapted generator that carries its prior).
        n: number of chains, i.e. of output latents.
        k: proposals per chain.
        real: real data (M, ...) to start the chains from (drawn with replacement); ``None``
            starts each chain at its first proposal.
        real_logits: the critic's logits on ``real`` if already computed (shape (M,)).
        batch_size: chunk size for generator/critic calls.
        generator_rng: ``torch.Generator`` or int seed (proposals, starts, acceptance draws).
        device: device of the latents (default: the rng's device, else CPU).
        progress: tqdm bar over proposal rounds.
        eval_mode: run the models in eval mode; their flags are restored afterwards.

    Returns:
        ``z`` (n, ...) and ``info`` with ``acceptance_rate`` (accepted moves / proposals),
        ``init`` (``"real"`` or ``"proposal"``), ``restarted`` (chains rerun from a generated
        start), ``generator_evals`` and ``critic_evals`` (including the real starts).
    """
    check_models(generator, critic)
    n = check_int(n, "n")
    k = check_int(k, "k", 1)
    batch_size = check_batch_size(batch_size)
    rng, device = resolve_rng(generator_rng, device)
    sample = make_sampler(prior, generator, rng, device)
    z = sample(n)
    gen_evals, critic_evals, accepted, tests, restarted = 0, 0, 0, 0, 0
    with frozen(generator, critic, eval_mode=eval_mode):
        bar = tqdm(total=k, disable=not progress, desc="mhgan", leave=False)
        if real is not None:
            d_real = _real_logits(critic, real, real_logits, batch_size, device)
            critic_evals += len(real) if real_logits is None else 0
            d = d_real[torch.randint(0, len(d_real), (n,), generator=rng, device=device)]
            moved, accepted = _run_chains(generator, critic, sample, d, z, k, batch_size, rng, device, bar)
            gen_evals, tests = n * k, n * k
            stuck = (~moved).nonzero().flatten()
            restarted = len(stuck)
            if restarted:
                bar.reset(total=k)
                z[stuck], acc = _proposal_chains(generator, critic, sample, restarted, k, batch_size,
                                                 rng, device, bar)
                gen_evals, tests, accepted = gen_evals + restarted * k, tests + restarted * (k - 1), accepted + acc
        else:
            z, accepted = _proposal_chains(generator, critic, sample, n, k, batch_size, rng, device, bar, z0=z)
            gen_evals, tests = n * k, n * (k - 1)
        bar.close()
    info = {"init": "proposal" if real is None else "real", "k": k, "restarted": restarted,
            "acceptance_rate": accepted / tests if tests else float("nan"),
            "generator_evals": gen_evals, "critic_evals": critic_evals + gen_evals}
    return z, info


def _proposal_chains(generator, critic, sample, m, k, batch_size, rng, device, bar, z0=None):
    """``m`` chains started at a first proposal, then ``k - 1`` more; returns (z, accepted moves)."""
    z = (sample(m) if z0 is None else z0).clone()  # never write into the sampler's tensor
    d = logits(generator, critic, z, batch_size, eval_mode=None)
    bar.update(1)
    _, accepted = _run_chains(generator, critic, sample, d, z, k - 1, batch_size, rng, device, bar)
    return z, accepted


def _real_logits(critic, real, real_logits, batch_size, device) -> torch.Tensor:
    if not isinstance(real, torch.Tensor) or real.dim() < 2 or len(real) == 0:
        raise ValueError("real must be a non-empty tensor of data samples (M, ...) to start the chains from")
    if real_logits is None:
        return logits(None, critic, real.to(device), batch_size, eval_mode=None)
    if not isinstance(real_logits, torch.Tensor) or real_logits.shape != (len(real),):
        raise ValueError(f"real_logits must be a tensor of shape ({len(real)},) matching real")
    return real_logits.to(device=device, dtype=torch.float32)
