"""Minimal GAN training used to build the project's own base models.

Three losses, with the critic's output read as a logit d(x) that is larger on real data:

* ``"wgan-gp"``: critic minimises E d(fake) - E d(real) + lambda * GP (Gulrajani et al. 2017);
  generator minimises -E d(fake).
* ``"ns"``: non-saturating GAN; critic minimises softplus(-d(real)) + softplus(d(fake)),
  generator minimises softplus(-d(fake)). At the optimum d = log mu/rho.
* ``"hinge"``: critic minimises relu(1 - d(real)) + relu(1 + d(fake)); generator -E d(fake).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

LOSSES = ("wgan-gp", "ns", "hinge")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E (||grad d(x_hat)|| - 1)^2 on random interpolates x_hat."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    t = torch.rand(shape, device=real.device, dtype=real.dtype)
    x_hat = (t * real + (1 - t) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def critic_loss(loss: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    if loss == "wgan-gp":
        return d_fake.mean() - d_real.mean()
    if loss == "ns":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if loss == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


def generator_loss(loss: str, d_fake: torch.Tensor) -> torch.Tensor:
    if loss == "ns":
        return F.softplus(-d_fake).mean()
    if loss in ("wgan-gp", "hinge"):
        return -d_fake.mean()
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


@dataclass
class GANConfig:
    loss: str = "wgan-gp"
    iters: int = 20000
    batch_size: int = 256
    n_critic: int = 5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    gp_weight: float = 10.0
    seed: int = 0


@dataclass
class GANHistory:
    critic: list[float] = field(default_factory=list)
    generator: list[float] = field(default_factory=list)


def train_gan(
    generator: nn.Module,
    critic: nn.Module,
    sample_real: Callable[[int], torch.Tensor],
    sample_z: Callable[[int], torch.Tensor],
    cfg: GANConfig,
    *,
    progress: bool = True,
    log_every: int = 100,
    start_iter: int = 0,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None,
    on_log: Callable[[int, float, float], None] | None = None,
) -> GANHistory:
    """Train ``generator`` and ``critic`` in place for ``cfg.iters`` generator updates.

    ``sample_real(n)`` and ``sample_z(n)`` return batches on the models' device.
    ``optimizers`` (generator's, critic's) may be given to resume a run.
    """
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {LOSSES}")
    if optimizers is None:
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=cfg.betas)
        opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=cfg.betas)
    else:
        opt_g, opt_d = optimizers
    hist = GANHistory()
    generator.train()
    critic.train()
    bar = tqdm(range(start_iter, cfg.iters), disable=not progress, desc=f"train {cfg.loss}")
    for it in bar:
        for _ in range(cfg.n_critic):
            real = sample_real(cfg.batch_size)
            with torch.no_grad():
                fake = generator(sample_z(cfg.batch_size))
            l_d = critic_loss(cfg.loss, critic(real), critic(fake))
            if cfg.loss == "wgan-gp":
                l_d = l_d + cfg.gp_weight * gradient_penalty(critic, real, fake)
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
        l_g = generator_loss(cfg.loss, critic(generator(sample_z(cfg.batch_size))))
        opt_g.zero_grad(set_to_none=True)
        l_g.backward()
        opt_g.step()
        if (it + 1) % log_every == 0:
            d_loss, g_loss = float(l_d.detach()), float(l_g.detach())
            hist.critic.append(d_loss)
            hist.generator.append(g_loss)
            bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.3f}")
            if on_log is not None:
                on_log(it + 1, d_loss, g_loss)
    generator.eval()
    critic.eval()
    return hist
