"""refine(): reproducibility, chunking, devices/dtypes, models left untouched, trajectories."""

import pytest
import torch
from torch import nn

import dgflow


def make_pair():
    g = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    d = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(2, 16)), nn.LeakyReLU(0.2),
                      nn.Linear(16, 1))
    return g, d


def snapshot(m):
    return ({k: v.clone() for k, v in m.state_dict().items()},
            {n: p.requires_grad for n, p in m.named_parameters()},
            {n: s.training for n, s in m.named_modules()})


def test_models_come_back_exactly_as_they_were():
    g, d = make_pair()
    g.train()
    d.eval()
    d[0].train()  # mixed modes must survive
    g[0].weight.requires_grad_(False)  # mixed requires_grad flags too
    with torch.no_grad():  # warm batch-norm statistics so they are not trivially zero
        g(torch.randn(64, 4))
    before = snapshot(g), snapshot(d)
    dgflow.refine(g, d, torch.randn(32, 4), steps=3, eta=0.1, gamma=0.01, batch_size=10)
    after = snapshot(g), snapshot(d)
    for (sd0, rg0, tr0), (sd1, rg1, tr1) in zip(before, after):
        assert sd0.keys() == sd1.keys()
        assert all(torch.equal(sd0[k], sd1[k]) for k in sd0), "a parameter or buffer changed"
        assert rg0 == rg1
        assert tr0 == tr1
    assert all(p.grad is None for m in (g, d) for p in m.parameters())


def test_models_restored_even_when_refine_raises():
    g, d = make_pair()
    g.train()
    flags = snapshot(g)[1:]

    def bad_critic(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        dgflow.refine(g, bad_critic, torch.randn(4, 4), steps=2)
    assert snapshot(g)[1:] == flags


def test_same_seed_same_output_and_different_seed_differs():
    g, d = make_pair()
    z = torch.randn(20, 4)
    a = dgflow.refine(g, d, z, stop=None, steps=3, generator_rng=7)
    b = dgflow.refine(g, d, z, stop=None, steps=3, generator_rng=torch.Generator().manual_seed(7))
    c = dgflow.refine(g, d, z, stop=None, steps=3, generator_rng=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("batch_size", [1, 7, 20, 64])
def test_chunked_equals_unchunked(batch_size):
    g, d = make_pair()
    z = torch.randn(20, 4)
    full = dgflow.refine(g, d, z, steps=4, generator_rng=0)
    chunked = dgflow.refine(g, d, z, steps=4, generator_rng=0, batch_size=batch_size)
    assert torch.allclose(full, chunked, rtol=0, atol=1e-6)


def test_input_not_modified_and_dtype_device_kept():
    g, d = make_pair()
    g, d = g.double(), d.double()
    z = torch.randn(9, 4, dtype=torch.float64)
    z0 = z.clone()
    out = dgflow.refine(g, d, z, steps=2)
    assert torch.equal(z, z0)
    assert out.dtype == torch.float64 and out.device == z.device and out.shape == z.shape
    assert not out.requires_grad


def test_column_logits_and_conv_latents_accepted():
    g = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    out = dgflow.refine(g, nn.Linear(2, 1), torch.randn(5, 6, 1, 1), steps=2)  # (N, 1) logits
    assert out.shape == (5, 6, 1, 1)


def test_trajectory_every_k_includes_last_step():
    d = nn.Linear(2, 1)
    z = torch.randn(4, 2)
    out, traj = dgflow.refine(None, d, z, stop=None, steps=5, return_trajectory=2, generator_rng=0)
    assert traj.shape == (4, 4, 2)  # steps 0, 2, 4, 5
    assert torch.equal(traj[0], z) and torch.equal(traj[-1], out)
    steps_zero = dgflow.refine(None, d, z, stop=None, steps=0)
    assert torch.equal(steps_zero, z) and steps_zero is not z


def test_callback_gets_grad_when_it_asks_and_progress_runs():
    d = nn.Linear(3, 1)
    grads = []
    dgflow.refine(None, d, torch.randn(5, 3), steps=2, progress=True,
                  callback=lambda step, z, logits, grad: grads.append(grad.clone()))
    assert len(grads) == 2
    assert torch.allclose(grads[0], d.weight.detach().expand(5, 3))


def test_bound_method_generator_and_no_grad_context():
    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.dec = nn.Linear(3, 2)

        def decode(self, z):
            return self.dec(z)

    vae = VAE().train()
    with torch.no_grad():  # refine must still work inside a user's no_grad block
        out = dgflow.refine(vae.decode, nn.Linear(2, 1), torch.randn(4, 3), steps=2, gamma=0.0)
    assert vae.training and all(p.requires_grad for p in vae.parameters())
    assert not torch.equal(out, torch.zeros_like(out))


def test_generate_decodes_in_chunks_without_grad():
    g, _ = make_pair()
    g.eval()
    z = torch.randn(10, 4)
    x = dgflow.generate(g, z, batch_size=3)
    assert x.shape == (10, 2) and not x.requires_grad
    assert torch.allclose(x, g(z).detach(), atol=1e-6)
