"""`dgflow demo`: refine the shipped 2D WGAN-GP on 25Gaussians and show before/after.

The maths lives in :func:`run` (returns numbers and tensors); :func:`plot` draws the figure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import zoo
from .data import toy2d
from .flow import generate, refine, refine_defaults
from .metrics.toy2d import report

#: the zoo entry the demo refines (shipped inside the package, sha256-verified on load)
MODEL = "toy2d-25gaussians-wgangp"


@dataclass
class DemoResult:
    before: dict
    after: dict
    x_before: torch.Tensor
    x_after: torch.Tensor
    seconds: float
    settings: dict
    stop_reason: str = ""


def load_demo_model() -> zoo.ZooModel:
    """The shipped 25Gaussians WGAN-GP, from the packaged zoo (offline, sha256-verified)."""
    return zoo.load(MODEL, local_files_only=True)


def run(n: int = 5000, steps: int = 25, seed: int = 0, emd: bool = True, progress: bool = False,
        **refine_kwargs) -> DemoResult:
    """Draw ``n`` latents, refine them ``steps`` steps and score both sets against fresh data.

    ``refine_kwargs`` (eta, gamma, divergence, clip, ...) override :func:`dgflow.refine`'s
    defaults; the demo shows the defaults unless told otherwise.
    """
    model = load_demo_model()
    g, d = model.generator, model.critic
    rng = torch.Generator().manual_seed(seed)
    z = g.sample_prior(n, generator=rng)
    reference = toy2d.sample("25gaussians", n, rng) if emd else None
    t0 = time.perf_counter()
    z_ref, info = refine(g, d, z, steps=steps, generator_rng=rng, progress=progress, return_info=True,
                         **refine_kwargs)
    seconds = time.perf_counter() - t0
    x0, x1 = generate(g, z), generate(g, z_ref)
    settings = {**refine_settings(refine_kwargs), "n": n, "steps": steps, "seed": seed}
    return DemoResult(report("25gaussians", x0, reference), report("25gaussians", x1, reference),
                      x0, x1, seconds, settings, info.stop_reason)


def refine_settings(overrides: dict) -> dict:
    """refine()'s defaults of eta, gamma, divergence, clip and stop, updated with ``overrides``."""
    return {**refine_defaults("eta", "gamma", "divergence", "clip", "stop"), **overrides}


def table(res: DemoResult) -> str:
    """A small before/after text table."""
    rows = [("high-quality %", "hq", lambda v: f"{100 * v:.1f}"),
            ("modes covered (of 25)", "modes", str),
            ("modes with >=1% of HQ", "modes_1pct", str),
            ("EMD to fresh data", "emd", lambda v: f"{v:.4f}")]
    lines = [f"{'metric':<24}{'before':>10}{'after':>10}"]
    for label, key, fmt in rows:
        if key in res.before:
            lines.append(f"{label:<24}{fmt(res.before[key]):>10}{fmt(res.after[key]):>10}")
    return "\n".join(lines)


def plot(res: DemoResult, path: str | Path) -> Path:
    """Before/after scatter plots with the 25 mixture means, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = toy2d.gaussian_means()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, x, title, rep in ((axes[0], res.x_before, "base WGAN-GP", res.before),
                              (axes[1], res.x_after, f"DGflow ({res.settings['steps']} steps)", res.after)):
        ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.4, color="tab:blue", rasterized=True)
        ax.scatter(means[:, 0], means[:, 1], s=18, marker="x", color="tab:red")
        ax.set_title(f"{title}\nHQ {100 * rep['hq']:.1f}%, modes {rep['modes']}/25")
        ax.set_xlim(-5.5, 5.5)
        ax.set_ylim(-5.5, 5.5)
        ax.set_aspect("equal")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
