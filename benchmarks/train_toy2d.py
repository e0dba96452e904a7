"""Train a 2D GAN base on a toy dataset and save it as safetensors.

    python benchmarks/train_toy2d.py --dataset 25gaussians --loss wgan-gp --seed 0 \
        --out dgflow/weights/toy2d_25gaussians_wgangp.safetensors

128-wide, 3-hidden-layer ReLU MLPs, 2-d latent, WGAN-GP lambda = 10, 5 critic steps per
generator step, Adam 1e-4 (0.5, 0.9), batch 256, 20k generator iterations (docs/design.md §5).
The recipe is :func:`benchlib.bases.train_toy2d`, which also trains the bases that
``toy2d_table.py`` caches.
"""
from __future__ import annotations

import argparse
import json

import torch

from benchlib.bases import TOY2D_ITERS, train_toy2d_base
from dgflow.data import toy2d


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="25gaussians", choices=toy2d.DATASETS)
    p.add_argument("--loss", default="wgan-gp", choices=["wgan-gp", "ns", "hinge"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=TOY2D_ITERS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(json.dumps(train_toy2d_base(a.out, a.dataset, a.loss, a.seed, a.iters)))


if __name__ == "__main__":
    main()
