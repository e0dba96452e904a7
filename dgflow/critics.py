"""Critic logit conventions (docs/design.md §1).

:func:`dgflow.refine` reads the critic's output as a logit d(x) ~ log mu(x)/rho(x): larger on
data than on generated samples.

==============  ============================================================  ==============
convention      what the model outputs                                        d(x)
==============  ============================================================  ==============
``"logit"``     pre-sigmoid logit of a non-saturating (``"ns"``) or hinge      output
                (``"hinge"``) discriminator, or a WGAN critic (``"wgan"``)
                trained so that it is larger on real data
``"neg"``       a critic trained with the opposite sign (smaller on real)     -output
``"prob"``      a probability D(x) in (0, 1) that x is real                   log D - log(1 - D)
==============  ============================================================  ==============

At the optimum of the non-saturating loss the logit *is* log mu/rho. A WGAN or hinge critic is
only monotone in it, and its scale is arbitrary, so the flow's effective step depends on it:
``temperature`` divides the logit (d = output / T), which is the same as scaling eta by 1/T for
the KL flow.

A probability is turned back into a logit as log D - log1p(-D), which loses nothing where D
carries the information: D is only clamped to the open interval the float type can represent
([tiny, 1 - eps], in float32 logits from about -87 to +16), so confidently rejected samples, the
ones refinement exists for, keep their gradient. Where D is exactly 0 or 1 the sigmoid has
already rounded the information away; there the logit is capped and its gradient is zero.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .models.modules import attach_modules

CONVENTIONS = {"logit": "logit", "ns": "logit", "hinge": "logit", "wgan": "logit", "neg": "neg",
               "prob": "prob"}


class LogitCritic(nn.Module):
    """Wrap a critic so that it returns d(x) in dgflow's convention, shape (N,)."""

    def __init__(self, critic: Callable[[torch.Tensor], torch.Tensor], convention: str = "logit",
                 temperature: float = 1.0):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: unknown {convention!r}; use one of {sorted(CONVENTIONS)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if isinstance(critic, nn.Module):
            self.module = critic
        else:
            attach_modules(self, critic)
        self.critic = critic
        self.kind = CONVENTIONS[convention]
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.critic(x)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if self.kind == "neg":
            out = -out
        elif self.kind == "prob":
            out = prob_to_logit(out)
        return out / self.temperature


def prob_to_logit(p: torch.Tensor) -> torch.Tensor:
    """log p - log(1 - p), with p clamped only to the open interval its float type represents."""
    fi = torch.finfo(p.dtype if p.is_floating_point() else torch.float32)
    p = p.clamp(fi.tiny, 1 - fi.eps)
    return torch.log(p) - torch.log1p(-p)


def as_logit(critic: Callable[[torch.Tensor], torch.Tensor], convention: str = "logit",
             temperature: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A critic in dgflow's logit convention (identity wrapper avoided when nothing changes)."""
    if CONVENTIONS.get(convention) == "logit" and temperature == 1.0:
        return critic
    return LogitCritic(critic, convention, temperature)


@torch.no_grad()
def thermalize_spectral_norm(critic: nn.Module, sample_input: Callable[[int], torch.Tensor],
                             iters: int = 5000, batch_size: int = 64) -> nn.Module:
    """Run ``iters`` forward passes in train mode, no gradient step, so that the power-iteration
    vectors of spectral-norm layers converge (as the DGflow authors do before refining).

    This deliberately changes the critic's spectral-norm buffers; it is never done implicitly.
    ``sample_input(n)`` returns a batch of inputs (e.g. random images). Returns ``critic``.
    """
    was_training = critic.training
    critic.train()
    try:
        for _ in range(iters):
            critic(sample_input(batch_size))
    finally:
        critic.train(was_training)
    return critic
