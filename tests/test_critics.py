import math

import pytest
import torch

from dgflow.critics import LogitCritic, as_logit, thermalize_spectral_norm


def test_conventions():
    x = torch.tensor([[0.2], [0.5], [0.9]])
    ident = lambda t: t  # noqa: E731
    assert as_logit(ident, "wgan") is ident
    assert torch.allclose(LogitCritic(ident, "neg")(x), -x[:, 0])
    p = LogitCritic(ident, "prob")(x)
    assert torch.allclose(p, torch.log(x[:, 0] / (1 - x[:, 0])), atol=1e-6)
    assert torch.allclose(as_logit(ident, "ns", temperature=2.0)(x), x[:, 0] / 2)


def test_convention_errors():
    with pytest.raises(ValueError, match="convention: unknown 'sigmoid'"):
        LogitCritic(lambda t: t, "sigmoid")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LogitCritic(lambda t: t, "logit", temperature=0)


def test_thermalize_converges_spectral_norm_and_restores_mode():
    torch.manual_seed(0)
    lin = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(8, 8))
    lin.eval()
    thermalize_spectral_norm(lin, lambda n: torch.randn(n, 8), iters=200, batch_size=2)
    assert not lin.training
    sigma = torch.linalg.matrix_norm(lin.weight.detach(), ord=2)
    assert math.isclose(float(sigma), 1.0, rel_tol=1e-3)
