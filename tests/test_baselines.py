"""Flow-type baselines (DDLS, DOT): their mathematics on analytic cases, invariants, errors."""
import math

import pytest
import torch
from torch import nn

from dgflow.baselines import ddls, dot, dot_objective, estimate_k_eff

M = torch.tensor([1.0, -2.0])


def quadratic(a: float = 1.0, m: torch.Tensor = M):
    """d(x) = -a ||x - m||^2 / 2."""
    return lambda x: -a * ((x - m) ** 2).sum(1) / 2


def prior(n: int, seed: int = 0, dim: int = 2) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_ddls_samples_the_gaussian_stationary_law():
    # E(z) = |z|^2/2 + a|z - m|^2/2  ->  N(a m / (1 + a), 1 / (1 + a)) as eps -> 0. The unadjusted
    # chain's own stationary law is N(a m/(1+a), 1 / (P (1 - eps P / 4))) with P = 1 + a.
    a, eps = 1.0, 0.05
    out = ddls(None, quadratic(a), prior(3000), steps=400, eps=eps, generator_rng=1)
    p = 1 + a
    assert torch.allclose(out.mean(0), a * M / p, atol=0.05)
    var = 1 / (p * (1 - eps * p / 4))
    assert torch.allclose(out.var(0), torch.full((2,), var), rtol=0.08)


def test_ddls_with_flat_critic_samples_the_prior_from_anywhere():
    out = ddls(None, lambda x: 0 * x.sum(1), torch.full((3000, 2), 3.0), steps=400, eps=0.05,
               generator_rng=2)
    assert out.mean(0).abs().max() < 0.06
    assert torch.allclose(out.var(0), torch.full((2,), 1 / (1 - 0.05 / 4)), rtol=0.08)


def test_ddls_chunking_does_not_change_the_result_and_zero_steps_copies():
    g = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    d = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    z = prior(64)
    full = ddls(g, d, z, steps=5, eps=0.01, generator_rng=3)
    chunked = ddls(g, d, z, steps=5, eps=0.01, generator_rng=3, batch_size=10)
    assert torch.allclose(full, chunked, atol=1e-6)
    same = ddls(g, d, z, steps=0)
    assert torch.equal(same, z) and same is not z


@pytest.mark.parametrize("method", ["ddls", "dot"])
def test_flow_baselines_leave_the_models_unchanged(method):
    g = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).train()
    d = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).train()
    g[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in {**g.state_dict(), **{"d" + k: v for k, v in d.state_dict().items()}}.items()}
    fn = ddls if method == "ddls" else dot
    seen = []
    fn(g, d, prior(32), steps=3, callback=lambda step, z, logits: seen.append((g.training, d.training)))
    after = {**g.state_dict(), **{"d" + k: v for k, v in d.state_dict().items()}}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert seen == [(False, False)] * 3 and g.training and d.training
    assert not g[0].weight.requires_grad and g[2].weight.requires_grad
    assert all(p.grad is None for p in list(g.parameters()) + list(d.parameters()))


def test_dot_keeps_samples_in_place_when_the_critic_is_flat():
    z = prior(200)
    out = dot(None, lambda x: 0 * x.sum(1) + 0.7, z, steps=10, lr=0.1, k_eff=1.0)
    assert torch.equal(out, z)


def test_dot_solves_its_transport_problem():
    # min_z |z - z_y| + |z - m|^2 / (2K): the projection of z_y onto the ball of radius K around m.
    k = 1.0
    start = M + 1.5 * prior(1000, seed=1)
    out = dot(None, quadratic(), start, steps=200, lr=0.05, k_eff=k)
    r0, r1 = (start - M).norm(dim=1), (out - M).norm(dim=1)
    err = (r1 - r0.clamp(max=k)).abs()
    away_from_kink = (r0 < 3) & ((r0 - k).abs() > 0.2)  # Adam rattles where |z - z_y| is not smooth
    assert err.mean() < 0.02 and err[away_from_kink].max() < 0.05
    cos = ((out - M) * (start - M)).sum(1) / (r0 * r1)
    assert cos.min() > 0.95  # moved along the segment towards m
    before = dot_objective(None, quadratic(), start, start, k)
    after = dot_objective(None, quadratic(), out, start, k)
    outside = r0 > 1.5 * k  # optimum (r0 - k) + k/2 against r0^2/(2k): lower by (r0 - k)^2/(2k) >= 0.125
    assert bool((after[outside] < before[outside] - 0.1).all())
    # inside the ball z_y is optimal: Adam only jitters around it, by about one learning rate
    assert bool((after[~outside] <= before[~outside] + 0.1).all())


def test_estimate_k_eff_is_the_pairwise_lipschitz_ratio():
    a = torch.tensor([3.0, 4.0])
    k = estimate_k_eff(None, lambda x: x @ a, prior(1000), n_pairs=500, generator_rng=0)
    assert 0.99 * 5.0 < k <= 5.0 + 1e-6
    g = lambda z: 2.0 * z  # noqa: E731  the ratio is in latent units: |d(G z1) - d(G z2)| / |z1 - z2|
    assert math.isclose(estimate_k_eff(g, lambda x: x @ a, prior(1000), generator_rng=0), 2 * k, rel_tol=1e-5)


def test_dot_estimates_k_eff_when_not_given():
    z = prior(300)
    crit = lambda x: x @ torch.tensor([3.0, 4.0])  # noqa: E731
    auto = dot(None, crit, z, steps=3, lr=0.01, generator_rng=5)
    given = dot(None, crit, z, steps=3, lr=0.01, k_eff=estimate_k_eff(None, crit, z, generator_rng=5))
    assert torch.allclose(auto, given)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ddls(None, quadratic(), [[0.0, 1.0]]), TypeError, "z must be a torch.Tensor"),
    (lambda: ddls(None, quadratic(), prior(4), eps=0.0), ValueError, "eps must be > 0"),
    (lambda: ddls(None, quadratic(), prior(4), steps=-1), ValueError, "steps must be >= 0"),
    (lambda: ddls(None, "critic", prior(4)), TypeError, "critic must be callable"),
    (lambda: ddls(3, quadratic(), prior(4)), TypeError, "generator must be callable"),
    (lambda: ddls(None, quadratic(), torch.full((4, 2), float("nan"))), ValueError, "non-finite"),
    (lambda: ddls(None, lambda x: x, prior(4)), ValueError, "critic must return logits of shape"),
    (lambda: dot(None, quadratic(), prior(4), lr=-1.0), ValueError, "lr must be > 0"),
    (lambda: dot(None, quadratic(), prior(4), k_eff=0.0), ValueError, "k_eff must be > 0"),
    (lambda: dot(None, lambda x: torch.zeros(len(x)), prior(20)), ValueError, "K_eff = 0"),
    (lambda: estimate_k_eff(None, quadratic(), prior(1)), ValueError, "at least 2 latents"),
    (lambda: estimate_k_eff(None, quadratic(), prior(5), n_pairs=0), ValueError, "n_pairs must be >= 1"),
])
def test_flow_baselines_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("fn", [ddls, dot])
def test_flow_baselines_name_the_step_where_the_critic_blows_up(fn):
    def crit(x):
        return torch.where(x[:, 0] > 0, torch.full_like(x[:, 0], float("nan")), x[:, 0])
    with pytest.raises(FloatingPointError, match="step 0"):
        fn(None, crit, prior(16), steps=2, **({"k_eff": 1.0} if fn is dot else {}))
