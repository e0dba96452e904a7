"""`dgflow demo`: before/after refinement of the shipped 2D WGAN-GP (offline, ~1 minute on CPU)."""
from __future__ import annotations

import argparse
import json

from ..divergences import WEIGHTS
from .refine import _clip, _eta, flow_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="refine the shipped 25Gaussians WGAN-GP and print before/after",
                       description="Load the shipped 2D WGAN-GP (25Gaussians), draw N latents, refine "
                                   "them with DGflow and print high-quality %%, modes covered and EMD "
                                   "before and after; writes a before/after scatter PNG.")
    p.add_argument("--n", type=int, default=5000, help="number of samples (default 5000)")
    p.add_argument("--steps", type=int, default=25, help="refinement steps (default 25)")
    p.add_argument("--eta", type=_eta, help="step size or 'auto' (default: dgflow.refine's, 'auto')")
    p.add_argument("--gamma", type=float, help="entropy weight / noise (default: dgflow.refine's, 0.01)")
    p.add_argument("--divergence", choices=sorted(WEIGHTS), help="f-divergence (default: dgflow.refine's, kl)")
    p.add_argument("--clip", type=_clip, help="drift cap in multiples of the median drift, or 'none' "
                                             "(default: dgflow.refine's, 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for latents, noise and reference data")
    p.add_argument("--out", default="dgflow-demo/demo.png", help="scatter PNG path (default dgflow-demo/demo.png)")
    p.add_argument("--no-emd", action="store_true", help="skip the EMD (needs POT)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from .. import demo

    if args.n < 1:
        raise SystemExit(f"dgflow demo: --n must be >= 1, got {args.n}")
    overrides = flow_overrides(args, ("eta", "gamma", "divergence", "clip"))
    res = demo.run(n=args.n, steps=args.steps, seed=args.seed, emd=not args.no_emd, progress=True, **overrides)
    flow = ", ".join(f"{k}={v}" for k, v in res.settings.items() if k not in ("n", "steps", "seed"))
    print(f"DGflow on the shipped 25Gaussians WGAN-GP: N={args.n}, {args.steps} steps, {flow}, "
          f"seed={args.seed} (refinement {res.seconds:.1f} s)")
    print(f"stop rule: {res.stop_reason}")
    print(demo.table(res))
    if not args.no_plot:
        print(f"before/after scatter: {demo.plot(res, args.out)}")
    if args.json:
        print(json.dumps({"settings": res.settings, "before": res.before, "after": res.after,
                          "seconds": res.seconds, "stop_reason": res.stop_reason}))
    return 0
