"""Shapes, ranges and argument errors of the DCGAN-style image networks."""
import pytest
import torch

from dgflow.io import load_modules, save_modules
from dgflow.models.arch import DCGANGenerator, SmallCNNClassifier, SNDCGANDiscriminator, WGANGPCritic


@pytest.mark.parametrize("bottom,channels,out_ch,size", [(4, (8, 4, 2), 1, 32), (6, (8, 4, 2), 3, 48),
                                                         (7, (4, 2), 1, 28)])
def test_generator_shape_and_range(bottom, channels, out_ch, size):
    g = DCGANGenerator(z_dim=5, channels=channels, out_channels=out_ch, bottom=bottom)
    x = g(torch.randn(3, 5) * 10)
    assert x.shape == (3, out_ch, size, size) and g.img_size == size
    assert float(x.detach().abs().max()) <= 1.0


@pytest.mark.parametrize("cls", [WGANGPCritic, SNDCGANDiscriminator])
@pytest.mark.parametrize("in_ch,size", [(1, 32), (3, 48)])
def test_critics_return_one_logit_per_sample(cls, in_ch, size):
    d = cls(in_channels=in_ch, channels=(4, 8, 8), img_size=size)
    assert d(torch.randn(5, in_ch, size, size)).shape == (5,)


def test_critic_rejects_indivisible_size():
    with pytest.raises(ValueError, match="img_size"):
        WGANGPCritic(channels=(4, 8, 8), img_size=28)
    with pytest.raises(ValueError, match="channels"):
        DCGANGenerator(channels=())


def test_spectral_norm_bounds_the_critic_layers():
    torch.manual_seed(0)
    d = SNDCGANDiscriminator(channels=(4, 8, 8))
    d.train()
    for _ in range(30):  # power iterations converge in train mode
        d(torch.randn(2, 1, 32, 32))
    d.eval()
    with torch.no_grad():
        sigma = float(torch.linalg.matrix_norm(d.head.weight, ord=2))
        raw = float(torch.linalg.matrix_norm(d.head.parametrizations.weight.original, ord=2))
    assert sigma == pytest.approx(1.0, abs=0.05) and raw != pytest.approx(1.0, abs=0.05)
    plain = WGANGPCritic(channels=(4, 8, 8))
    assert not hasattr(plain.head, "parametrizations")


def test_wgan_critic_supports_double_backward():
    d = WGANGPCritic(channels=(4, 8, 8))
    x = torch.randn(3, 1, 32, 32, requires_grad=True)
    (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    g.norm().backward()
    assert all(m.weight.grad is not None and bool(m.weight.grad.abs().sum() > 0)
               for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_classifier_features_and_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    c = SmallCNNClassifier(channels=(4, 8), feat_dim=6).eval()
    d = SNDCGANDiscriminator(channels=(4, 8, 8)).eval()
    x = torch.randn(4, 1, 32, 32)
    assert c(x).shape == (4, 10) and c.features(x).shape == (4, 6)
    save_modules(tmp_path / "m.safetensors", {"classifier": c, "critic": d})
    c2, d2 = SmallCNNClassifier(channels=(4, 8), feat_dim=6).eval(), SNDCGANDiscriminator(channels=(4, 8, 8)).eval()
    load_modules(tmp_path / "m.safetensors", {"classifier": c2, "critic": d2})
    torch.testing.assert_close(c2(x), c(x))
    torch.testing.assert_close(d2(x), d(x))
