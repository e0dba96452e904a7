"""Baselines with the call shape of :func:`dgflow.refine` (docs/design.md §2).

Flow-type methods take latents and return latents, spending gradient steps:

* :func:`ddls` — Langevin dynamics on ||z||²/2 − d(G(z)) (Che et al. 2020);
* :func:`dot` — per-sample latent transport ||z − z_y|| − d(G(z))/K_eff (Tanaka 2019).

Rejection-type methods draw from the prior and spend generator calls; they return
``(z, info)`` with the acceptance rate and the generator evaluations used:

* :func:`drs` — discriminator rejection sampling (Azadi et al. 2019);
* :func:`mhgan` — independence Metropolis–Hastings over generator proposals (Turner et al. 2019).

DRS and MH-GAN read the critic's logit as log mu/rho, scale included: calibrate an arbitrary
critic first, e.g. ``dgflow.calibration.calibrate(critic, x_real, x_fake, "platt")``.
"""
from .ddls import ddls
from .dot import dot, dot_objective, estimate_k_eff
from .drs import drs
from .mhgan import mhgan

__all__ = ["ddls", "dot", "dot_objective", "estimate_k_eff", "drs", "mhgan"]
