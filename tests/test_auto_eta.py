"""eta='auto': the step is chosen from the first step's drift, invariant to the critic's scale."""
import pytest
import torch
from torch import nn

import dgflow


def make_pair(seed=0):
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    d = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    return g, d


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_scaling_the_critic_does_not_change_the_deterministic_kl_flow(solver):
    g, d = make_pair()
    z = torch.randn(50, 3, dtype=torch.float64)
    g, d = g.double(), d.double()
    tol = dict(rtol=1e-10, atol=1e-12)
    a = dgflow.refine(g, d, z, stop=None, steps=5, eta="auto", gamma=0.0, solver=solver, **tol)
    b = dgflow.refine(g, lambda x: 37.0 * d(x), z, stop=None, steps=5, eta="auto", gamma=0.0, solver=solver, **tol)
    assert (a - z).abs().max() > 1e-3
    assert torch.allclose(a, b, atol=1e-7)


def test_first_step_median_length_is_auto_step():
    g, d = make_pair(1)
    z = torch.randn(101, 3)
    out = dgflow.refine(g, d, z, stop=None, steps=1, eta="auto", auto_step=0.05, gamma=0.0)
    assert float((out - z).norm(dim=1).median()) == pytest.approx(0.05, rel=1e-4)


def test_auto_eta_errors():
    z = torch.randn(4, 2)
    with pytest.raises(ValueError, match="eta must be a positive number or 'auto', got 'fast'"):
        dgflow.refine(None, nn.Linear(2, 1), z, eta="fast")
    with pytest.raises(ValueError, match="auto_step must be > 0"):
        dgflow.refine(None, nn.Linear(2, 1), z, eta="auto", auto_step=0)
    with pytest.raises(ValueError, match="the critic is flat here"):
        dgflow.refine(None, lambda x: x.sum(1) * 0, z, eta="auto")
