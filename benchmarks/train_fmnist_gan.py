"""Train a Fashion-MNIST GAN base (WGAN-GP, SN-DCGAN, or another recipe) and save it as safetensors.

    python benchmarks/train_fmnist_gan.py --base wgangp      # -> dgflow/weights/fmnist_wgangp.safetensors
    python benchmarks/train_fmnist_gan.py --base sndcgan     # -> dgflow/weights/fmnist_sndcgan.safetensors

Both bases share the generator (:class:`~dgflow.models.arch.DCGANGenerator`, 64-d z -> 128x4x4 ->
64, 32, 1 channels at 32x32) and the critic's shape (stride-2 convs 32, 64, 128 -> linear):

* ``wgangp``: :class:`~dgflow.models.arch.WGANGPCritic`, WGAN-GP (lambda = 10, 5 critic steps per
  generator step), Adam 2e-4 (0.5, 0.9), batch 64 (Gulrajani et al. 2017, with a doubled lr).
* ``sndcgan``: :class:`~dgflow.models.arch.SNDCGANDiscriminator`, non-saturating loss, 1 critic
  step, Adam 2e-4 (0.5, 0.999), batch 64 (Miyato et al. 2018).

Four more recipes give the safe-defaults study other kinds of base (none is tuned; each trains in
3–8 CPU-minutes): ``hinge`` (the SN discriminator with the hinge loss, 3,000 iterations),
``dcgan`` (a batch-norm discriminator without spectral norm, non-saturating loss, Adam
(0.5, 0.999), 3,000 iterations), ``sndcgan-short`` (the SN-DCGAN recipe stopped at 1,000
iterations) and ``sndcgan-small`` (the SN-DCGAN recipe with a generator of half the width,
channels 64, 32, 16; 3,000 iterations).

The run is seeded and resumable: every ``--ckpt-every`` generator iterations the models,
optimisers and random states go to ``<ckpt-dir>/last.pt``; rerunning the same command continues
from there (``--fresh`` starts over). Losses are appended to a CSV log. One thread by default.
The same script trains a CIFAR10/STL10 base from a GPU config: ``--config benchmarks/configs/...``;
``--zoo FILE`` then registers it in a zoo yaml as ``<dataset>-<base>``, where ``fid_table.py
--zoo FILE`` finds it (the Fashion-MNIST bases are in the packaged zoo).
"""
from __future__ import annotations

import argparse
import json

import torch

from benchlib.bases import gan_model, register_gan_base
from benchlib.images import load_images, resolve
from benchlib.resume import run_paths, run_training
from dgflow.io import save_modules
from dgflow.models.arch import DCGANDiscriminator, DCGANGenerator, SNDCGANDiscriminator, WGANGPCritic
from dgflow.training import GANConfig

BASES = {
    "wgangp": dict(critic="WGANGPCritic", loss="wgan-gp", n_critic=5, lr=2e-4, betas=(0.5, 0.9), iters=2400),
    "sndcgan": dict(critic="SNDCGANDiscriminator", loss="ns", n_critic=1, lr=2e-4, betas=(0.5, 0.999),
                    iters=8000),
    "hinge": dict(critic="SNDCGANDiscriminator", loss="hinge", n_critic=1, lr=2e-4, betas=(0.5, 0.999),
                  iters=3000),
    "dcgan": dict(critic="DCGANDiscriminator", loss="ns", n_critic=1, lr=2e-4, betas=(0.5, 0.999), iters=3000),
    "sndcgan-short": dict(critic="SNDCGANDiscriminator", loss="ns", n_critic=1, lr=2e-4, betas=(0.5, 0.999),
                          iters=1000),
    "sndcgan-small": dict(critic="SNDCGANDiscriminator", loss="ns", n_critic=1, lr=2e-4, betas=(0.5, 0.999),
                          iters=3000, generator={"channels": [64, 32, 16]}),
}
CRITICS = {"WGANGPCritic": WGANGPCritic, "SNDCGANDiscriminator": SNDCGANDiscriminator,
           "DCGANDiscriminator": DCGANDiscriminator}
LOG_FIELDS = ("iter", "critic_loss", "generator_loss", "seconds", "cpu_seconds")


def build_models(g_kwargs: dict, critic: str, d_kwargs: dict, seed: int):
    """Seeded generator and critic."""
    torch.manual_seed(seed)
    return DCGANGenerator(**g_kwargs), CRITICS[critic](**d_kwargs)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", choices=sorted(BASES), required=True)
    p.add_argument("--config", help="YAML config (benchmarks/configs/*.yaml) overriding the Fashion-MNIST setup")
    p.add_argument("--iters", type=int, help="generator iterations (default per base)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", help="dataset directory (default: the loader's own)")
    p.add_argument("--ckpt-dir", help="resume directory (default ~/.cache/dgflow/train/<dataset>_<base>)")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--out", help="final safetensors (default dgflow/weights/<dataset>_<base>.safetensors)")
    p.add_argument("--log", help="loss CSV (default benchmarks/results/<dataset>_<base>_trainlog.csv)")
    p.add_argument("--zoo", help="also register the result in this zoo yaml as <dataset>-<base> "
                                 "(created if absent, an earlier entry of that name replaced)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    setup = resolve(a.config)
    base = dict(BASES[a.base], **setup.get("bases", {}).get(a.base, {}))
    name = f"{setup['dataset']}_{a.base}"
    iters = a.iters or base["iters"]
    g_kwargs = {**setup["generator"], **base.get("generator", {})}
    run = {"base": a.base, "dataset": setup["dataset"], "seed": a.seed, "iters": iters, "batch": a.batch_size,
           "generator": g_kwargs, "critic": setup["critic"], "lr": base["lr"],
           "betas": list(base["betas"]), "n_critic": base["n_critic"]}
    state_path, out, log_path = run_paths(name, a.ckpt_dir, a.out, a.log)

    dev = torch.device(a.device)
    real = load_images(setup["dataset"], "train", a.data_dir).to(dev)
    g, d = build_models(g_kwargs, base["critic"], setup["critic"], a.seed)
    g, d = g.to(dev), d.to(dev)
    cfg = GANConfig(loss=base["loss"], iters=iters, batch_size=a.batch_size, n_critic=base["n_critic"],
                    lr=base["lr"], betas=tuple(base["betas"]), seed=a.seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    rng = torch.Generator(device=dev).manual_seed(a.seed + 1)
    z_dim = g_kwargs["z_dim"]

    def sample_real(n: int) -> torch.Tensor:
        return real[torch.randint(0, len(real), (n,), generator=rng, device=dev)]

    def sample_z(n: int) -> torch.Tensor:
        return torch.randn(n, z_dim, generator=rng, device=dev)

    secs, cpu = run_training(name, g, d, (opt_g, opt_d), rng, run, cfg, sample_real, sample_z,
                             state_path=state_path, log_path=log_path, fields=LOG_FIELDS, fresh=a.fresh,
                             ckpt_every=a.ckpt_every, log_every=50)
    meta = {**run, "logit_convention": {"wgan-gp": "wgan", "hinge": "hinge"}.get(base["loss"], "ns"),
            "generator_class": "dgflow.models.arch.dcgan:DCGANGenerator",
            "critic_class": f"dgflow.models.arch.dcgan:{base['critic']}",
            "train_seconds": round(secs, 1), "train_cpu_seconds": round(cpu, 1), "threads": a.threads}
    sha = save_modules(out, {"generator": g.cpu(), "critic": d.cpu()}, meta)
    print(json.dumps({**meta, "path": str(out), "sha256": sha}), flush=True)
    if a.zoo:
        register_gan_base(a.zoo, gan_model(setup["dataset"], a.base), out, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
