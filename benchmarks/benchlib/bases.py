"""The generator/critic pairs the benchmarks refine.

* **Shipped GANs** (the Fashion-MNIST bases, the 25Gaussians WGAN-GP) are loaded with
  ``dgflow.zoo.load(name)`` only, so their sha256 is always verified; :func:`gan_model` names the
  image bases, :func:`weights_info` is what a result records about a zoo model's files.
* **2D toy bases** (benchmarks/train_toy2d.py's recipe): built, trained and saved by
  :func:`toy2d_nets` / :func:`train_toy2d_base`, cached under ``benchmarks/results/bases/``, found
  by :func:`toy2d_base_path` / :func:`cached_toy2d_bases` and loaded by :func:`load_toy2d_base`,
  which goes through the zoo whenever the file is a zoo model's weights.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

import torch

import dgflow.zoo
from dgflow.data import toy2d
from dgflow.io import load_modules, read_metadata, save_modules, sha256_of
from dgflow.models.arch import MLPCritic, MLPGenerator
from dgflow.training import GANConfig, train_gan

from . import BASES_DIR, display_path

IMAGE_GANS = ("wgangp", "sndcgan")  # the image GAN bases (benchmarks/train_fmnist_gan.py --base)
TOY2D_Z_DIM = 2
TOY2D_ITERS = 20000  # generator iterations of every 2D base of the benchmarks
TOY2D_LOSSES = ("wgan-gp", "ns")
TOY2D_ARCH = "MLPGenerator/MLPCritic width=128 depth=3"
FMNIST_VAE_FILE = BASES_DIR / "fmnist_vae.safetensors"  # train_fmnist_vae.py's output, vae_fmnist.py's base


# ----------------------------------------------------------------------------- zoo models
def gan_model(dataset: str, base: str) -> str:
    """The zoo name of ``dataset``'s GAN base ``base``, e.g. ``fmnist-wgangp`` (shipped); other
    datasets' bases are registered by ``train_fmnist_gan.py --zoo FILE``."""
    return f"{dataset}-{base}"


def weights_info(model: dgflow.zoo.ZooModel) -> dict:
    """What a result records about a zoo model: its name, weights file(s) and their sha256."""
    return {"model": model.name, "weights": ", ".join(display_path(p) for p in model.weights_paths),
            "sha256": ", ".join(sha256_of(p) for p in model.weights_paths)}


def _zoo_weights() -> dict[Path, str]:
    """Every local weights file of the zoo (resolved path -> model name)."""
    registry = dgflow.zoo.load_registry()
    return {wf.path.resolve(): name for name in registry.entries
            for wf in dgflow.zoo.weight_files(registry, name) if wf.path is not None}


# ----------------------------------------------------------------------------- 2D bases
def toy2d_nets(seed: int | None = None) -> tuple[MLPGenerator, MLPCritic]:
    """The 2D bases' generator and critic (128-wide, 3-layer ReLU MLPs); ``seed`` seeds torch's
    global generator first, for a reproducible initialisation (training)."""
    if seed is not None:
        torch.manual_seed(seed)
    return MLPGenerator(TOY2D_Z_DIM, 2), MLPCritic(2)


def train_toy2d(dataset: str, loss: str, seed: int, iters: int, progress: bool = True):
    """Train one 2D base: WGAN-GP (5 critic steps) or another loss (1), Adam 1e-4 (0.5, 0.9),
    seeded by ``seed``; returns (generator, critic, seconds)."""
    g, d = toy2d_nets(seed)
    rng = torch.Generator().manual_seed(seed + 1)
    cfg = GANConfig(loss=loss, iters=iters, seed=seed,
                    lr=1e-4, betas=(0.5, 0.9), n_critic=5 if loss == "wgan-gp" else 1)
    t0 = time.perf_counter()
    train_gan(g, d, lambda n: toy2d.sample(dataset, n, rng),
              lambda n: torch.randn(n, TOY2D_Z_DIM, generator=rng), cfg, progress=progress)
    return g, d, time.perf_counter() - t0


def train_toy2d_base(path: str | Path, dataset: str, loss: str, seed: int, iters: int,
                     progress: bool = True) -> dict:
    """Train a 2D base and save it to ``path`` with its recipe as metadata; returns the metadata
    with ``path`` and ``sha256``."""
    g, d, secs = train_toy2d(dataset, loss, seed, iters, progress=progress)
    meta = {"dataset": dataset, "loss": loss, "seed": seed, "iters": iters, "z_dim": TOY2D_Z_DIM,
            "arch": TOY2D_ARCH, "train_seconds": round(secs, 1)}
    sha = save_modules(path, {"generator": g, "critic": d}, meta)
    return {**meta, "path": str(path), "sha256": sha}


def toy2d_base_path(dataset: str, loss: str, seed: int, iters: int = TOY2D_ITERS,
                    bases_dir: str | Path = BASES_DIR) -> Path:
    """Where the 2D base (dataset, loss, training seed, iterations) is: the weights file of a zoo
    model whose metadata says it is that base (the shipped 25Gaussians WGAN-GP), else its cache
    file under ``bases_dir`` (which may not exist yet)."""
    for path in _zoo_weights():
        if path.is_file() and path.suffix == ".safetensors":
            meta = read_metadata(path)
            if tuple(meta.get(k) for k in ("dataset", "loss", "seed", "iters")) == (dataset, loss, seed, iters):
                return path
    return Path(bases_dir) / f"{dataset}_{loss}_s{seed}_it{iters}.safetensors"


def cached_toy2d_bases(seeds: Iterable[int], datasets: Iterable[str] = toy2d.DATASETS,
                       losses: Iterable[str] = TOY2D_LOSSES, iters: int = TOY2D_ITERS,
                       bases_dir: str | Path = BASES_DIR) -> list[dict]:
    """The 2D bases that exist (shipped or cached), in the order dataset, loss, seed: each a dict
    of ``dataset``, ``loss``, ``base_seed`` and ``path``."""
    found = []
    for dataset in datasets:
        for loss in losses:
            for seed in seeds:
                path = toy2d_base_path(dataset, loss, seed, iters, bases_dir)
                if path.is_file():
                    found.append({"dataset": dataset, "loss": loss, "base_seed": seed, "path": str(path)})
    return found


def load_toy2d_base(path: str | Path):
    """(generator, critic) of the 2D base in ``path``, eval mode: through ``dgflow.zoo.load`` when
    ``path`` is a zoo model's weights (sha256 verified), else built and loaded from the cache file."""
    name = _zoo_weights().get(Path(path).resolve())
    if name is not None:
        model = dgflow.zoo.load(name)
        return model.generator, model.critic
    if not Path(path).is_file():
        raise FileNotFoundError(f"2D base {path} not found: train it with benchmarks/toy2d_table.py "
                                "--train-only (or benchmarks/train_toy2d.py --out ...)")
    g, d = toy2d_nets()
    load_modules(path, {"generator": g, "critic": d})
    return g.eval(), d.eval()


def register_gan_base(zoo: str | Path, name: str, weights: Path, meta: dict) -> None:
    """Add a base trained by ``train_fmnist_gan.py`` (its weights file and metadata ``meta``) to the
    zoo yaml ``zoo`` as ``name``, with refine's defaults as its settings."""
    dgflow.zoo.register(name, weights, zoo=zoo, generator=meta["generator_class"],
                        generator_kwargs=meta["generator"], critic=meta["critic_class"],
                        critic_kwargs=meta["critic"], z_dim=meta["generator"]["z_dim"],
                        dataset=meta["dataset"], convention=meta["logit_convention"],
                        description=f"{meta['base']} base trained by benchmarks/train_fmnist_gan.py "
                                    f"({meta['iters']} generator iterations, seed {meta['seed']})",
                        overwrite=True)
    print(f"registered {name} in {zoo}", flush=True)
