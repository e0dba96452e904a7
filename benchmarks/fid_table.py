"""FID table of DGflow, DDLS and DOT on the Fashion-MNIST image bases.

    python benchmarks/fid_table.py                       # WGAN-GP, SN-DCGAN; N = 10,000, FMNIST-CNN features
    python benchmarks/fid_table.py --bases snresnet mmdgan vae glow    # the paper's other bases (kept beside)
    python benchmarks/fid_table.py --eta 0.03 --tag eta003 --refine-opt solver=euler
    python benchmarks/fid_table.py --config benchmarks/configs/cifar10.yaml --device cuda \
        --zoo benchmarks/results/bases/cifar10_zoo.yaml    # bases registered by train_fmnist_gan.py --zoo

Each base is the zoo model ``<dataset>-<base>`` (``dgflow.zoo.load``: the packaged Fashion-MNIST
bases, or entries of ``--zoo`` files). For each base, ``--n`` prior latents (seeded) are refined
for ``--steps`` gradient steps by DGflow with the paper's scheme (``dgflow.PAPER``: eta 0.1, 0.05 for
Glow, no drift cap, no stop rule; KL, and logD too for SN-DCGAN, or ``--divergence``), DDLS (eps
``--ddls-eps``) and DOT (Adam lr ``--dot-lr``, K_eff from 500 latent pairs), all with the same
number of critic-gradient steps and the same starting latents. FID against the test split's
cached statistics is taken every ``--every`` steps, and so is the validation FID against 10,000
*train*-split images, which (with :class:`dgflow.stopping.LogitMatch` on 2,000 other train images)
chooses a stopping step for every method without the test split. A row "DGflow defaults" runs
``refine`` with its own defaults (the evaluation itself is :mod:`benchlib.evaluation`). Writes
``<results-dir>/fid_<dataset>[_tag]`` (default ``benchmarks/results/``) ``.json`` / ``.md``
(table) / ``_steps.png`` (FID vs step) / ``_samples_<base>.png`` (the first 64 samples of the
base and of each method at its validation-chosen step). A run of some ``--bases`` keeps the other
bases' results of an earlier run with the same settings, so the bases can be run one at a time. FID numbers on the
FMNIST-CNN features are "FID (FMNIST-CNN features)", not Inception FID; N is reported with each.
Nothing is tuned here: the step sizes are the paper's defaults unless given on the command line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import dgflow.zoo
from benchlib import RESULTS
from benchlib.bases import gan_model, weights_info
from benchlib.evaluation import (BASE_LABELS, add_arguments, evaluate_models, make_extractor, methods_for,
                                 plot_curves, plot_samples, reference_sets, resolve, write_markdown)
from benchlib.images import resolve as resolve_setup
from dgflow.metrics import fid as fidlib


def evaluate_base(base: str, dataset: str, ext, refs: dict, a: argparse.Namespace,
                  device: torch.device) -> tuple[dict, dict]:
    """Every method of :func:`methods_for` on the GAN base ``base`` of ``dataset``, loaded from the
    zoo (``--zoo`` files first): see :func:`evaluate_models`."""
    model = dgflow.zoo.load(gan_model(dataset, base), zoo=a.zoo, device=device)
    z = model.generator.sample_prior(a.n, generator=torch.Generator().manual_seed(a.seed)).to(device)
    return evaluate_models(base, model.generator, model.critic, z, methods_for(base, a), ext, refs, a,
                           weights_info(model))


MERGE_KEYS = ("dataset", "metric", "extractor", "n", "steps", "record_steps", "eta", "gamma", "seed")


def merge_previous(res: dict, path: Path) -> dict:
    """Keep the other bases of an earlier run at ``path`` if it used the same settings."""
    if not path.is_file():
        return res
    old = json.loads(path.read_text())
    for r in old.get("bases", {}).values():  # JSON turned the step keys into strings
        for m in r["methods"].values():
            for k in ("fid_by_step", "val_fid_by_step", "d_mean_by_step"):
                if k in m:
                    m[k] = {int(s): v for s, v in m[k].items()}
    if any(old.get(k) != res.get(k) for k in MERGE_KEYS):
        print(f"{path}: earlier results use other settings; overwriting them", flush=True)
        return res
    bases = {**{k: v for k, v in old["bases"].items() if k not in res["bases"]}, **res["bases"]}
    order = list(BASE_LABELS)
    bases = dict(sorted(bases.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return {**res, "bases": bases,
            "seconds_by_base": {**old.get("seconds_by_base", {}), **res["seconds_by_base"]}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML setup (benchmarks/configs/*.yaml); default Fashion-MNIST")
    p.add_argument("--bases", nargs="+", default=["wgangp", "sndcgan"],
                   help="bases, loaded as zoo models <dataset>-<base> (e.g. fmnist-wgangp; also snresnet, mmdgan, "
                        "vae, glow: their zoo entries' critics)")
    p.add_argument("--zoo", action="append", help="zoo yaml with the bases' entries where they are not "
                   "packaged (e.g. written by train_fmnist_gan.py --zoo); repeatable")
    add_arguments(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--features", choices=["cnn", "inception"], help="default: the setup's")
    p.add_argument("--results-dir", default=str(RESULTS), help="where the output files go")
    p.add_argument("--tag", default="", help="suffix of the output files")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    setup = resolve_setup(a.config)
    resolve(a, setup)  # command line, else the config's refine/eval settings, else the paper's
    dev, ds = torch.device(a.device), setup["dataset"]
    kind = a.features or ("inception" if setup["feature_extractor"] == "inception" else "cnn")
    try:
        ext, metric, cls_info = make_extractor(kind, a, dev)
    except (fidlib.InceptionWeightsMissing, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    refs = reference_sets(ext, ds, a.seed, data_dir=a.data_dir, cache=a.cache, batch_size=a.batch_size)
    ref = refs["test"]
    res = {"dataset": ds, "metric": metric, "extractor": ext.name, "n": a.n, "steps": a.steps,
           "record_steps": list(range(0, a.steps, a.every)) + [a.steps],
           "reference": f"{ds} test split, {ref.n:,} images (cached statistics)", "classifier": cls_info,
           "seed": a.seed, "threads": a.threads, "device": str(dev), "eta": a.eta, "gamma": a.gamma,
           "tuned": False, "bases": {}}
    stem = Path(a.results_dir) / f"fid_{ds}{'_' + a.tag if a.tag else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    res["seconds_by_base"] = {}
    for base in a.bases:
        t0 = time.perf_counter()
        res["bases"][base], grids = evaluate_base(base, ds, ext, refs, a, dev)
        res["seconds_by_base"][base] = round(time.perf_counter() - t0, 1)
        plot_samples(base, grids, Path(f"{stem}_samples_{base}.png"))
    res = merge_previous(res, Path(f"{stem}.json"))  # bases may be run separately (or in parallel)
    Path(f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, Path(f"{stem}.md"))
    plot_curves(res, stem)
    print(Path(f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
