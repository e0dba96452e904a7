"""Train the character-level WGAN-GP text base on the fortunes corpus and save it as safetensors.

    python benchmarks/train_text_gan.py          # -> dgflow/weights/text_fortunes_wgangp.safetensors

The language model of Gulrajani et al. (2017, section 5.2), shrunk to train on one CPU thread:
:class:`~dgflow.models.arch.text.CharGenerator` (128-d z -> linear -> width x 32 -> residual
blocks of kernel-5 1D convolutions -> softmax over the vocabulary at each of the 32 positions)
and :class:`~dgflow.models.arch.text.CharCritic` (1x1 convolution of the (32, V) one-hot/softmax
sequence -> the same residual blocks -> linear). WGAN-GP exactly as the original: 10 critic steps
per generator step, gradient penalty 10, Adam 1e-4 (0.5, 0.9), batch 64; width 64 and 2 blocks
instead of 512 and 5 (0.68 CPU-s a generator iteration on one thread here: 6,000 iterations in
68 CPU-minutes). At 2,000 iterations (22 CPU-minutes) the base wrote letter soup (JS-4 0.81
against held-out text); the monitor below was still falling, so the run was resumed to 6,000.

Data: :func:`dgflow.data.text.load_corpus` (its docstring gives the vocabulary, the
normalisation and the train / held-out split); only the train split is read. ``--corpus`` points
it elsewhere (a directory or files, e.g. Billion Words).

The run is seeded and resumable: every ``--ckpt-every`` generator iterations the models,
optimisers and random states go to ``<ckpt-dir>/last.pt``; rerunning the same command continues
from there (``--fresh`` starts over). Losses go to a CSV log, with, at each checkpoint, JS-4 of
1,000 generated strings (fixed latents) against 10,000 *train* strings as a progress signal (the
held-out split is never touched here).
"""
from __future__ import annotations

import argparse
import json

import torch

from benchlib.resume import run_paths, run_training
from dgflow.data.text import FORTUNES_DIR, decode, load_corpus, one_hot
from dgflow.io import save_modules
from dgflow.metrics.text import NgramReference
from dgflow.models.arch.text import CharCritic, CharGenerator
from dgflow.training import GANConfig

LOG_FIELDS = ("iter", "critic_loss", "generator_loss", "seconds", "cpu_seconds", "js4_train_1k")
NAME = "text_fortunes_wgangp"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", default=[FORTUNES_DIR], help="text files or directories")
    p.add_argument("--iters", type=int, default=6000, help="generator iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--n-critic", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ckpt-dir", help=f"resume directory (default ~/.cache/dgflow/train/{NAME})")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--out", help=f"final safetensors (default dgflow/weights/{NAME}.safetensors)")
    p.add_argument("--log", help=f"loss CSV (default benchmarks/results/{NAME}_trainlog.csv)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    corpus = load_corpus(a.corpus)
    vocab = corpus.vocab
    arch = {"vocab": vocab, "seq_len": corpus.seq_len, "width": a.width, "blocks": a.blocks, "kernel": a.kernel}
    run = {"corpus": [str(p) for p in a.corpus], "corpus_settings": corpus.settings,
           "n_train": len(corpus.train), "seed": a.seed, "iters": a.iters, "batch": a.batch_size,
           "arch": {k: v for k, v in arch.items() if k != "vocab"}, "z_dim": a.z_dim,
           "n_critic": a.n_critic, "lr": a.lr, "betas": [0.5, 0.9], "gp_weight": 10.0}
    state_path, out, log_path = run_paths(NAME, a.ckpt_dir, a.out, a.log)

    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    g = CharGenerator(z_dim=a.z_dim, **arch).to(dev)
    d = CharCritic(**arch).to(dev)
    cfg = GANConfig(loss="wgan-gp", iters=a.iters, batch_size=a.batch_size, n_critic=a.n_critic,
                    lr=a.lr, betas=(0.5, 0.9), gp_weight=10.0, seed=a.seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    rng = torch.Generator(device=dev).manual_seed(a.seed + 1)
    train = corpus.train.to(dev)
    V = len(vocab)

    def sample_real(n: int) -> torch.Tensor:
        return one_hot(train[torch.randint(0, len(train), (n,), generator=rng, device=dev)], V)

    def sample_z(n: int) -> torch.Tensor:
        return torch.randn(n, a.z_dim, generator=rng, device=dev)

    # progress signal on the train split only; its own fixed latents, so the training RNG is untouched
    mon = torch.Generator().manual_seed(12345)
    mon_ref = NgramReference(decode(corpus.train[torch.randperm(len(corpus.train), generator=mon)[:10000]],
                                    vocab), ns=(4,))
    mon_z = torch.randn(1000, a.z_dim, generator=mon).to(dev)

    def monitor() -> tuple[float, list[str]]:
        was = g.training
        g.eval()
        with torch.no_grad():
            strings = decode(g(mon_z), vocab)
        g.train(was)
        return mon_ref(strings)["js4"], strings[:4]

    def at_checkpoint(it: int) -> tuple[list[str], str]:
        js4, examples = monitor()
        return [f"{js4:.5f}"], f", JS-4 (1k vs train) {js4:.4f}, e.g. {examples}"

    secs, cpu = run_training(NAME, g, d, (opt_g, opt_d), rng, run, cfg, sample_real, sample_z,
                             state_path=state_path, log_path=log_path, fields=LOG_FIELDS, fresh=a.fresh,
                             ckpt_every=a.ckpt_every, log_every=25, at_checkpoint=at_checkpoint, progress=False)
    meta = {**run, "logit_convention": "wgan", "vocab": vocab,
            "generator_class": "dgflow.models.arch.text:CharGenerator",
            "critic_class": "dgflow.models.arch.text:CharCritic",
            "train_seconds": round(secs, 1), "train_cpu_seconds": round(cpu, 1), "threads": a.threads}
    g.eval()
    d.eval()
    sha = save_modules(out, {"generator": g.cpu(), "critic": d.cpu()}, meta)
    print(json.dumps({**meta, "path": str(out), "sha256": sha}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
