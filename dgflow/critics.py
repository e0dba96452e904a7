"""Critic logit conventions (DESIGN.md §1).

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
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

CONVENTIONS = {"logit": "logit", "ns": "logit", "hinge": "logit", "wgan": "logit", "neg": "neg",
               "prob": "prob"}


class LogitCritic(nn.Module):
    """Wrap a critic so that it returns d(x) in dgflow's convention, shape (N,)."""

    def __init__(self, critic: Callable[[torch.Tensor], torch.Tensor], convention: str = "logit",
                 temperature: float = 1.0, eps: float = 1e-6):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: unknown {convention!r}; use one of {sorted(CONVENTIONS)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if isinstance(critic, nn.Module):
            self.module = critic
        self.critic = critic
        self.kind = CONVENTIONS[convention]
        self.temperature = float(temperature)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.critic(x)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if self.kind == "neg":
            out = -out
        elif self.kind == "prob":
            p = out.clamp(self.eps, 1 - self.eps)
            out = torch.log(p) - torch.log1p(-p)
        return out / self.temperature


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
