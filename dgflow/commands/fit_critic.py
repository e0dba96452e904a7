"""`dgflow fit-critic`: fit a calibrated density-ratio critic to a zoo model's samples, report it, save it.

    dgflow fit-critic --model toy2d-25gaussians-wgangp --n 4000
    dgflow fit-critic --model toy2d-25gaussians-wgangp --corrector --regularizer gp --json
    dgflow fit-critic --model fmnist-vae --arch corrector --base fmnist-sndcgan \\
        --n 10000 --offset 20000 --out vae_corrector.safetensors

Draws ``--n`` real samples of the model's dataset (``--data``: the 2D toys, or ``fmnist``, read
from ``--data-dir`` like :mod:`dgflow.data.fmnist`) and ``--n`` samples of its generator, and fits
d = C or d = D0 + C with :func:`dgflow.fit.fit_critic`. Fashion-MNIST images are the train split,
``--n`` of them from ``--offset`` on in a permutation seeded by ``--seed`` (``--offset 20000``
with the default 10,000 and seed 0 are the benchmarks' critic-fitting subset, disjoint from their
validation images). The net C (``--arch``):

* ``mlp``: fit_critic's default MLP on the flattened sample (``--hidden`` widths);
* ``conv``: a fresh SN-DCGAN discriminator sized to the images;
* ``corrector``: a fresh net of D0's own architecture, as in the DGflow authors' code.

D0, the frozen pretrained critic of the corrector d = D0 + C, is the critic of the zoo model
``--base NAME`` (``--base own`` or ``--corrector``: the model's own critic; ``--arch corrector``
defaults to it). For a model without a useful logit (a VAE, a flow, an MMD-GAN) pass a
discriminator trained on the same data, e.g. ``--base fmnist-sndcgan``.

Prints the held-out logistic loss, ECE and accuracy of the model's own critic (raw and Platt
scaled on the same held-out points; its Platt scale ``a`` is the factor its logit is off by) and
of the fitted critic before and after its calibration. ``--out FILE.safetensors`` saves the
fitted critic (prefix ``critic.``) and prints the zoo entry lines that load it back.
"""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-critic", help="fit a calibrated density-ratio critic to a zoo model (2D toys, images)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo model name (see `dgflow zoo list`)")
    p.add_argument("--zoo", action="append", help="zoo file to resolve model names in (repeatable)")
    p.add_argument("--data", help="dataset of the real samples (default: the model's; 2D toys or fmnist)")
    p.add_argument("--data-dir", help="image dataset directory (default: the loader's own, e.g. $DGFLOW_FMNIST_DIR)")
    p.add_argument("--n", type=int, default=4000, help="real and generated samples each (default 4000)")
    p.add_argument("--offset", type=int, default=0, help="images: first index into the seeded permutation (default 0)")
    p.add_argument("--arch", default="mlp", choices=["mlp", "conv", "corrector"], help="the net C (default mlp)")
    p.add_argument("--base", help="zoo model whose critic is the frozen D0 ('own': the model's own critic)")
    p.add_argument("--corrector", action="store_true", help="d = D0 + C with the model's own critic as D0 (= --base own)")
    p.add_argument("--regularizer", default="none", choices=["spectral", "gp", "none"],
                   help="spectral norm on C, gradient penalty on C, or none: early stopping only (default)")
    p.add_argument("--calibrate", default="platt", choices=["platt", "temperature", "none"],
                   help="affine calibration fitted on the held-out split (default platt)")
    p.add_argument("--hidden", type=int, nargs="*", default=[128, 128], help="hidden widths of the MLP C (default 128 128)")
    p.add_argument("--max-epochs", type=int, default=200, help="epoch limit (default 200)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, split, init and batches")
    p.add_argument("--batch-size", type=int, default=500, help="generator chunk when drawing samples (default 500)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", help="save the fitted critic to this .safetensors file")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=main)


def _fail(msg: str):
    raise SystemExit(f"dgflow fit-critic: {msg}")


def real_samples(dataset: str, n: int, offset: int, seed: int, data_dir: str | None, rng):
    """``n`` real samples: fresh draws of a 2D toy (from ``rng``), or Fashion-MNIST train images
    ``offset .. offset + n`` of the permutation seeded by ``seed``."""
    import torch

    from ..data import fmnist, toy2d

    if dataset in toy2d.DATASETS:
        return toy2d.sample(dataset, n, rng)
    if dataset != "fmnist":
        _fail(f"--data {dataset!r} is not supported: use one of {[*toy2d.DATASETS, 'fmnist']} "
              "(other data: call dgflow.fit_critic in Python)")
    try:
        images = fmnist.to_model_input(fmnist.load("train", data_dir, check_size=False)[0])
    except fmnist.FashionMNISTError as err:
        _fail(f"--data-dir: {err}")
    if offset + n > len(images):
        _fail(f"--offset {offset} + --n {n} exceeds the {len(images)} train images in {fmnist.data_dir(data_dir)}")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[perm[offset:offset + n]]


def _critic_spec(entry: dict) -> dict:
    spec = entry["critic"]
    out = {"arch": spec["arch"], "kwargs": dict(spec.get("kwargs") or {}), "convention": spec["convention"]}
    return {**out, "temperature": float(spec["temperature"])} if "temperature" in spec else out


def fit(args: argparse.Namespace):
    """Fit as the options say; returns (report dict, fitted critic, held-out real, held-out fake)."""
    import torch

    from .. import zoo
    from ..calibration import calibrate, calibration_report
    from ..fit import fit_critic
    from ..flow import generate
    from ..models.arch.fitted import fresh_critic

    for name, v, low in (("n", args.n, 2), ("offset", args.offset, 0), ("batch-size", args.batch_size, 1)):
        if v < low:
            _fail(f"--{name} must be >= {low}, got {v}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = zoo.load(args.model, zoo=args.zoo)
    dataset = args.data or model.entry["dataset"]
    base_name = "own" if args.corrector else args.base
    if base_name is None and args.arch == "corrector":
        base_name = "own"
    if args.corrector and args.base not in (None, "own"):
        _fail(f"--corrector uses the model's own critic as D0; it contradicts --base {args.base}")
    base_model = None if base_name is None else model if base_name == "own" else zoo.load(base_name, zoo=args.zoo)
    base_spec = None if base_model is None else _critic_spec(base_model.entry)
    rng = torch.Generator().manual_seed(args.seed)
    real = real_samples(dataset, args.n, args.offset, args.seed, args.data_dir, rng)
    fake = generate(model.generator, model.generator.sample_prior(args.n, generator=rng), args.batch_size)
    if fake.shape[1:] != real.shape[1:]:
        _fail(f"the samples of {args.model!r} have shape {tuple(fake.shape[1:])} but the {dataset} data "
              f"{tuple(real.shape[1:])}; pick the model's dataset with --data")
    try:
        net, net_spec = fresh_critic(args.arch, real.shape[1:], hidden=args.hidden, base=base_spec, seed=args.seed)
    except ValueError as err:
        _fail(f"--arch: {err}")
    none = lambda v: None if v == "none" else v  # noqa: E731
    fitted = fit_critic(real, fake, critic=net, base=None if base_model is None else base_model.critic,
                        hidden=tuple(args.hidden), regularizer=none(args.regularizer),
                        calibrate=none(args.calibrate), max_epochs=args.max_epochs, patience=args.patience,
                        seed=args.seed, progress=True)
    ir, jf = fitted.info.val_index
    vr, vf = real[ir], fake[jf]
    own = calibrate(model.critic, vr, vf, "platt")
    res = {"model": args.model, "dataset": dataset, "n": args.n, "held_out_per_side": [len(vr), len(vf)],
           "settings": {k: getattr(args, k) for k in ("arch", "corrector", "regularizer", "calibrate", "hidden",
                                                      "max_epochs", "patience", "seed", "offset")},
           "base": None if base_model is None else base_model.name,
           "model_critic": calibration_report(model.critic, vr, vf),
           "model_critic_platt": {**calibration_report(own, vr, vf), "a": float(own.calibration.a),
                                  "b": float(own.calibration.b)},
           "fitted_raw": fitted.info.val_before, "fitted": fitted.info.val_after,
           "fit": {"epochs_run": fitted.info.epochs_run, "best_epoch": fitted.info.best_epoch,
                   "stopped_early": fitted.info.stopped_early, "calibration_test": fitted.info.calibration_test},
           "zoo_critic": {"arch": "dgflow.models.arch.fitted:fitted_critic",
                          "kwargs": {"net": net_spec, "base": base_spec, "regularizer": none(args.regularizer)},
                          "convention": "logit"}}
    return res, fitted, vr, vf


def run(args: argparse.Namespace) -> dict:
    """Fit, evaluate and (with ``--out``) save; returns the report as a dict."""
    from ..io import save_modules

    if args.out and not str(args.out).endswith(".safetensors"):
        _fail(f"--out must name a .safetensors file, got {args.out}")
    res, fitted, _, _ = fit(args)
    if args.out:
        sha = save_modules(args.out, {"critic": fitted.cpu()}, {"fit_critic": res})
        res["saved"] = {"path": str(args.out), "sha256": sha,
                        "zoo_weights": {"path": str(args.out), "sha256": sha, "modules": ["critic"]}}
    return res


def main(args: argparse.Namespace) -> int:
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    base = f", D0 = critic of {res['base']}" if res["base"] else ""
    print(f"{res['model']} ({res['dataset']}): {res['n']} real + {res['n']} generated samples, C = {res['settings']['arch']}"
          f"{base}, held-out {res['held_out_per_side'][0]} + {res['held_out_per_side'][1]} (also used for calibration)")
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
    if "saved" in res:
        import yaml

        lines = yaml.safe_dump({"critic": res["zoo_critic"], "weights": [res["saved"]["zoo_weights"]]},
                               sort_keys=False, width=100)
        print(f"saved {res['saved']['path']} (sha256 {res['saved']['sha256']}); in the model's zoo entry, "
              "with the generator's file as another 'weights' item (modules: [generator]):")
        print("".join("    " + line + "\n" for line in lines.splitlines()), end="")
    return 0
