"""refine() against cases with a known answer (docs/design.md §1): the paper's scheme, so ``clip=None``
where samples' drifts differ (the default cap would shorten the longer ones)."""
import math

import pytest
import torch

import dgflow
from dgflow.divergences import get_weight


def test_linear_critic_kl_moves_by_k_eta_a(linear_critic):
    z = torch.randn(7, 3)
    out = dgflow.refine(None, linear_critic, z, steps=4, eta=0.05, gamma=0.0, divergence="kl")
    expected = z + 4 * 0.05 * linear_critic.a.detach()
    assert torch.allclose(out, expected, atol=1e-6)


def test_linear_critic_through_identity_generator(linear_critic):
    z = torch.randn(5, 3)
    out = dgflow.refine(torch.nn.Identity(), linear_critic, z, steps=3, eta=0.1, gamma=0.0)
    assert torch.allclose(out, z + 0.3 * linear_critic.a.detach(), atol=1e-6)


@pytest.mark.parametrize("divergence,weight", [("js", torch.sigmoid), ("logd", lambda d: torch.sigmoid(-d)),
                                               ("rkl", torch.exp), ("pearson", lambda d: 2 * torch.exp(-d))])
def test_weights_follow_the_logit_at_each_step(linear_critic, divergence, weight):
    a = linear_critic.a.detach()
    z = 0.3 * torch.randn(6, 3)
    seen = []
    out, traj = dgflow.refine(None, linear_critic, z, steps=5, eta=0.01, gamma=0.0, divergence=divergence,
                              clip=None, return_trajectory=True, callback=lambda k, zk, d: seen.append(d.clone()))
    assert len(seen) == 5 and traj.shape == (6, 6, 3)
    for k in range(5):
        d = traj[k] @ a
        assert torch.allclose(seen[k], d, atol=1e-5)
        step = traj[k + 1] - traj[k]
        assert torch.allclose(step, 0.01 * weight(d)[:, None] * a, atol=1e-5)
    assert torch.equal(out, traj[-1])


def test_zero_critic_variance_grows_by_2_gamma_eta_per_step():
    n, dim, steps, eta, gamma = 40000, 3, 6, 0.1, 0.05
    z = torch.zeros(n, dim, dtype=torch.float64)
    _, traj = dgflow.refine(None, lambda x: 0 * x.sum(1), z, stop=None, steps=steps, eta=eta,
                            gamma=gamma, return_trajectory=True, generator_rng=1)
    # sample variance of n normal draws has relative standard error sqrt(2/(n-1)); allow 5 of them
    tol = 5 * math.sqrt(2 / (n - 1))
    for k in range(1, steps + 1):
        var = traj[k].var(dim=0)
        assert torch.all((var / (2 * gamma * eta * k) - 1).abs() < tol), (k, var)
    assert traj[-1].mean(0).abs().max() < 5 * math.sqrt(2 * gamma * eta * steps / n)


@pytest.mark.parametrize("name,f", [
    ("kl", lambda r: r * torch.log(r)),
    ("js", lambda r: r * torch.log(r) - (1 + r) * torch.log((1 + r) / 2)),
    ("logd", lambda r: (1 + r) * torch.log(1 + r)),
    ("pearson", lambda r: (r - 1) ** 2),
])
def test_custom_f_reproduces_named_divergence(name, f):
    critic = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    z = torch.randn(32, 2)
    a = dgflow.refine(None, critic, z, steps=5, eta=0.1, gamma=0.01, divergence=name, generator_rng=3)
    b = dgflow.refine(None, critic, z, steps=5, eta=0.1, gamma=0.01, divergence=f, generator_rng=3)
    assert torch.allclose(a, b, atol=1e-5)
    d = torch.linspace(-3, 3, 13)
    assert torch.allclose(get_weight(f)(d), get_weight(name)(d), atol=1e-5)


def test_affine_custom_f_is_refused_not_a_silent_no_op(linear_critic):
    z = torch.randn(4, 3)
    for eta in (0.1, "auto"):
        with pytest.raises(ValueError, match=r"divergence: the custom f has f''\(r\) = 0 at every r tried \(it is affine\)"):
            dgflow.refine(None, linear_critic, z, steps=3, eta=eta, gamma=0.0, divergence=lambda r: 2 * r + 1)


def test_dopri5_agrees_with_many_small_euler_steps():
    torch.manual_seed(1)
    g = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    critic = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    z = torch.randn(16, 2, dtype=torch.float64)
    g, critic = g.double(), critic.double()
    ode = dgflow.refine(g, critic, z, stop=None, steps=4, eta=0.25, gamma=0.0, divergence="js", solver="dopri5",
                        rtol=1e-9, atol=1e-10)
    euler = dgflow.refine(g, critic, z, stop=None, steps=4000, eta=0.00025, gamma=0.0, divergence="js")
    assert (ode - z).abs().max() > 1e-2  # the flow actually moved
    assert torch.allclose(ode, euler, atol=1e-3)


def test_dopri5_trajectory_and_callback():
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    z = torch.randn(10, 2)
    calls = []
    out, traj = dgflow.refine(None, critic, z, stop=None, steps=4, eta=0.1, gamma=0.0, solver="dopri5",
                              return_trajectory=2, batch_size=3, callback=lambda k, zk, d: calls.append(k))
    assert traj.shape == (3, 10, 2) and torch.equal(traj[0], z) and torch.equal(traj[-1], out)
    assert calls == [0, 1, 2, 3]


def test_data_space_gradient_ascent_on_quadratic():
    # d(x) = -|x - c|^2 / 2: KL flow is dx/dt = c - x, so x(t) = c + (x0 - c) e^{-t}
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    x0 = torch.randn(8, 2, dtype=torch.float64)
    out = dgflow.refine(None, lambda x: -0.5 * ((x - c) ** 2).sum(1), x0, steps=10, eta=0.1, gamma=0.0,
                        clip=None, solver="dopri5", rtol=1e-10, atol=1e-12)
    assert torch.allclose(out, c + (x0 - c) * math.exp(-1.0), atol=1e-7)
