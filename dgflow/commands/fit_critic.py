"""`dgflow fit-critic`: fit a calibrated density-ratio critic to a zoo model and report calibration.

    dgflow fit-critic --model toy2d-25gaussians-wgangp --n 4000
    dgflow fit-critic --model toy2d-25gaussians-wgangp --corrector --regularizer gp --json

Draws ``--n`` real points from the model's dataset and ``--n`` samples of its generator, fits
d = C (or, with ``--corrector``, d = D0 + C with the model's own critic as the frozen D0) with
:func:`dgflow.fit.fit_critic`, and prints held-out logistic loss, ECE and accuracy of: the model's
own critic before and after Platt scaling on the same held-out points, and the fitted critic
before and after its calibration. The Platt scale ``a`` of the model's own critic is the factor
its logit is off by; for the KL flow, refining with a*d is refining d with eta * a.
Supported datasets: the 2D toys (``dgflow.data.toy2d``); for images call fit_critic in Python.
"""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-critic", help="fit a calibrated density-ratio critic to a zoo model (2D toys)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo model name (see `dgflow zoo list`)")
    p.add_argument("--zoo", help="zoo file to resolve --model in (default: the shipped one)")
    p.add_argument("--n", type=int, default=4000, help="real and generated points each (default 4000)")
    p.add_argument("--corrector", action="store_true", help="fit d = D0 + C with the model's critic as D0")
    p.add_argument("--regularizer", default="none", choices=["spectral", "gp", "none"],
                   help="spectral norm on C, gradient penalty on C, or none: early stopping only (default)")
    p.add_argument("--calibrate", default="platt", choices=["platt", "temperature", "none"],
                   help="affine calibration fitted on the held-out split (default platt)")
    p.add_argument("--hidden", type=int, nargs="*", default=[128, 128], help="hidden widths of C (default 128 128)")
    p.add_argument("--max-epochs", type=int, default=200, help="epoch limit (default 200)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, split, init and batches")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=main)


def run(args: argparse.Namespace) -> dict:
    """Fit and evaluate; returns the report as a dict."""
    import torch

    from .. import zoo
    from ..data import toy2d
    from ..calibration import calibrate, calibration_report
    from ..fit import fit_critic

    if args.n < 2:
        raise SystemExit(f"dgflow fit-critic: --n must be >= 2, got {args.n}")
    model = zoo.load(args.model, zoo=args.zoo)
    dataset = model.entry["dataset"]
    if dataset not in toy2d.DATASETS:
        raise SystemExit(f"dgflow fit-critic: dataset {dataset!r} of {args.model!r} is not supported by the CLI "
                         f"(2D toys {toy2d.DATASETS} only); call dgflow.fit.fit_critic in Python")
    rng = torch.Generator().manual_seed(args.seed)
    real = toy2d.sample(dataset, args.n, rng)
    with torch.no_grad():
        fake = model.generator(model.generator.sample_prior(args.n, generator=rng))
    none = lambda v: None if v == "none" else v  # noqa: E731
    fitted = fit_critic(real, fake, base=model.critic if args.corrector else None, hidden=tuple(args.hidden),
                        regularizer=none(args.regularizer), calibrate=none(args.calibrate),
                        max_epochs=args.max_epochs, patience=args.patience, seed=args.seed, progress=True)
    ir, jf = fitted.info.val_index
    vr, vf = real[ir], fake[jf]
    own = calibrate(model.critic, vr, vf, "platt")
    return {"model": args.model, "dataset": dataset, "n": args.n, "held_out_per_side": [len(vr), len(vf)],
            "settings": {k: getattr(args, k) for k in ("corrector", "regularizer", "calibrate", "hidden",
                                                       "max_epochs", "patience", "seed")},
            "model_critic": calibration_report(model.critic, vr, vf),
            "model_critic_platt": {**calibration_report(own, vr, vf), "a": float(own.calibration.a),
                                   "b": float(own.calibration.b)},
            "fitted_raw": fitted.info.val_before, "fitted": fitted.info.val_after,
            "fit": {"epochs_run": fitted.info.epochs_run, "best_epoch": fitted.info.best_epoch,
                    "stopped_early": fitted.info.stopped_early, "calibration_test": fitted.info.calibration_test}}


def main(args: argparse.Namespace) -> int:
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{res['model']} ({res['dataset']}): {res['n']} real + {res['n']} generated points, "
          f"held-out {res['held_out_per_side'][0]} + {res['held_out_per_side'][1]} (also used for calibration)")
    print(f"{'critic':34s} {'loss':>8s} {'ECE':>7s} {'acc':>6s}")
    for key, label in (("model_critic", "model's critic"), ("model_critic_platt", "model's critic + Platt"),
                       ("fitted_raw", "fitted (before calibration)"), ("fitted", "fitted (calibrated)")):
        r = res[key]
        print(f"{label:34s} {r['logistic_loss']:8.4f} {r['ece']:7.4f} {r['accuracy']:6.3f}")
    t = res["fit"]["calibration_test"]
    print(f"Platt scale of the model's critic: a = {res['model_critic_platt']['a']:.4g}, "
          f"b = {res['model_critic_platt']['b']:.4g}")
    if t:
        thr = "none" if t["threshold"] is None else f"{t['threshold']:.2f}"
        print(f"fitted calibration a = {t['a']:.4g}, b = {t['b']:.4g}, LR statistic {t['stat']:.1f} "
              f"(threshold {thr}), applied: {t['applied']}")
    print(f"fit: {res['fit']['epochs_run']} epochs, best {res['fit']['best_epoch']}, "
          f"stopped early: {res['fit']['stopped_early']}")
    return 0
