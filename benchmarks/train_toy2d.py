"""Train a 2D GAN base on a toy dataset and save it as safetensors.

    python benchmarks/train_toy2d.py --dataset 25gaussians --loss wgan-gp --seed 0 \
        --out dgflow/weights/toy2d_25gaussians_wgangp.safetensors

128-wide, 3-hidden-layer ReLU MLPs, 2-d latent, WGAN-GP lambda = 10, 5 critic steps per
generator step, Adam 1e-4 (0.5, 0.9), batch 256, 20k generator iterations (DESIGN.md §5).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from dgflow.data import toy2d
from dgflow.io import save_modules
from dgflow.models.arch import MLPCritic, MLPGenerator
from dgflow.training import GANConfig, train_gan

Z_DIM = 2


def build(seed: int):
    torch.manual_seed(seed)
    return MLPGenerator(Z_DIM, 2), MLPCritic(2)


def train(dataset: str, loss: str, seed: int, iters: int, progress: bool = True):
    """Train one base; returns (generator, critic, seconds)."""
    g, d = build(seed)
    rng = torch.Generator().manual_seed(seed + 1)
    cfg = GANConfig(loss=loss, iters=iters, seed=seed,
                    lr=1e-4, betas=(0.5, 0.9), n_critic=5 if loss == "wgan-gp" else 1)
    t0 = time.perf_counter()
    train_gan(g, d, lambda n: toy2d.sample(dataset, n, rng),
              lambda n: torch.randn(n, Z_DIM, generator=rng), cfg, progress=progress)
    return g, d, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="25gaussians", choices=toy2d.DATASETS)
    p.add_argument("--loss", default="wgan-gp", choices=["wgan-gp", "ns", "hinge"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=20000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    g, d, secs = train(a.dataset, a.loss, a.seed, a.iters)
    meta = {"dataset": a.dataset, "loss": a.loss, "seed": a.seed, "iters": a.iters, "z_dim": Z_DIM,
            "arch": "MLPGenerator/MLPCritic width=128 depth=3", "train_seconds": round(secs, 1)}
    sha = save_modules(a.out, {"generator": g, "critic": d}, meta)
    print(json.dumps({**meta, "path": a.out, "sha256": sha}))


if __name__ == "__main__":
    main()
