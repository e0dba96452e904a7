"""FID evaluation of refinement methods on one generator/critic pair (fid_table.py, vae_fmnist.py).

Every method (DGflow with fixed settings and with ``refine``'s defaults, DDLS, DOT) starts from
the same latents; FID against the test split's cached statistics is taken every ``every`` steps,
and so is the validation FID against 10,000 *train*-split images, which (with
:class:`dgflow.stopping.LogitMatch` on 2,000 other train images) chooses a stopping step for every
method without the test split. The settings are an ``argparse.Namespace`` built by
:func:`add_arguments` and :func:`resolve` (or :func:`parse_settings`), so that a script can expose
them on its command line or take the defaults.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import torch
import yaml

import dgflow
from dgflow.baselines import ddls, dot
from dgflow.io import read_metadata, sha256_of
from dgflow.metrics import fid as fidlib
from dgflow.stopping import LogitMatch, mean_logit

from . import pyplot
from .images import load_images, train_splits

DEFAULT_DIVERGENCES = {"wgangp": ["kl"], "sndcgan": ["logd", "kl"]}
BASE_LABELS = {"wgangp": "WGAN-GP", "sndcgan": "SN-DCGAN", "snresnet": "SN-ResNet", "mmdgan": "MMD-GAN",
               "vae": "VAE", "glow": "Glow"}
PAPER = {"eta": 0.1, "gamma": 0.01, "steps": 25}  # the DGflow authors' released settings (docs/design.md §1)
PAPER_ETA = {"glow": 0.05}  # where the authors' per-base step size differs from PAPER's (docs/design.md §7)
EVAL = {"n": 10000, "batch_size": 500}


# ----------------------------------------------------------------------------- settings
def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--refine-opt expects key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k, yaml.safe_load(v)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The evaluation's options. ``--n --steps --eta --gamma --batch-size`` default to ``None``:
    :func:`resolve` fills them from a setup's ``refine``/``eval`` keys, else :data:`PAPER`/:data:`EVAL`."""
    p.add_argument("--n", type=int, help=f"samples per set, default {EVAL['n']:,} (or the config's)")
    p.add_argument("--steps", type=int, help=f"default {PAPER['steps']} (or the config's)")
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--eta", type=float, help=f"DGflow step size, default {PAPER['eta']} (or the config's)")
    p.add_argument("--gamma", type=float, help=f"DGflow entropy weight, default {PAPER['gamma']} (or the config's)")
    p.add_argument("--divergence", nargs="+", help="DGflow divergences for every base (default: per base)")
    p.add_argument("--refine-opt", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra dgflow.refine keyword (YAML value), repeatable")
    p.add_argument("--no-baselines", action="store_true", help="run DGflow only (e.g. a step-size study)")
    p.add_argument("--no-defaults", action="store_true", help="skip the row of refine's own defaults")
    p.add_argument("--ddls-eps", type=float, default=0.01)
    p.add_argument("--dot-lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, help=f"chunk size, default {EVAL['batch_size']} (or the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier", default=str(fidlib.CNN_WEIGHTS))
    p.add_argument("--inception-weights", help="local pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--data-dir")
    p.add_argument("--cache", help="cache root for reference statistics (default ~/.cache/dgflow)")
    return p


def resolve(a: argparse.Namespace, setup: dict | None = None) -> argparse.Namespace:
    """Fill the unset settings of ``a`` in place: the command line, else the setup's ``refine`` and
    ``eval`` settings, else the paper's; ``refine_opt`` becomes a dict. Returns ``a``."""
    setup = setup or {}
    # the paper's per-base eta applies only where neither the command line nor the setup chose one
    a.per_base_eta = a.eta is None and "eta" not in setup.get("refine", {})
    for group, defaults in (("refine", PAPER), ("eval", EVAL)):
        for k, v in defaults.items():
            if getattr(a, k) is None:
                setattr(a, k, setup.get(group, {}).get(k, v))
    a.refine_opt = dict(a.refine_opt)
    return a


def parse_settings(argv: Sequence[str] = ()) -> argparse.Namespace:
    """The evaluation's settings from command-line style ``argv``, the rest at their defaults."""
    return resolve(add_arguments(argparse.ArgumentParser()).parse_args(list(argv)))


# ----------------------------------------------------------------------------- running
class Recorder:
    """Callback keeping every state and the mean logit of every step (before its update)."""

    def __init__(self):
        self.states, self.d_mean = {}, {}

    def __call__(self, step: int, z: torch.Tensor, logits: torch.Tensor) -> None:
        self.states[step] = z.detach().clone()
        self.d_mean[step] = float(logits.mean())


def methods_for(base: str, a: argparse.Namespace) -> dict[str, tuple]:
    """name -> (callable, kwargs) of every method run on ``base``."""
    divs = a.divergence or DEFAULT_DIVERGENCES.get(base, ["kl"])
    eta = PAPER_ETA.get(base, a.eta) if getattr(a, "per_base_eta", False) else a.eta
    # the paper's scheme: fixed eta, no drift cap (refine's default cap is off here unless asked for)
    out = {f"DGflow-{dv}": (dgflow.refine, dict(eta=eta, gamma=a.gamma, divergence=dv,
                                                **{"clip": None, "stop": None, **a.refine_opt})) for dv in divs}
    if not a.no_defaults:
        out["DGflow defaults"] = (dgflow.refine, {})  # refine's own defaults, whatever they are
    if a.no_baselines:
        return out
    out["DDLS"] = (ddls, dict(eps=a.ddls_eps))
    out["DOT"] = (dot, dict(lr=a.dot_lr))
    return out


def run_method(fn, kwargs: dict, g, d, z: torch.Tensor, steps: int, batch_size: int | None, seed: int,
               progress: bool = True):
    """Refine ``z``; returns ({step: latents}, {step: mean logit}, seconds) for steps 0..``steps``."""
    rec = Recorder()
    t0 = time.perf_counter()
    z_out = fn(g, d, z, steps=steps, batch_size=batch_size, generator_rng=seed, callback=rec,
               progress=progress, **kwargs)
    secs = time.perf_counter() - t0
    last = mean_logit(d, dgflow.generate(g, z_out, batch_size), batch_size)
    ended = max([k for k in rec.states if k < steps] + [-1]) + 1  # a stop rule may end the flow early:
    for k in range(ended, steps + 1):  # the samples then stay where it left them
        rec.states[k], rec.d_mean[k] = z_out, last
    return rec.states, rec.d_mean, secs


def reference_sets(ext, dataset: str, seed: int, *, data_dir: str | None = None, cache: str | None = None,
                   batch_size: int = 500, splits: dict | None = None, progress: bool = True) -> dict:
    """What :func:`evaluate_models` compares with: ``test`` statistics (the test split), ``val``
    statistics and ``real`` images (the ``val`` and ``real`` subsets of
    :func:`benchlib.images.train_splits`, passed as ``splits`` if already loaded), cached by key."""
    test = fidlib.reference_stats(ext, lambda: load_images(dataset, "test", data_dir), key=f"{dataset}_test",
                                  cache=cache, batch_size=batch_size, progress=progress)
    splits = splits if splits is not None else train_splits(dataset, seed, data_dir)
    val = fidlib.reference_stats(ext, lambda: splits["val"], key=f"{dataset}_train10k_s{seed}", cache=cache,
                                 batch_size=batch_size, progress=progress)
    return {"test": test, "val": val, "real": splits["real"]}


def make_extractor(kind: str, a: argparse.Namespace, device: torch.device):
    """(feature extractor, metric name, what to record about it): ``inception`` or the FMNIST CNN."""
    if kind == "inception":
        ext = fidlib.InceptionFeatures(a.inception_weights).to(device)
        return ext, "Inception pool3 FID", {"inception_weights": ext.source}
    ext = fidlib.CNNFeatures.from_file(a.classifier).to(device)
    meta = read_metadata(a.classifier)
    info = {k: meta.get(k) for k in ("test_accuracy", "n_test", "epochs")}
    return ext, "FID (FMNIST-CNN features)", {**info, "sha256": sha256_of(a.classifier)}


def evaluate_models(base: str, g, d, z: torch.Tensor, methods: dict, ext, refs: dict, a: argparse.Namespace,
                    info: dict) -> tuple[dict, dict]:
    """Every method on one generator/critic pair from latents ``z``: test FID every ``--every`` steps,
    and the steps two stopping rules choose without the test split (best validation FID on the
    grid; LogitMatch), with their test FID. Returns (results, sample grids)."""
    device = z.device
    target = mean_logit(d, refs["real"].to(device), a.batch_size)
    stats = {}

    def fids(key, latents: torch.Tensor) -> dict:
        if key not in stats:
            x = dgflow.generate(g, latents, a.batch_size)
            stats[key] = fidlib.gaussian_stats(fidlib.extract(ext, x, a.batch_size))
        return {k: fidlib.frechet_distance(stats[key], refs[k]) for k in ("test", "val")}

    base_fid = fids("base", z)
    out = {**info, "fid_base": base_fid["test"], "val_fid_base": base_fid["val"], "target_logit": target,
           "methods": {}}
    grids = {"base": dgflow.generate(g, z[:64]).cpu()}
    print(f"{base}: base FID {base_fid['test']:.3f} (N={a.n})", flush=True)
    for name, (fn, kw) in methods.items():
        stats = {"base": stats["base"]}
        try:
            states, d_mean, secs = run_method(fn, kw, g, d, z, a.steps, a.batch_size, a.seed + 1)
        except FloatingPointError as exc:  # e.g. a fixed step too long for this critic: recorded, not fatal
            out["methods"][name] = {"kwargs": kw, "steps": a.steps, "diverged": str(exc)}
            print(f"{base} {name}: diverged: {exc}", flush=True)
            continue
        grid = list(range(0, a.steps, a.every)) + [a.steps]
        curve = {s: fids(s, states[s]) for s in grid}
        fired = LogitMatch.from_target(target).stop_step([d_mean[s] for s in range(a.steps + 1)])
        stop_logit = a.steps if fired is None else fired
        stop_val = min(grid, key=lambda s: (curve[s]["val"], s))
        stops = {"validation": stop_val, "logit match": stop_logit}
        final = curve[a.steps]["test"]
        out["methods"][name] = {
            "kwargs": kw, "steps": a.steps, "fid_by_step": {s: c["test"] for s, c in curve.items()},
            "val_fid_by_step": {s: c["val"] for s, c in curve.items()}, "fid": final,
            "rel_change": (final - base_fid["test"]) / base_fid["test"], "d_mean_by_step": d_mean,
            "stops": stops, "logit_reached": fired is not None, "fid_at_stop": {k: fids(s, states[s])["test"] for k, s in stops.items()},
            "best_step": min(curve, key=lambda s: curve[s]["test"]), "refine_seconds": round(secs, 1),
            "seconds_per_1k": round(secs * 1000 / a.n, 1)}
        grids[f"{name} @{stop_val}"] = dgflow.generate(g, states[stop_val][:64]).cpu()
        print(f"{base} {name}: FID {final:.3f} ({100 * (final - base_fid['test']) / base_fid['test']:+.1f}%), "
              f"curve {[round(c['test'], 2) for c in curve.values()]}, stops {stops} -> "
              f"{ {k: round(v, 2) for k, v in out['methods'][name]['fid_at_stop'].items()} }, {secs:.0f} s", flush=True)
    return out, grids


# ----------------------------------------------------------------------------- reports
def _extractor_note(res: dict) -> str:
    info = res.get("classifier") or {}
    if info.get("test_accuracy") is not None:
        return f" (classifier test accuracy {info['test_accuracy']:.4f})."
    if info.get("inception_weights"):
        return f" (weights: {info['inception_weights']})."
    return "."


def write_markdown(res: dict, path: Path) -> None:
    """The table of every base and method of ``res`` (FID by step, change, the two stops)."""
    lines = [f"# {res['metric']} on {res['dataset']}, N = {res['n']:,} per set", "",
             f"Reference: {res['reference']}. Feature extractor: {res['extractor']}" + _extractor_note(res)
             + f" Up to {res['steps']} gradient steps for every method. "
             "Stopping rules, chosen without the test split: *val* = the recorded step with the lowest FID "
             "against 10,000 train-split images; *logit* = dgflow.stopping.LogitMatch with 2,000 other "
             "train-split images, its default: the first step at which the batch's mean critic logit has closed "
             "half the gap to theirs.", "",
             "| base | method | settings | FID@0 | " + " | ".join(f"@{s}" for s in res["record_steps"][1:])
             + f" | change @{res['steps']} | val stop: step → FID (change) | logit stop: step → FID | s / 1k samples |",
             "|---|---|---|---|" + "---|" * (len(res["record_steps"]) - 1) + "---|---|---|---|"]
    for base, r in res["bases"].items():
        for name, m in r["methods"].items():
            kw = ", ".join(f"{k}={v}" for k, v in m["kwargs"].items()) or "refine() defaults"
            if "diverged" in m:
                lines.append(f"| {BASE_LABELS.get(base, base)} | {name} | {kw} | {r['fid_base']:.2f} | "
                             + " | ".join("–" for _ in res["record_steps"][1:]) + f" | diverged: {m['diverged']} | – | – | – |")
                continue
            curve = " | ".join(f"{m['fid_by_step'][s]:.2f}" for s in res["record_steps"][1:])
            stops = m.get("stops", {})
            at = m.get("fid_at_stop", {})
            val = (f"{stops['validation']} → {at['validation']:.2f} "
                   f"({100 * (at['validation'] - r['fid_base']) / r['fid_base']:+.1f}%)") if "validation" in at else "–"
            logit = (f"{stops['logit match']}{'' if m.get('logit_reached', True) else ' (not reached)'} → "
                     f"{at['logit match']:.2f}") if "logit match" in at else "–"
            lines.append(f"| {BASE_LABELS.get(base, base)} | {name} | {kw} | {r['fid_base']:.2f} | {curve} | "
                         f"{100 * m['rel_change']:+.1f}% | {val} | {logit} | {m['seconds_per_1k']} |")
    path.write_text("\n".join(lines) + "\n")


def plot_curves(res: dict, stem: Path) -> None:
    """FID against gradient step, one panel per base (three to a row)."""
    plt = pyplot()
    bases = list(res["bases"])
    cols = min(3, len(bases))
    rows = -(-len(bases) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(bases):]:
        ax.axis("off")
    for ax, base in zip(axes.flat, bases):
        for name, m in res["bases"][base]["methods"].items():
            if "fid_by_step" not in m:  # diverged
                continue
            steps = sorted(m["fid_by_step"])
            ax.plot(steps, [m["fid_by_step"][s] for s in steps], marker="o", label=name)
        ax.set(title=f"{BASE_LABELS.get(base, base)} (N={res['n']:,})", xlabel="gradient step", ylabel=res["metric"])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{stem}_steps.png", dpi=110)
    plt.close(fig)


def plot_samples(base: str, grids: dict, path: Path) -> None:
    """The first 64 samples of the same latents: base, then each method after its last step."""
    from torchvision.utils import make_grid

    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(2.8 * len(grids), 3.1), squeeze=False)
    for ax, (name, x) in zip(axes[0], grids.items()):
        img = make_grid((x.clamp(-1, 1) + 1) / 2, nrow=8, padding=1, pad_value=1.0)
        ax.imshow(img.permute(1, 2, 0).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        ax.set_title(f"{BASE_LABELS.get(base, base)}: {name}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
