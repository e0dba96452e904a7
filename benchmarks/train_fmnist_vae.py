"""Train the Fashion-MNIST VAE base (a non-GAN model for ``vae_fmnist.py``) and save it as safetensors.

    python benchmarks/train_fmnist_vae.py        # -> benchmarks/results/bases/fmnist_vae.safetensors

:class:`~dgflow.models.arch.ConvVAE` (32-d z; encoder convs 32, 64, 128; decoder the GAN bases'
generator shape 128, 64, 32 at 32x32), negative ELBO with Bernoulli pixels
(:func:`~dgflow.models.arch.negative_elbo`), Adam 1e-3, batch 128, ``--epochs`` passes over the
60,000 train images (default 20), seeded. Standard settings, not tuned for refinement. The metadata records
the per-epoch mean loss and the time.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchlib import command_line
from benchlib.bases import FMNIST_VAE_FILE
from dgflow.data import fmnist
from dgflow.io import save_modules
from dgflow.models.arch import ConvVAE, negative_elbo

VAE_KWARGS = {"z_dim": 32, "in_channels": 1, "channels": [32, 64, 128], "img_size": 32}


def train_vae(x: torch.Tensor, epochs: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
              log=print) -> tuple[ConvVAE, list[float]]:
    """A seeded :class:`ConvVAE` fitted to images ``x`` (N, 1, 32, 32); returns it (eval mode) and
    the mean negative ELBO of every epoch."""
    torch.manual_seed(seed)
    vae = ConvVAE(**VAE_KWARGS)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed + 1)
    losses = []
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=rng)
        total, t0 = 0.0, time.perf_counter()
        for i in range(0, len(x), batch_size):
            batch = x[perm[i:i + batch_size]]
            loss = negative_elbo(vae, batch, rng).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(x))
        log(f"epoch {epoch + 1}/{epochs}: negative ELBO {losses[-1]:.2f} nats ({time.perf_counter() - t0:.0f} s)")
    return vae.eval(), losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", help="Fashion-MNIST idx directory (default: $DGFLOW_FMNIST_DIR or the Debian path)")
    p.add_argument("--limit", type=int, help="train on the first LIMIT train images only (smoke runs)")
    p.add_argument("--out", default=str(FMNIST_VAE_FILE))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    x = fmnist.load_tensor("train", a.data_dir)[0][: a.limit]
    t0, c0 = time.perf_counter(), time.process_time()
    vae, losses = train_vae(x, a.epochs, seed=a.seed)
    meta = {"class": "dgflow.models.arch:ConvVAE", "kwargs": VAE_KWARGS, "epochs": a.epochs, "seed": a.seed,
            "negative_elbo_by_epoch": losses, "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1), "threads": a.threads,
            "command": command_line(__file__, argv)}
    digest = save_modules(a.out, {"vae": vae}, meta)
    print(f"wrote {a.out} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
