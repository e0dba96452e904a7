"""Rejection/MCMC baselines (DRS, MH-GAN) on exact density ratios: target laws, invariants, errors."""
import math

import pytest
import torch
from scipy import stats
from torch import nn

from dgflow.baselines import drs, mhgan
from dgflow.baselines.drs import drs_log_accept
from dgflow.calibration import calibrate
from dgflow.baselines.mhgan import mh_accept
from dgflow.models import GaussianPrior, as_generator

# proposal rho = N(0, 1), target mu = N(MU, S^2): the exact log ratio log mu/rho is bounded
MU, S = 0.5, 0.7
TARGET = stats.norm(MU, S)


def log_ratio(x: torch.Tensor) -> torch.Tensor:
    x = x[:, 0]
    return -0.5 * ((x - MU) / S) ** 2 - math.log(S) + 0.5 * x ** 2


def max_ratio() -> float:
    x_star = MU / (1 - S ** 2)  # argmax of the log ratio
    return math.exp(float(log_ratio(torch.tensor([[x_star]]))))


def ks_pvalue(z: torch.Tensor) -> float:
    return float(stats.kstest(z[:, 0].double().numpy(), TARGET.cdf).pvalue)


def test_drs_without_shift_is_exact_rejection_sampling():
    z, info = drs(None, log_ratio, 1, 3000, gamma_shift=0.0, generator_rng=0)
    assert z.shape == (3000, 1)
    assert ks_pvalue(z) > 0.01
    assert abs(info["acceptance_rate"] - 1 / max_ratio()) < 0.03
    assert info["generator_evals"] == info["burn_in"] + info["proposals"] == 10_000 + info["proposals"]


def test_drs_acceptance_function_is_the_rejection_probability():
    d = torch.linspace(-5, 0, 11, dtype=torch.float64)
    assert torch.allclose(torch.sigmoid(drs_log_accept(d, 0.0, eps=1e-12)), d.exp(), atol=1e-9)


def test_drs_shift_trades_exactness_for_acceptance_and_still_returns_n():
    exact = drs(None, log_ratio, 1, 500, gamma_shift=0.0, generator_rng=1)[1]["acceptance_rate"]
    z, info = drs(None, log_ratio, GaussianPrior((1,)), 777, gamma_shift=-2.0, generator_rng=1)
    assert len(z) == 777 and info["acceptance_rate"] > exact
    z, info = drs(None, log_ratio, 1, 321, generator_rng=1)  # the paper's per-batch 95th percentile
    assert len(z) == 321 and 0 < info["acceptance_rate"] <= 1 and info["gamma_mean"] > 0


def test_drs_gives_up_clearly_when_nothing_is_accepted():
    with pytest.raises(RuntimeError, match="max_draws"):
        drs(None, lambda x: 50.0 * x[:, 0], 1, 100, burn_in=100, gamma_shift=0.0, max_draws=200,
            generator_rng=0)


def test_mhgan_from_first_proposal_reaches_the_target():
    z, info = mhgan(None, log_ratio, 1, 3000, k=30, generator_rng=0)
    assert z.shape == (3000, 1) and info["init"] == "proposal"
    assert ks_pvalue(z) > 0.01
    assert info["generator_evals"] == 3000 * 30


def test_mhgan_from_real_data_is_in_equilibrium_at_once():
    real = MU + S * torch.randn(4000, 1, generator=torch.Generator().manual_seed(5))
    z, info = mhgan(None, log_ratio, 1, 3000, k=5, real=real, generator_rng=0)
    assert info["init"] == "real" and info["restarted"] < 60  # P(no accept in 5) is small here
    assert ks_pvalue(z) > 0.01
    assert info["generator_evals"] == 3000 * 5 + 5 * info["restarted"]
    assert info["critic_evals"] == info["generator_evals"] + len(real)


def test_mhgan_accepts_every_proposal_when_the_critic_is_flat():
    proposals = []

    def sampler(n):
        proposals.append(torch.randn(n, 2))
        return proposals[-1]

    z, info = mhgan(None, lambda x: torch.zeros(len(x)), sampler, 500, k=4)
    assert info["acceptance_rate"] == 1.0 and len(proposals) == 4
    assert torch.equal(z, proposals[-1])  # every chain ends at its last proposal


def test_rejection_baselines_need_and_accept_a_calibrated_critic():
    def scaled(x):
        return 3.0 * log_ratio(x) + 1.0  # right ranking, wrong scale: not log mu/rho

    gen = torch.Generator().manual_seed(3)
    real, fake = MU + S * torch.randn(20000, 1, generator=gen), torch.randn(20000, 1, generator=gen)
    cal = calibrate(scaled, real, fake, "platt")
    for fn in (lambda c: drs(None, c, 1, 2000, gamma_shift=0.0, generator_rng=4)[0],
               lambda c: mhgan(None, c, 1, 2000, k=30, generator_rng=4)[0]):
        assert ks_pvalue(fn(scaled)) < 1e-3
        assert ks_pvalue(fn(cal)) > 0.01


def test_mh_acceptance_rule():
    d = torch.tensor([0.0, 0.0, 0.0])
    d_new = torch.tensor([1.0, -1.0, -1.0])
    u = torch.tensor([0.999, 0.36, 0.37], dtype=torch.float64)  # exp(-1) = 0.3679
    assert mh_accept(d, d_new, u).tolist() == [True, True, False]


@pytest.mark.parametrize("method", ["drs", "mhgan"])
def test_rejection_baselines_leave_the_models_unchanged(method):
    g = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).train()
    d = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).train()
    before = [p.clone() for p in list(g.parameters()) + list(d.parameters())]
    gen = as_generator(g, 2)
    if method == "drs":
        drs(gen, d, None, 50, burn_in=100, generator_rng=0)
    else:
        mhgan(gen, d, None, 50, k=3, real=torch.randn(20, 2), generator_rng=0)
    assert all(torch.equal(a, b) for a, b in zip(before, list(g.parameters()) + list(d.parameters())))
    assert g.training and d.training and all(p.requires_grad and p.grad is None for p in g.parameters())


@pytest.mark.parametrize("call, exc, match", [
    (lambda: drs(None, log_ratio, 1, -1), ValueError, "n must be >= 0"),
    (lambda: drs(None, log_ratio, 1, 10, shift_quantile=1.0), ValueError, "shift_quantile must be in"),
    (lambda: drs(None, log_ratio, 1, 10, eps=0), ValueError, "eps must be > 0"),
    (lambda: drs(nn.Identity(), log_ratio, None, 10), ValueError, "prior: pass the latent size"),
    (lambda: drs(None, log_ratio, "normal", 10), TypeError, "prior must be"),
    (lambda: drs(None, log_ratio, lambda n: torch.randn(n), 10), ValueError, "sampler must return"),
    (lambda: drs(None, "critic", 1, 10), TypeError, "critic must be callable"),
    (lambda: mhgan(None, log_ratio, 1, 10, k=0), ValueError, "k must be >= 1"),
    (lambda: mhgan(None, log_ratio, 1, 10, real=torch.randn(5)), ValueError, "real must be"),
    (lambda: mhgan(None, log_ratio, 1, 10, real=torch.randn(5, 1), real_logits=torch.zeros(4)),
     ValueError, "real_logits must be"),
    (lambda: mhgan(None, log_ratio, 1, 10, generator_rng=-3), ValueError, "generator_rng must be >= 0"),
    (lambda: drs(None, lambda x: torch.full((len(x),), float("nan")), 1, 10, burn_in=5), FloatingPointError,
     "non-finite logits"),
])
def test_rejection_baselines_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
