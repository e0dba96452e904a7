"""Per-sample drift weights s(d) of the f-divergences (docs/design.md §1).

With the critic logit d(x) ~ log mu(x)/rho(x) and r = rho/mu = exp(-d), the gradient flow of
the f-divergence moves a particle along ``-grad f'(r) = f''(r) r grad d = s(d) grad d``.

=============  ==============================  =================
name           f(r) (up to affine terms)       s(d)
=============  ==============================  =================
``kl``         r log r                         1
``js``         r log r - (1+r) log((1+r)/2)    sigmoid(d)
``logd``       (1+r) log(1+r)                  sigmoid(-d)
``rkl``        -log r                          exp(d)      (d clipped)
``pearson``    (r-1)^2                         2 exp(-d)   (d clipped)
=============  ==============================  =================

A user ``f`` (a callable acting elementwise on a tensor r) gets s(d) = f''(r) r by autograd.
"""
from __future__ import annotations

from typing import Callable, Union

import torch

Weight = Callable[[torch.Tensor], torch.Tensor]
DivergenceLike = Union[str, Callable[[torch.Tensor], torch.Tensor]]

#: logits are clipped to [-LOGIT_CLIP, LOGIT_CLIP] inside the exponential weights
LOGIT_CLIP = 20.0


def _kl(d: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(d)


def _js(d: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(d)


def _logd(d: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(-d)


def _rkl(d: torch.Tensor) -> torch.Tensor:
    return torch.exp(d.clamp(max=LOGIT_CLIP))


def _pearson(d: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.exp((-d).clamp(max=LOGIT_CLIP))


WEIGHTS: dict[str, Weight] = {"kl": _kl, "js": _js, "logd": _logd, "rkl": _rkl, "pearson": _pearson}
ALIASES = {"reverse-kl": "rkl", "reverse_kl": "rkl", "chi2": "pearson", "pearson-chi2": "pearson",
           "jensen-shannon": "js", "log-d": "logd"}


def make_weight(f: Callable[[torch.Tensor], torch.Tensor]) -> Weight:
    """Weight s(d) = f''(r) r at r = exp(-d) for a user's elementwise, twice-differentiable ``f``."""

    def weight(d: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            r = torch.exp(-d.detach().clamp(-LOGIT_CLIP, LOGIT_CLIP)).requires_grad_(True)
            fr = f(r)
            if not isinstance(fr, torch.Tensor) or fr.shape != r.shape:
                raise ValueError("divergence: a custom f must map a tensor r elementwise to a tensor "
                                 f"of the same shape {tuple(r.shape)}, got "
                                 f"{getattr(fr, 'shape', type(fr).__name__)}")
            (f1,) = torch.autograd.grad(fr.sum(), r, create_graph=True)
            if not f1.requires_grad:  # f is affine: f'' = 0
                return torch.zeros_like(d)
            (f2,) = torch.autograd.grad(f1.sum(), r)
        return (f2 * r).detach()

    probe = weight(torch.linspace(-5.0, 5.0, 11, dtype=torch.float64))
    if not bool(torch.isfinite(probe).all()):
        raise ValueError("divergence: the custom f gives a non-finite weight f''(r) r at r in [e^-5, e^5]; "
                         "f must be twice differentiable on r > 0")
    if not bool((probe != 0).any()):
        raise ValueError("divergence: the custom f has f''(r) = 0 at every r tried (it is affine), so its "
                         "flow does not move any sample; an f-divergence needs a strictly convex f, "
                         "e.g. f(r) = r log r (KL)")
    return weight


def get_weight(divergence: DivergenceLike) -> Weight:
    """Resolve a divergence name (see :data:`WEIGHTS`) or a user ``f`` into a weight function."""
    if callable(divergence):
        return make_weight(divergence)
    if isinstance(divergence, str):
        key = ALIASES.get(divergence.lower(), divergence.lower())
        if key in WEIGHTS:
            return WEIGHTS[key]
    raise ValueError(f"divergence: unknown divergence {divergence!r}; use one of "
                     f"{sorted(WEIGHTS)} or a callable f(r)")
