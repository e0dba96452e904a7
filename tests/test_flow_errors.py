"""Bad input to refine() gets an error that names the argument."""
import math

import pytest
import torch
from torch import nn

import dgflow

D = nn.Linear(2, 1)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(z=torch.randn(5)), ValueError, "z must have a batch dimension"),
    (dict(z=torch.zeros(5, 2, dtype=torch.long)), TypeError, "z must be a floating-point"),
    (dict(z=[[0.0, 1.0]]), TypeError, "z must be a torch.Tensor"),
    (dict(z=torch.tensor([[0.0, math.nan], [1.0, 1.0]])), ValueError, "z contains non-finite"),
    (dict(z=torch.tensor([[0.0, math.inf]])), ValueError, "z contains non-finite"),
    (dict(steps=-1), ValueError, "steps must be >= 0"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(eta=0.0), ValueError, "eta must be > 0"),
    (dict(eta=-0.1), ValueError, "eta must be > 0"),
    (dict(eta=math.nan), ValueError, "eta must be finite"),
    (dict(gamma=-0.01), ValueError, "gamma must be >= 0"),
    (dict(divergence="hellinger"), ValueError, "divergence: unknown divergence 'hellinger'"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(solver="rk45"), ValueError, "solver: unknown solver 'rk45'"),
    (dict(solver="dopri5", gamma=0.01), ValueError, "set gamma=0"),
    (dict(return_trajectory=0), ValueError, "return_trajectory must be >= 1"),
    (dict(generator_rng="seed"), TypeError, "generator_rng must be an int"),
])
def test_bad_arguments_are_named(kwargs, exc, match):
    args = dict(z=torch.randn(4, 2), steps=2)
    args.update(kwargs)
    z = args.pop("z")
    with pytest.raises(exc, match=match):
        dgflow.refine(None, D, z, **args)


@pytest.mark.parametrize("out_shape", [(4, 2), (3,), (4, 1, 1), ()])
def test_critic_output_of_wrong_shape(out_shape):
    with pytest.raises(ValueError, match=r"critic must return logits of shape \(N,\) or \(N, 1\) with N=4"):
        dgflow.refine(None, lambda x: torch.zeros(out_shape), torch.randn(4, 2), steps=1)


def test_critic_returning_non_tensor():
    with pytest.raises(TypeError, match="critic must return a torch.Tensor"):
        dgflow.refine(None, lambda x: 0.0, torch.randn(4, 2), steps=1)


def test_uncallable_models():
    with pytest.raises(TypeError, match="critic must be callable"):
        dgflow.refine(None, 3, torch.randn(4, 2))
    with pytest.raises(TypeError, match="generator must be callable"):
        dgflow.refine("G", D, torch.randn(4, 2))


def test_nan_mid_flow_names_the_step():
    # logit is finite until x[:, 0] passes 0.25, which happens at step 3 (eta=0.1, unit drift)
    def critic(x):
        d = x[:, 0].clone()
        return torch.where(x[:, 0] > 0.25, torch.full_like(d, math.nan), d)

    z = torch.zeros(3, 2)
    with pytest.raises(FloatingPointError, match="non-finite logits at step 3 for 3 of 3 samples"):
        dgflow.refine(None, critic, z, stop=None, steps=10, eta=0.1, gamma=0.0)


def test_inf_gradient_is_caught():
    def critic(x):
        return torch.sqrt(x[:, 0].abs())  # infinite gradient at 0

    with pytest.raises(FloatingPointError, match="non-finite logit gradients at step 0"):
        dgflow.refine(None, critic, torch.zeros(2, 2), steps=1, gamma=0.0)


def test_custom_f_with_wrong_output_shape():
    with pytest.raises(ValueError, match="divergence: a custom f must map"):
        dgflow.refine(None, D, torch.randn(4, 2), steps=1, divergence=lambda r: r.sum())
