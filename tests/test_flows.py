"""dgflow.models.flows: normalizing flows as refinable generators (u ~ N(0, I) -> x)."""
import copy
import math

import pytest
import torch
from torch import nn

import dgflow
from dgflow.models.flows import FlowGenerator, MultiscaleFlowLike, initialize_actnorm, uninitialized_actnorms

nf = pytest.importorskip("normflows")
from dgflow.models.arch import glow  # noqa: E402  (needs normflows)

pytestmark = pytest.mark.filterwarnings("ignore:torch.lu is deprecated")


def _tiny_glow(seed=0):
    """2 levels of 2 Glow steps over 1x8x8, ActNorm initialised on data, non-trivial base loc/scale."""
    torch.manual_seed(seed)
    flow = glow(in_channels=1, img_size=8, levels=2, blocks=2, hidden=8)
    initialize_actnorm(flow, torch.rand(64, 1, 8, 8) * 2 - 1)
    with torch.no_grad():
        for q in flow.q0:
            for p in (q.loc, q.loc_logs, q.log_scale, q.log_scale_logs):
                p.normal_(0, 0.3)
    return flow.eval()


@pytest.fixture(scope="module")
def flow():
    return _tiny_glow()


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_shapes_and_prior(flow):
    g = FlowGenerator(flow)
    assert g.level_shapes == ((8, 2, 2), (2, 4, 4)) and g.z_dim == 64
    assert dgflow.as_generator(g).z_shape == (64,) and g.sample_prior(3).shape == (3, 64)
    assert g(g.sample_prior(5)).shape == (5, 1, 8, 8)


def test_round_trip_exact(flow):
    g = FlowGenerator(flow, temperature=0.7)
    x = torch.rand(16, 1, 8, 8) * 1.8 - 0.9
    u = g.encode(x)
    torch.testing.assert_close(g(u), x, atol=2e-5, rtol=0)
    u2 = torch.randn(16, 64)
    torch.testing.assert_close(g.encode(g(u2)), u2, atol=2e-4, rtol=0)


def _normflows_eps(flow, n, seed, dtype):
    """The standard normal draws normflows' own sample() makes, in its order (level 0 first)."""
    torch.manual_seed(seed)
    return torch.cat([torch.randn(n, *q.shape, dtype=dtype).flatten(1) for q in flow.q0], dim=1)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_same_samples_as_normflows(flow, temperature):
    """u is exactly the N(0, I) noise of the model's own sampler: sample(n, temperature=T) with a
    seed equals adapter(u) for that seed's draws, and encode() recovers those draws (in float64:
    in float32 the logit of the few saturated pixels of an untrained flow loses digits)."""
    flow = copy.deepcopy(flow).double()
    with torch.no_grad():
        torch.manual_seed(3)
        x_nf, _ = flow.sample(500, temperature=temperature)
    eps = _normflows_eps(flow, 500, 3, torch.float64)
    g = FlowGenerator(flow, temperature=temperature)
    with torch.no_grad():
        torch.testing.assert_close(g(eps), x_nf, atol=1e-10, rtol=0)
        u = g.encode(x_nf)
    torch.testing.assert_close(u, eps, atol=1e-8, rtol=0)
    assert abs(float(u.mean())) < 0.02 and abs(float(u.var()) - 1) < 0.02


def test_temperature_scales_latent(flow):
    u = torch.randn(8, 64)
    torch.testing.assert_close(FlowGenerator(flow, temperature=0.5)(u), FlowGenerator(flow)(0.5 * u))
    with pytest.raises(ValueError, match="temperature"):
        FlowGenerator(flow, temperature=0)


def test_gradients_reach_every_level(flow):
    g = FlowGenerator(flow)
    u = torch.randn(4, 64, requires_grad=True)
    g(u).square().sum().backward()
    for part in u.grad.split(g.level_sizes, dim=1):
        assert torch.isfinite(part).all() and part.abs().sum() > 0


def test_refine_leaves_flow_unchanged(flow):
    g = FlowGenerator(flow)
    torch.manual_seed(1)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    flow.zero_grad(set_to_none=True)   # (earlier tests backpropagated into it)
    flow.train()
    before, grads = _state(flow), [p.requires_grad for p in flow.parameters()]
    u = torch.randn(6, 64)
    out = dgflow.refine(g, critic, u, steps=2, eta=0.1)
    assert out.shape == u.shape and not torch.equal(out, u)
    after = flow.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in flow.parameters()] == grads and flow.training
    assert all(p.grad is None for p in flow.parameters())
    flow.eval()


def test_uninitialized_actnorm_refused_and_untouched():
    torch.manual_seed(0)
    fresh = glow(img_size=8, levels=2, blocks=1, hidden=4)
    g = FlowGenerator(fresh)
    assert uninitialized_actnorms(fresh)
    before = _state(fresh)
    with pytest.raises(RuntimeError, match="initialize_actnorm"):
        g(torch.randn(2, 64))
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_class_conditional_and_unknown_bases_refused():
    cond = nf.MultiscaleFlow([nf.distributions.GlowBase((4, 2, 2), num_classes=3)], [[nf.flows.Squeeze()]], [])
    with pytest.raises(ValueError, match="class-conditional"):
        FlowGenerator(cond)
    other = nf.NormalizingFlow(nf.distributions.GaussianMixture(2, 2), [nf.flows.Planar((2,))])
    with pytest.raises(TypeError, match="MultiscaleFlowLike"):
        FlowGenerator(other)
    with pytest.raises(TypeError, match="MultiscaleFlowLike"):
        FlowGenerator(nn.Linear(2, 2))


def test_single_level_normalizing_flow():
    torch.manual_seed(0)
    base = nf.distributions.DiagGaussian(3)
    with torch.no_grad():
        base.loc.fill_(2.0), base.log_scale.fill_(math.log(0.5))
    flow = nf.NormalizingFlow(base, [nf.flows.MaskedAffineFlow(torch.tensor([1.0, 0, 1]), nf.nets.MLP([3, 8, 3]))])
    g = FlowGenerator(flow)
    u = torch.randn(5, 3)
    x = g(u)
    torch.testing.assert_close(x, flow.forward_and_log_det(2.0 + 0.5 * u)[0])
    torch.testing.assert_close(g.encode(x), u, atol=1e-5, rtol=0)


class _ElementwiseFlow(nn.Module):
    """Another library's two-level flow: x = concat(exp(a) z_0, z_1 + b), through the protocol."""

    level_shapes = [(2,), (3,)]

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor([0.1, -0.2])), nn.Parameter(torch.ones(3))
        self.loc, self.log_scale = nn.Parameter(torch.zeros(1, 2) + 1), nn.Parameter(torch.zeros(1, 3) - 1)

    def base_loc_scale(self):
        return [(self.loc, torch.ones(1, 2)), (torch.zeros(1, 3), self.log_scale.exp())]

    def decode(self, zs):
        return torch.cat([zs[0] * self.a.exp(), zs[1] + self.b], dim=1)


def test_protocol_flow():
    flow = _ElementwiseFlow()
    assert isinstance(flow, MultiscaleFlowLike)
    g = FlowGenerator(flow)
    u = torch.randn(4, 5)
    expected = torch.cat([(1 + u[:, :2]) * flow.a.exp(), math.exp(-1) * u[:, 2:] + flow.b], dim=1)
    torch.testing.assert_close(g(u), expected)
    assert sum(1 for _ in g.parameters()) == 4          # registered: refine can freeze it
    before = _state(flow)
    dgflow.refine(g, lambda x: x.sum(1), u, steps=2, eta=0.1)
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())
    with pytest.raises(TypeError, match="encode"):
        g.encode(expected)
    with pytest.raises(ValueError, match=r"u must be a tensor of shape \(N, 5\)"):
        g(torch.randn(4, 6))
