"""Faults a new user hit (issue 14): models passed as closures, forwards without a gradient path,
a last update that overflows, confident probability critics, and misleading messages."""
import functools

import pytest
import torch
from torch import nn

import dgflow
from dgflow.critics import as_logit
from dgflow.models import frozen, modules_of


def bn_generator():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))


def critic_mlp():
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


def state_of(*models):
    return [(k, v.clone()) for m in models for k, v in m.state_dict().items()]


def same_state(a, b):
    return len(a) == len(b) and all(ka == kb and torch.equal(va, vb) for (ka, va), (kb, vb) in zip(a, b))


class Holder:
    def __init__(self, net):
        self.net = net


class Slotted:
    """A holder the module search cannot see into (no __dict__): only the call-time guard finds it."""

    __slots__ = ("net",)

    def __init__(self, net):
        self.net = net

    def run(self, z):
        return self.net(z)


def _global_g(z):
    return GLOBAL_G(z)


GLOBAL_G = bn_generator()


def wrappers(g):
    holder, slotted = Holder(g), Slotted(g)

    def closure(z):
        return g(z)

    return {"lambda": lambda z: g(z), "closure": closure, "partial": functools.partial(nn.Module.__call__, g),
            "holder": lambda z: holder.net(z), "slotted": lambda z: slotted.run(z)}


@pytest.mark.parametrize("kind", ["lambda", "closure", "partial", "holder", "slotted", "global"])
def test_closure_models_run_frozen_and_come_back_intact(kind):
    g = GLOBAL_G if kind == "global" else bn_generator()
    g.train()
    fn = _global_g if kind == "global" else wrappers(g)[kind]
    d = critic_mlp().train()
    before = state_of(g, d)
    z = torch.randn(24, 3)
    ref = dgflow.refine(g, d, z, steps=3, generator_rng=1)  # the module itself: eval-mode batch norm
    out_a = dgflow.refine(fn, lambda x: d(x), z, steps=3, generator_rng=1, batch_size=5)
    out_b = dgflow.refine(fn, lambda x: d(x), z, steps=3, generator_rng=1)
    assert same_state(state_of(g, d), before), "batch-norm statistics changed"
    assert torch.equal(out_a, out_b), "the result depends on batch_size: batch norm ran in train mode"
    assert torch.allclose(out_a, ref, atol=1e-6)
    assert g.training and d.training and all(p.requires_grad and p.grad is None for p in g.parameters())
    x = dgflow.generate(fn, z, batch_size=5)
    # chunks of 5 against one batch: equal up to the BLAS's batch-size-dependent rounding (train-mode
    # batch norm would differ by the batch statistics, far more)
    assert torch.allclose(x, dgflow.generate(g, z), atol=1e-6) and same_state(state_of(g), before[:len(state_of(g))])


def test_as_generator_of_a_closure_reaches_its_modules():
    g = bn_generator().train()
    adapted = dgflow.as_generator(lambda z: g(z), z_shape=3)
    assert any(m is g for m in adapted.modules())
    before = state_of(g)
    dgflow.refine(adapted, critic_mlp(), torch.randn(10, 3), steps=2)
    assert same_state(state_of(g), before) and g.training


def test_modules_of_looks_through_closures_partials_defaults_and_objects():
    a, b, c = nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1)

    def with_default(x, net=c):
        return net(x)

    assert modules_of(lambda x: a(b(x))) == [a, b] or set(map(id, modules_of(lambda x: a(b(x))))) == {id(a), id(b)}
    assert modules_of(functools.partial(lambda m, x: m(x), a)) == [a]
    assert modules_of(with_default) == [c]
    assert modules_of(Holder([a, {"k": b}])) == [a, b]
    assert modules_of(lambda x: x * 2) == []


def test_frozen_guard_freezes_a_hidden_module_and_restores_it():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    hidden = Slotted(net)
    fn = lambda x: hidden.run(x)  # noqa: E731
    assert modules_of(fn) == []
    with frozen(fn):
        fn(torch.randn(4, 2))
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert torch.equal(net[1].running_mean, torch.zeros(2))


@pytest.mark.parametrize("where", ["generator", "critic"])
@pytest.mark.parametrize("eta", ["auto", 0.1])
def test_a_forward_without_gradient_path_is_named_not_treated_as_zero(where, eta):
    g, d = nn.Linear(3, 2), critic_mlp()

    def no_grad_g(z):
        with torch.no_grad():
            return g(z)

    gen = no_grad_g if where == "generator" else g
    critic = (lambda x: d(x).detach()) if where == "critic" else d
    with pytest.raises(ValueError, match=f"{where}: its output has no gradient path to z"):
        dgflow.refine(gen, critic, torch.randn(8, 3), steps=2, eta=eta, gamma=0.0)


@pytest.mark.parametrize("kw", [dict(eta=1e39, clip=None), dict(eta=1e300)])
def test_the_last_update_is_checked(kw, linear_critic):
    with pytest.raises(FloatingPointError, match="the update of step 0 made the latents non-finite"):
        dgflow.refine(None, linear_critic, torch.randn(5, 3), steps=1, gamma=0.0, **kw)


def test_prob_critic_matches_the_logit_critic_on_confident_rejections():
    a = torch.tensor([1.0, -2.0])
    z = torch.tensor([[-15.0, 0.0], [-30.0, 0.0], [5.0, 5.0], [2.0, -3.0]])  # logits -15, -30, -5, 8

    def logit(x):
        return x @ a

    prob = as_logit(lambda x: torch.sigmoid(x @ a), "prob")
    assert torch.allclose(prob(z), logit(z), atol=1e-4)
    kw = dict(steps=1, eta=0.1, gamma=0.0, clip=None)
    assert torch.allclose(dgflow.refine(None, prob, z, **kw), dgflow.refine(None, logit, z, **kw), atol=1e-5)


def test_empty_batch_comes_back_empty_with_the_default_eta(linear_critic):
    z = torch.zeros(0, 3)
    out, info = dgflow.refine(None, linear_critic, z, return_info=True)
    assert out.shape == (0, 3) and info.steps_run == 0 and info.eta is None


def test_callback_must_be_callable(linear_critic):
    with pytest.raises(TypeError, match="callback must be callable"):
        dgflow.refine(None, linear_critic, torch.randn(3, 3), steps=2, callback=5)


def test_a_generator_returning_a_tuple_is_named():
    g = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"generator must return a torch.Tensor of samples, got tuple .*G\(z\)\[0\]"):
        dgflow.refine(lambda z: (g(z), 0), critic_mlp(), torch.randn(4, 3), steps=1)
    with pytest.raises(TypeError, match="generator must return a torch.Tensor"):
        dgflow.generate(lambda z: (g(z), 0), torch.randn(4, 3))


def test_return_info_reports_eta_cap_stop_and_diagnostics(linear_critic):
    z = torch.randn(16, 3)
    out, info = dgflow.refine(None, linear_critic, z, steps=6, stop=lambda k, zk, d: k == 4, return_info=True,
                              generator_rng=3)
    assert info.stop_step == 4 and info.steps_run == 4 and len(info.history) == 4
    assert info.eta == pytest.approx(0.02 / linear_critic.a.norm().item(), rel=1e-5) and info.cap > 0
    assert [h["step"] for h in info.history] == [0, 1, 2, 3]
    assert torch.equal(out, dgflow.refine(None, linear_critic, z, steps=4, generator_rng=3))
    out2, traj, info2 = dgflow.refine(None, linear_critic, z, steps=3, eta=0.1, return_trajectory=True,
                                      return_info=True)
    assert traj.shape == (4, 16, 3) and info2.eta == 0.1 and info2.stop_step is None and info2.steps_run == 3


def test_ode_solver_stop_ends_the_integration(linear_critic):
    calls = []

    def critic(x):
        calls.append(len(x))
        return linear_critic(x)

    z = torch.randn(4, 3, dtype=torch.float64)
    linear_critic.double()
    dgflow.refine(None, critic, z, steps=50, eta=0.01, gamma=0.0, solver="rk4", stop=lambda k, zk, d: k == 2)
    assert len(calls) == 3 + 2 * 4  # 3 grid points, 2 rk4 intervals of 4 evaluations: not 50 intervals
