"""Why DGflow stops short of 98% high-quality samples on the 25Gaussians WGAN-GP bases.

    python benchmarks/toy2d_limits.py      # ~2 min here, 1 thread

On each cached 25Gaussians WGAN-GP base (benchmarks/toy2d_table.py, base seeds 0-2), from the same
N = 5,000 latents (``--n``): (1) refine's defaults for 25 and 100 steps; (2) the same KL flow with a 4x
smaller step for 4x as many steps (same flow time); (3) the flow in *data space* (generator=None,
the same critic moving the points x = G(z) themselves). Also, after 100 latent steps: the median
latent gradient |grad_z d(G(z))| and data gradient |grad_x d| of the samples still not
high-quality, against those of the high-quality ones. If the data-space flow reaches the modes
where the latent flow does not, the critic is fine and the limit is the generator (the latent
geometry) and the step budget. Writes benchmarks/results/toy2d_limits.json (``--out``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import dgflow
from benchlib import RESULTS
from benchlib.bases import cached_toy2d_bases, load_toy2d_base
from dgflow.data import toy2d
from dgflow.metrics.toy2d import HQ_SIGMAS, report


def hq_report(x: torch.Tensor) -> dict:
    r = report("25gaussians", x)
    return {"hq": round(100 * r["hq"], 1), "modes": r["modes"], "modes_1pct": r["modes_1pct"]}


def grad_norm(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g.norm(dim=1)


def study(path: str | Path, n: int) -> dict:
    """The latent flows, the data-space flow and the gradients of the base in ``path``."""
    g, d = load_toy2d_base(path)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    x0 = dgflow.generate(g, z)
    out = {"base": hq_report(x0)}
    latent = {}
    for steps, auto_step in ((25, 0.02), (100, 0.02), (100, 0.005), (400, 0.005)):
        zr = dgflow.refine(g, d, z, steps=steps, auto_step=auto_step, generator_rng=1)
        latent[f"{steps} steps, auto_step {auto_step}"] = hq_report(dgflow.generate(g, zr))
        if (steps, auto_step) == (100, 0.02):
            x = dgflow.generate(g, zr)
            far = torch.cdist(x, toy2d.gaussian_means()).min(1).values > HQ_SIGMAS * toy2d.GAUSS_STD
            gz = grad_norm(lambda v: d(g(v)), zr)
            gx = grad_norm(d, x)
            out["after 100 latent steps"] = {
                "not HQ: median |grad_z d|": float(gz[far].median()), "HQ: median |grad_z d|": float(gz[~far].median()),
                "not HQ: median |grad_x d|": float(gx[far].median()), "HQ: median |grad_x d|": float(gx[~far].median())}
    out["latent flow (refine defaults)"] = latent
    out["data-space flow (same critic, generator=None)"] = {
        f"{steps} steps": hq_report(dgflow.refine(None, d, x0, steps=steps, generator_rng=1)) for steps in (25, 100)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="latents per base")
    p.add_argument("--out", default=str(RESULTS / "toy2d_limits.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res = {"n": a.n, "bases": {}}
    for base in cached_toy2d_bases((0, 1, 2), datasets=["25gaussians"], losses=["wgan-gp"]):
        seed = base["base_seed"]
        res["bases"][f"seed {seed}"] = study(base["path"], res["n"])
        print(f"seed {seed}: {json.dumps(res['bases'][f'seed {seed}'])}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
