"""DGflow on a model that is not a GAN: the Fashion-MNIST VAE, with critics fitted by ``fit_critic``.

    python benchmarks/train_fmnist_vae.py     # once (about 10 min on 2 CPU cores)
    python benchmarks/vae_fmnist.py           # N = 5,000, FMNIST-CNN features

A VAE has no discriminator, so the critic is fitted after training (docs/design.md §1, the
density-ratio corrector), each with :func:`dgflow.fit_critic`'s defaults on 10,000 train-split
images against 10,000 VAE samples (fresh latents, not the evaluated ones):

* ``mlp``: a fresh critic, fit_critic's default MLP on the pixels;
* ``conv``: a fresh :class:`~dgflow.models.arch.SNDCGANDiscriminator` (untrained) as ``critic=``;
* ``corrector``: d = D0 + C, D0 the shipped SN-DCGAN discriminator (trained against a GAN, never
  against this VAE) and C the default MLP.

Each critic then goes through ``fid_table.py``'s evaluation unchanged: DGflow with ``refine``'s
defaults and with the paper's scheme (KL, eta 0.1, gamma 0.01, no drift cap), DDLS and DOT at the
same number of gradient steps, test FID every 5 steps, and the two stopping rules that do not
look at the test split (validation FID against 10,000 other train images; LogitMatch with 2,000
others). Then ``refine``'s defaults again with a larger budget, ``--long-steps`` (200), FID every
``--long-every`` (10) steps, to see where the two stopping rules end the flow when 25 steps are
not enough. Nothing is tuned. The train-split images of the three uses are disjoint. Writes
``benchmarks/results/vae_fmnist.{json,md}``, ``vae_fmnist_steps.png`` and ``vae_fmnist_samples_<critic>.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import dgflow
import dgflow.zoo
from benchlib import RESULTS, command_line, display_path, evaluation
from benchlib.bases import FMNIST_VAE_FILE
from benchlib.images import train_splits
from dgflow.io import load_modules, read_metadata, sha256_of
from dgflow.models.arch import ConvVAE, SNDCGANDiscriminator
CRITICS = ("mlp", "conv", "corrector")
LABELS = {"mlp": "VAE, fresh MLP critic", "conv": "VAE, fresh conv critic", "corrector": "VAE, corrector D0 + C"}


def load_vae(path: Path, device: torch.device) -> tuple[ConvVAE, dict]:
    meta = read_metadata(path)
    vae = ConvVAE(**meta["kwargs"])
    load_modules(path, {"vae": vae})
    return vae.to(device).eval(), meta


def fit(kind: str, real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[torch.nn.Module, dict]:
    """The critic ``kind`` fitted with fit_critic's defaults, and what the fit reports."""
    kw = {}
    if kind == "conv":
        torch.manual_seed(seed)
        kw["critic"] = SNDCGANDiscriminator()
    elif kind == "corrector":
        kw["base"] = dgflow.zoo.load("fmnist-sndcgan", device=real.device).critic
    t0 = time.perf_counter()
    critic = dgflow.fit_critic(real, fake, seed=seed, **kw)
    info = critic.info
    report = {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": info.best_epoch,
              "epochs_run": info.epochs_run, "val_loss_best": min(info.val_loss),
              "calibration": {"a": float(critic.calibration.a), "b": float(critic.calibration.b),
                              "applied": bool(info.calibration_test.get("applied"))},
              "val_before": info.val_before, "val_after": info.val_after}
    print(f"critic {kind}: {report}", flush=True)
    return critic, report


def long_run(g, critic, z: torch.Tensor, ext, refs: dict, fa: argparse.Namespace, steps: int, every: int) -> dict:
    """refine's defaults for up to ``steps`` steps through :func:`evaluation.evaluate_models`: test
    and validation FID every ``every`` steps, and the steps LogitMatch and the validation FID choose."""
    long = argparse.Namespace(**{**vars(fa), "steps": steps, "every": every})
    out, _ = evaluation.evaluate_models("long run", g, critic, z, {"DGflow defaults": (dgflow.refine, {})}, ext,
                                       refs, long, {})
    return {"every": every, **out["methods"]["DGflow defaults"]}


def long_markdown(res: dict) -> str:
    lines = ["", f"## refine's defaults with up to {res['long_steps']} steps", "",
             "| critic | FID@0 | best on the grid: step → FID | val stop: step → FID (change) | "
             "logit stop: step → FID (change) |", "|---|---|---|---|---|"]
    for label, r in res["bases"].items():
        m, base = r.get("long"), r["fid_base"]
        if not m:
            continue
        best = min(m["fid_by_step"], key=m["fid_by_step"].get)
        cell = lambda k: (f"{m['stops'][k]}{'' if k != 'logit match' or m['logit_reached'] else ' (not reached)'} → "  # noqa: E731
                          f"{m['fid_at_stop'][k]:.2f} ({100 * (m['fid_at_stop'][k] - base) / base:+.1f}%)")
        lines.append(f"| {label} | {base:.2f} | {best} → {m['fid_by_step'][best]:.2f} | {cell('validation')} | "
                     f"{cell('logit match')} |")
    return "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--critics", nargs="+", choices=CRITICS, default=list(CRITICS))
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--long-steps", type=int, default=200, help="budget of the long run of the defaults (0: skip)")
    p.add_argument("--long-every", type=int, default=10)
    p.add_argument("--vae", default=str(FMNIST_VAE_FILE))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--cache", help="cache root for reference statistics (default ~/.cache/dgflow)")
    p.add_argument("--out", default=str(RESULTS / "vae_fmnist"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    # fid_table.py's evaluation settings (the paper's eta/gamma/steps, every 5 steps, DDLS/DOT step sizes)
    fa = evaluation.parse_settings(["--n", str(a.n), "--seed", str(a.seed), "--batch-size", "500"]
                                   + (["--data-dir", a.data_dir] if a.data_dir else [])
                                   + (["--cache", a.cache] if a.cache else []))
    dev = torch.device("cpu")
    vae_path = Path(a.vae)
    if not vae_path.is_file():
        print(f"error: {vae_path} not found; train it with `python benchmarks/train_fmnist_vae.py`", file=sys.stderr)
        return 2
    vae, vmeta = load_vae(vae_path, dev)
    ext, metric, cls_info = evaluation.make_extractor("cnn", fa, dev)
    splits = train_splits("fmnist", a.seed, a.data_dir)  # disjoint: validation, LogitMatch, critic fit
    refs = evaluation.reference_sets(ext, "fmnist", fa.seed, data_dir=fa.data_dir, cache=fa.cache,
                                     batch_size=fa.batch_size, splits=splits)
    real_fit = splits["fit"]
    g = dgflow.as_generator(vae.decode, vae.z_dim)
    fake_fit = dgflow.generate(g, torch.randn(len(real_fit), vae.z_dim,
                                              generator=torch.Generator().manual_seed(a.seed + 100)), 500)
    z = torch.randn(a.n, vae.z_dim, generator=torch.Generator().manual_seed(a.seed))
    res = {"dataset": "fmnist", "metric": metric, "extractor": ext.name, "n": a.n, "steps": fa.steps,
           "record_steps": list(range(0, fa.steps, fa.every)) + [fa.steps],
           "reference": f"fmnist test split, {refs['test'].n:,} images (cached statistics)", "classifier": cls_info,
           "seed": a.seed, "threads": a.threads, "device": str(dev), "eta": fa.eta, "gamma": fa.gamma, "tuned": False,
           "vae": {"file": display_path(vae_path),
                   "sha256": sha256_of(vae_path), **{k: vmeta.get(k) for k in ("epochs", "negative_elbo_by_epoch")}},
           "critic_fit": {"real": "10,000 train-split images", "fake": "10,000 VAE samples (other latents)"},
           "long_steps": a.long_steps, "command": command_line(__file__, argv), "bases": {}, "critics": {}, "seconds_by_base": {}}
    stem = Path(a.out)
    for kind in a.critics:
        t0 = time.perf_counter()
        critic, res["critics"][kind] = fit(kind, real_fit, fake_fit, a.seed)
        label = LABELS[kind]
        methods = evaluation.methods_for("vae", fa)
        res["bases"][label], grids = evaluation.evaluate_models(label, g, critic, z, methods, ext, refs, fa,
                                                               {"critic": kind})
        if a.long_steps:
            res["bases"][label]["long"] = long_run(g, critic, z, ext, refs, fa, a.long_steps, a.long_every)
            print(f"{label} long run: {res['bases'][label]['long']}", flush=True)
        res["seconds_by_base"][label] = round(time.perf_counter() - t0, 1)
        evaluation.plot_samples(label, grids, Path(f"{stem}_samples_{kind}.png"))
        Path(f"{stem}.json").write_text(json.dumps(res, indent=1))
    evaluation.write_markdown(res, Path(f"{stem}.md"))
    with open(f"{stem}.md", "a") as fh:
        fh.write(long_markdown(res))
    evaluation.plot_curves(res, stem)
    print(Path(f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
