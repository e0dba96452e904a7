"""The small convolutional VAE (a non-GAN base): shapes, the negative ELBO's terms, trainability."""
import pytest
import torch
from torch.nn import functional as F

from dgflow.models.arch import ConvVAE, negative_elbo


@pytest.mark.parametrize("in_ch,size,channels", [(1, 32, (4, 8, 8)), (3, 48, (4, 8, 8)), (1, 28, (4, 8))])
def test_shapes_and_range(in_ch, size, channels):
    vae = ConvVAE(z_dim=6, in_channels=in_ch, channels=channels, img_size=size)
    mu, logvar = vae.encode(torch.randn(5, in_ch, size, size))
    assert mu.shape == logvar.shape == (5, 6)
    x = vae.decode(torch.randn(5, 6) * 10)
    assert x.shape == (5, in_ch, size, size) and float(x.detach().abs().max()) <= 1.0
    assert torch.equal(vae(torch.ones(2, 6)), vae.decode(torch.ones(2, 6)))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="z_dim"):
        ConvVAE(z_dim=0)
    with pytest.raises(ValueError, match="img_size"):
        ConvVAE(img_size=30)


def test_negative_elbo_is_reconstruction_plus_closed_form_kl():
    torch.manual_seed(0)
    vae = ConvVAE(z_dim=4, channels=(4, 8, 8)).eval()
    with torch.no_grad():  # q(z|x) = N(m, diag(exp(v))) with fixed m, v for every x
        vae.encoder.head.weight.zero_()
        vae.encoder.head.bias.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0, 0.3, -0.7, 0.0, 1.1]))
    m, v = vae.encoder.head.bias.detach()[:4], vae.encoder.head.bias.detach()[4:]
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    loss = negative_elbo(vae, x, torch.Generator().manual_seed(1))
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    p = ((vae.decode(m + (0.5 * v).exp() * eps) + 1) / 2).clamp(1e-6, 1 - 1e-6)
    rec = F.binary_cross_entropy(p, (x + 1) / 2, reduction="none").flatten(1).sum(1)
    kl = 0.5 * float((m ** 2 + v.exp() - 1 - v).sum())  # KL(N(m, e^v) || N(0, 1)), summed over dims
    torch.testing.assert_close(loss, rec + kl)
    assert kl > 0


def test_a_few_adam_steps_lower_the_negative_elbo():
    torch.manual_seed(0)
    vae = ConvVAE(z_dim=4, channels=(4, 8, 8))
    x = (torch.rand(8, 1, 32, 32) > 0.5).float() * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for i in range(30):
        loss = negative_elbo(vae, x, torch.Generator().manual_seed(i)).mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 10
