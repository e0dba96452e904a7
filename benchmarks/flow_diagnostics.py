"""Per-step diagnostics of DGflow next to sample quality (issue: scale-free steps, stopping).

    python benchmarks/flow_diagnostics.py

For every base found (the seed-0 2D toy bases of benchmarks/toy2d_table.py and the Fashion-MNIST
GAN bases of the zoo, trained by benchmarks/train_fmnist_gan.py) and every step rule (the paper's
fixed eta = 0.1, eta = 0.01 and ``eta="auto"``), refines N latents for 25 steps and records at every step, through refine's
callback: the logit's mean and spread, the median |grad_z d|, the median step length and
||z|| / sqrt(z_dim). 2D bases also get high-quality %, modes and EMD every step; for the image
bases, FID per step is read from benchmarks/results/step_rules.json (N = 5,000, every 2 steps) where
it holds the same rule, and drawn beside the diagnostics. Writes benchmarks/results/flow_diagnostics.json/.png
(``--out`` for another prefix).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import dgflow
import dgflow.zoo
from benchlib import RESULTS, pyplot
from benchlib.bases import IMAGE_GANS, cached_toy2d_bases, gan_model, load_toy2d_base
from dgflow.data import toy2d
from dgflow.flow import refine_defaults
from dgflow.metrics.toy2d import report

RULES = {"fixed η=0.1": {"eta": 0.1, "clip": None, "stop": None},
         "fixed η=0.01": {"eta": 0.01, "clip": None, "stop": None},
         "auto": {"eta": "auto", "clip": None, "stop": None}, "defaults (auto, clip 1)": {"stop": None}}


class Diagnostics:
    """refine() callback collecting per-step statistics (and the states, when asked)."""

    def __init__(self, keep_states: bool = False):
        self.rows: list[dict] = []
        self.states: list[torch.Tensor] = []
        self.keep_states = keep_states
        self._prev: torch.Tensor | None = None

    def __call__(self, step: int, z: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> None:
        gn = grad.flatten(1).norm(dim=1)
        row = {"step": step, "d_mean": float(logits.mean()), "d_std": float(logits.std()),
               "grad_median": float(gn.median()), "grad_p90": float(gn.quantile(0.9)),
               "z_radius": float(z.flatten(1).norm(dim=1).mean() / math.sqrt(z[0].numel()))}
        if self._prev is not None:
            self.rows[-1]["step_median"] = float((z - self._prev).flatten(1).norm(dim=1).median())
        self._prev = z.clone()
        self.rows.append(row)
        if self.keep_states:
            self.states.append(z.clone())


def toy_bases() -> list[tuple[str, str, object, object]]:
    """(label, dataset, G, D) of every cached 2D base (seed 0)."""
    return [(f"{b['dataset']} {b['loss']}", b["dataset"], *load_toy2d_base(b["path"]))
            for b in cached_toy2d_bases([0])]


def run_toy(label, dataset, g, d, n, steps, seed) -> dict:
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    ref = toy2d.sample(dataset, n, torch.Generator().manual_seed(seed + 1))
    out = {}
    for rule, kw in RULES.items():
        diag = Diagnostics(keep_states=True)
        z_end = dgflow.refine(g, d, z, steps=steps, gamma=0.01, generator_rng=seed, callback=diag, **kw)
        states = diag.states + [z_end]
        quality = [report(dataset, dgflow.generate(g, s), ref if k % 5 == 0 else None)
                   for k, s in enumerate(states)]
        out[rule] = {"diagnostics": diag.rows, "quality": quality}
        first, last = quality[0], quality[-1]
        modes = f", modes {first['modes']} -> {last['modes']}" if "modes" in last else ""
        print(f"{label:24s} {rule:14s} HQ {100 * first['hq']:.1f}% -> {100 * last['hq']:.1f}%{modes}", flush=True)
    return out


def step_rules_fid(label: str, kw: dict) -> dict:
    """``{"fid_by_step": ...}`` of the same base and step rule in benchmarks/results/step_rules.json, if there."""
    path = RESULTS / "step_rules.json"
    if not path.is_file():
        return {}
    res = json.loads(path.read_text())
    want = {**refine_defaults("eta", "clip"), **kw}  # {} = refine's defaults
    rule = next((name for name, rkw in res["step_rules"].items() if rkw == want), None)
    base = next((b for b in res["bases"] if b["label"] == label), None)
    if rule is None or base is None:
        return {}
    return {"fid_by_step": {int(k): v["fid"] for k, v in base["rules"][rule]["test"].items()},
            "fid_source": f"step_rules.json, N = {res['config']['image_n']}"}


def run_image(label: str, model: str, n, steps, seed, batch_size) -> dict:
    """Diagnostics of every rule on the zoo GAN ``model`` (FID per step from step_rules.json's ``label``)."""
    m = dgflow.zoo.load(model)
    g, d = m.generator, m.critic
    z = g.sample_prior(n, generator=torch.Generator().manual_seed(seed))
    out = {}
    for rule, kw in RULES.items():
        diag = Diagnostics()
        dgflow.refine(g, d, z, steps=steps, gamma=0.01, generator_rng=seed, callback=diag,
                      batch_size=batch_size, **kw)
        out[rule] = {"diagnostics": diag.rows, **step_rules_fid(label, kw)}
        print(f"{label:24s} {rule:14s} median |grad d| {diag.rows[0]['grad_median']:.3g}, "
              f"median step {diag.rows[0].get('step_median', float('nan')):.3g}", flush=True)
    return out


def plot(res: dict, path: Path) -> None:
    plt = pyplot()
    bases = list(res["bases"])
    cols = ["quality", "d_mean", "grad_median", "step_median", "z_radius"]
    fig, axes = plt.subplots(len(bases), len(cols), figsize=(3.2 * len(cols), 2.6 * len(bases)), squeeze=False)
    for i, base in enumerate(bases):
        for rule, rec in res["bases"][base].items():
            rows = rec["diagnostics"]
            for j, key in enumerate(cols[1:], start=1):
                pts = [(r["step"], r[key]) for r in rows if key in r]
                axes[i, j].plot(*zip(*pts), label=rule)
            if "quality" in rec:
                axes[i, 0].plot([100 * q["hq"] for q in rec["quality"]], label=rule)
                axes[i, 0].set_ylabel("HQ %")
            elif "fid_by_step" in rec:
                fs = sorted((int(k), v) for k, v in rec["fid_by_step"].items())
                axes[i, 0].plot(*zip(*fs), marker="o", label=rule)
                axes[i, 0].set_ylabel("FID (FMNIST-CNN)")
        for j, key in enumerate(cols):
            axes[i, j].set_title(f"{base}: {key}" if j == 0 else key, fontsize=8)
            axes[i, j].set_xlabel("step", fontsize=7)
        axes[i, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="2D samples per base (default 2000)")
    p.add_argument("--image-n", type=int, default=1000, help="image samples per base (default 1000)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "flow_diagnostics"), help="output prefix (.json, .png)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = {"n_2d": a.n, "n_image": a.image_n, "steps": a.steps, "gamma": 0.01, "seed": a.seed,
           "rules": RULES, "bases": {}}
    for label, dataset, g, d in toy_bases():
        res["bases"][label] = run_toy(label, dataset, g, d, a.n, a.steps, a.seed)
    if not a.no_images:
        for base in sorted(IMAGE_GANS):
            label = f"fmnist {base}"
            res["bases"][label] = run_image(label, gan_model("fmnist", base), a.image_n, a.steps, a.seed, 500)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
