"""Which step rule and which stopping rule should be refine's default? (issue: scale-free steps)

    python benchmarks/step_rules.py            # every cached base; ~40 min here (2 workers)
    python benchmarks/step_rules.py --rules "auto, clip 1" "auto 0.01, clip 1" "auto 0.04, clip 1" \
        "auto, clip 1, γ 0" "auto, clip 1, γ 0.05" --out benchmarks/results/defaults_sensitivity
                                               # the default's auto_step and gamma varied

For every base found (the 2D toy bases of benchmarks/toy2d_table.py, all base seeds, and the
Fashion-MNIST GAN bases of the zoo), DGflow KL (gamma 0.01) is run from the same
latents under each step rule for up to ``--max-steps`` steps, keeping every state. Then each
stopping rule picks a step, and the samples at that step are scored on *test* data:

* step rules: the paper's fixed eta 0.1, fixed eta 0.01, ``eta="auto"`` (median latent step
  0.02), and ``eta="auto"`` with ``clip=3`` or ``clip=1`` (each sample's drift capped at 3x or
  1x the first step's median drift length, i.e. at 0.06 or 0.02 latent units a step);
* stopping rules: the paper's fixed 25 steps; :class:`dgflow.stopping.LogitMatch` with held-out
  real samples (fraction 1 and 1/2 of the logit gap); the step with the best *validation* score
  (EMD to a validation sample of fresh 2D data; FID against the Fashion-MNIST *train* split),
  scanned every ``--val-every`` steps.

Test scores: 2D: high-quality %, modes (>= 1 HQ sample), modes with >= 1% of HQ, EMD to a test
sample of fresh data (POT, ``--emd-n`` points); images: FID (FMNIST-CNN features) against the test
split, N = ``--image-n``. Nothing here looks at test scores to choose anything. Writes
benchmarks/results/step_rules.json / .md / .png. Each base's result is cached under
benchmarks/results/_scratch/step_rules/ (keyed by its settings), so a rerun only computes what changed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import dgflow
import dgflow.zoo
from benchlib import RESULTS, ROOT, SCRATCH, command_line, pyplot
from benchlib.bases import IMAGE_GANS, cached_toy2d_bases, gan_model, load_toy2d_base
from benchlib.evaluation import reference_sets, run_method
from dgflow.data import toy2d
from dgflow.metrics.toy2d import emd, report
from dgflow.stopping import LogitMatch

CACHE_DIR = SCRATCH / "step_rules"  # per-base results, reused by reruns (not committed)
STEP_RULES = {"η=0.1": {"eta": 0.1, "clip": None}, "η=0.01": {"eta": 0.01, "clip": None},
              "auto": {"eta": "auto", "clip": None}, "auto, clip 3": {"eta": "auto", "clip": 3.0},
              "auto, clip 1": {"eta": "auto", "clip": 1.0}}
# Sensitivity of the default (auto, clip 1) to its two other constants, auto_step and gamma:
# ``--rules "auto, clip 1" "auto 0.01, clip 1" ...`` (see benchmarks/results/defaults_sensitivity.md).
SENSITIVITY_RULES = {"auto 0.01, clip 1": {"eta": "auto", "clip": 1.0, "auto_step": 0.01},
                     "auto 0.04, clip 1": {"eta": "auto", "clip": 1.0, "auto_step": 0.04},
                     "auto, clip 1, γ 0": {"eta": "auto", "clip": 1.0, "gamma": 0.0},
                     "auto, clip 1, γ 0.05": {"eta": "auto", "clip": 1.0, "gamma": 0.05}}
# What a numeric eta should mean (the paper's update, or capped like the default):
# ``--rules "η=0.1" "η=0.1, clip 1" "η=0.01" "η=0.01, clip 1" --out benchmarks/results/fixed_eta_cap``.
CAPPED_FIXED_RULES = {"η=0.1, clip 1": {"eta": 0.1, "clip": 1.0}, "η=0.01, clip 1": {"eta": 0.01, "clip": 1.0}}
ALL_RULES = {**STEP_RULES, **SENSITIVITY_RULES, **CAPPED_FIXED_RULES}
STOP_RULES = ("25 steps", "logit match", "logit match ½", "validation")
GAMMA = 0.01


def trajectory(g, d, z, rule: dict, max_steps: int, seed: int, batch_size=None):
    """States 0..max_steps and mean logits 0..max_steps of one refinement (DGflow KL, gamma GAMMA
    unless the rule sets its own)."""
    states, d_mean, _ = run_method(dgflow.refine, {"gamma": GAMMA, "divergence": "kl", "stop": None, **rule}, g, d, z,
                                   max_steps, batch_size, seed, progress=False)
    steps = range(max_steps + 1)
    return [states[k] for k in steps], [d_mean[k] for k in steps]


def logit_stop(d_mean: list[float], target: float, fraction: float) -> int:
    """The step :class:`LogitMatch` stops at, replayed on recorded mean logits (last step if never)."""
    step = LogitMatch.from_target(target, fraction).stop_step(d_mean)
    return len(d_mean) - 1 if step is None else step


def choose_steps(d_mean: list[float], target: float, val: dict[int, float], max_steps: int) -> dict[str, int]:
    return {"25 steps": min(25, max_steps), "logit match": logit_stop(d_mean, target, 1.0),
            "logit match ½": logit_stop(d_mean, target, 0.5),
            "validation": min(val, key=lambda k: (val[k], k))}


# ----------------------------------------------------------------------------- 2D bases
def toy_bases(seeds: list[int]) -> list[dict]:
    """A job for every cached 2D base of training seeds ``seeds``."""
    return [{"kind": "2d", **b, "label": f"{b['dataset']} {b['loss']} s{b['base_seed']}"}
            for b in cached_toy2d_bases(seeds)]


def run_toy(job: dict) -> dict:
    torch.set_num_threads(1)
    a = job["args"]
    g, d = load_toy2d_base(job["path"])
    ds = job["dataset"]
    z = torch.randn(a.n, 2, generator=torch.Generator().manual_seed(a.seed))
    val_ref = toy2d.sample(ds, a.emd_n, torch.Generator().manual_seed(a.seed + 1))
    test_ref = toy2d.sample(ds, a.emd_n, torch.Generator().manual_seed(a.seed + 2))
    real = toy2d.sample(ds, 2000, torch.Generator().manual_seed(a.seed + 3))
    target = LogitMatch(d, real).target
    out = {**{k: v for k, v in job.items() if k != "args"}, "target_logit": target, "rules": {}}
    for name, rule in a.rule_set.items():
        states, d_mean = trajectory(g, d, z, rule, a.max_steps, a.seed + 4)
        xs = {}

        def x_at(k):
            if k not in xs:
                xs[k] = dgflow.generate(g, states[k])
            return xs[k]

        val = {k: emd(x_at(k)[: a.emd_n], val_ref) for k in range(0, a.max_steps + 1, a.val_every)}
        stops = choose_steps(d_mean, target, val, a.max_steps)
        curve = sorted(set(range(0, a.max_steps + 1, a.val_every)) | set(stops.values()))
        test = {}
        for k in curve:
            r = report(ds, x_at(k))
            test[k] = {"hq": r["hq"], "modes": r.get("modes"), "modes_1pct": r.get("modes_1pct"),
                       "emd": emd(x_at(k)[: a.emd_n], test_ref)}
        out["rules"][name] = {"d_mean": d_mean, "val": val, "stops": stops, "test": test}
        print(f"{job['label']:28s} {name:10s} stops {stops} test EMD "
              f"{test[0]['emd']:.3f} -> {[round(test[s]['emd'], 3) for s in stops.values()]}", flush=True)
    return out


# ----------------------------------------------------------------------------- image bases
def image_bases() -> list[dict]:
    """A job for every Fashion-MNIST GAN base of the zoo."""
    return [{"kind": "image", "dataset": "fmnist", "loss": base, "model": gan_model("fmnist", base),
             "label": f"fmnist {base}"} for base in sorted(IMAGE_GANS)]


def run_image(job: dict) -> dict:
    from dgflow.metrics import fid as fidlib

    torch.set_num_threads(1)
    a = job["args"]
    model = dgflow.zoo.load(job["model"])
    g, d = model.generator, model.critic
    ext = fidlib.CNNFeatures.from_file()
    refs = reference_sets(ext, "fmnist", a.seed, progress=False)
    test_ref, val_ref = refs["test"], refs["val"]
    target = LogitMatch(d, refs["real"], batch_size=500).target
    z = g.sample_prior(a.image_n, generator=torch.Generator().manual_seed(a.seed))
    out = {**{k: v for k, v in job.items() if k != "args"}, "target_logit": target, "rules": {}}
    for name, rule in a.rule_set.items():
        t0 = time.perf_counter()
        states, d_mean = trajectory(g, d, z, rule, a.image_max_steps, a.seed + 4, batch_size=500)
        feats = {}

        def fid_at(k, ref):
            if k not in feats:
                x = dgflow.generate(g, states[k], 500)
                feats[k] = fidlib.gaussian_stats(fidlib.extract(ext, x, 500))
            return fidlib.frechet_distance(feats[k], ref)

        val = {k: fid_at(k, val_ref) for k in range(0, a.image_max_steps + 1, a.image_val_every)}
        stops = choose_steps(d_mean, target, val, a.image_max_steps)
        curve = sorted(set(val) | set(stops.values()))
        test = {k: {"fid": fid_at(k, test_ref)} for k in curve}
        out["rules"][name] = {"d_mean": d_mean, "val": val, "stops": stops, "test": test,
                              "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{job['label']:28s} {name:10s} stops {stops} test FID {test[0]['fid']:.2f} -> "
              f"{[round(test[s]['fid'], 2) for s in stops.values()]}", flush=True)
    return out


# ----------------------------------------------------------------------------- summary
def score_of(res: dict, rule: str, step: int) -> float:
    """The test distance to data (2D: EMD, images: FID) at ``step``."""
    t = res["rules"][rule]["test"][step]
    return t["fid"] if "fid" in t else t["emd"]


def summarise(results: list[dict], rules) -> dict:
    """Per (step rule, stop rule) and kind of base (2D, image): mean and worst relative change of
    the test distance, bases improved, and 25Gaussians bases with no mode lost."""
    out = {}
    for rule in rules:
        for stop in STOP_RULES:
            row = {}
            for kind in dict.fromkeys(r["kind"] for r in results):
                rel, modes_kept, improved = [], [], 0
                for res in (r for r in results if r["kind"] == kind):
                    step = res["rules"][rule]["stops"][stop]
                    base, after = score_of(res, rule, 0), score_of(res, rule, step)
                    rel.append((after - base) / base)
                    improved += after < base
                    t0, t1 = res["rules"][rule]["test"][0], res["rules"][rule]["test"][step]
                    if t0.get("modes_1pct") is not None:
                        modes_kept.append(t1["modes_1pct"] >= t0["modes_1pct"] and t1["modes"] >= t0["modes"])
                row[kind] = {"mean_rel_change": sum(rel) / len(rel), "worst_rel_change": max(rel),
                             "improved": improved, "bases": len(rel), "modes_kept": sum(modes_kept),
                             "mode_bases": len(modes_kept)}
            out[f"{rule} | {stop}"] = row
    return out


def markdown(results: list[dict], summary: dict, a, wall: float) -> str:
    timed = [r["seconds"] for r in results if "seconds" in r]
    kinds = list(next(iter(summary.values())))
    names = {"2d": "2D (test EMD)", "image": "Fashion-MNIST (test FID)"}
    lines = ["## Step and stopping rules", "", f"Command: `{a.command}` ({wall / 60:.1f} min wall for this call; "
             f"{len(timed)} of the {len(results)} per-base jobs recorded their time: {sum(timed) / 60:.0f} CPU-min, "
             f"1 thread each; all are cached in "
             f"{CACHE_DIR.relative_to(ROOT)}). DGflow KL, γ = {GAMMA}; 2D: N = {a.n}, up to {a.max_steps} "
             f"steps, EMD on {a.emd_n} points; Fashion-MNIST: N = {a.image_n}, up to {a.image_max_steps} steps, "
             "FID (FMNIST-CNN features) against the test split. Validation: EMD to another fresh sample (2D), "
             "FID against 10k train images (Fashion-MNIST). Cells: mean / worst relative change of the test "
             "distance from the base to the chosen step (lower is better), bases improved; for 2D also the "
             "25Gaussians bases that lost no mode (neither modes nor modes ≥1%).", "",
             "| step rule | stop rule | " + " | ".join(names.get(k, k) for k in kinds) + " | 25G bases, no mode lost |",
             "|---|---|" + "---|" * (len(kinds) + 1)]
    for key, row in summary.items():
        rule, stop = key.split(" | ")
        cells = [f"{100 * c['mean_rel_change']:+.1f}% / {100 * c['worst_rel_change']:+.1f}%, "
                 f"{c['improved']}/{c['bases']}" for c in row.values()]
        modes = next((f"{c['modes_kept']}/{c['mode_bases']}" for c in row.values() if c["mode_bases"]), "–")
        lines.append(f"| {rule} | {stop} | " + " | ".join(cells) + f" | {modes} |")
    lines += ["", "Per base (test score at the chosen step; 2D: HQ % / modes / modes ≥1% / EMD; images: FID):", "",
              "| base | step rule | base score | " + " | ".join(STOP_RULES) + " |",
              "|---|---|---|" + "---|" * len(STOP_RULES)]
    for res in results:
        for rule, r in res["rules"].items():
            cells = [f"{fmt_test(r['test'][s])} @{s}" for s in r["stops"].values()]
            lines.append(f"| {res['label']} | {rule} | {fmt_test(r['test'][0])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_test(t: dict) -> str:
    if "fid" in t:
        return f"{t['fid']:.2f}"
    modes = f"/{t['modes']}/{t['modes_1pct']}" if t.get("modes") is not None else ""
    return f"{100 * t['hq']:.1f}{modes}/{t['emd']:.3f}"


def plot(results: list[dict], path: Path, cols: int = 7) -> None:
    """Per base: test distance by step (dot: where LogitMatch ½ stops) over the mean logit by step."""
    plt = pyplot()
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.7 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for j, res in enumerate(results):
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        top.set_visible(True), bottom.set_visible(True)
        lowest = float("inf")
        for rule, r in res["rules"].items():
            steps = sorted(r["test"])
            scores = [score_of(res, rule, k) for k in steps]
            lowest = min(lowest, *scores)
            line, = top.plot(steps, scores, label=rule, lw=1.2)
            bottom.plot(r["d_mean"], color=line.get_color(), lw=1.2)
            stop = r["stops"]["logit match ½"]
            top.plot([stop], [score_of(res, rule, stop)], "o", ms=3, color=line.get_color())
        base = score_of(res, next(iter(res["rules"])), 0)
        top.set_ylim(0.95 * lowest, 1.6 * base)  # the diverging curves leave the panel
        bottom.axhline(res["target_logit"], color="k", ls=":", lw=1)
        top.set_title(res["label"], fontsize=8)
        top.set_ylabel("test FID" if res["kind"] == "image" else "test EMD", fontsize=7)
        bottom.set_ylabel("mean logit (dotted: real data)", fontsize=7)
        bottom.set_xlabel("step", fontsize=7)
        for ax in (top, bottom):
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--emd-n", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--val-every", type=int, default=5)
    p.add_argument("--image-n", type=int, default=5000)
    p.add_argument("--image-max-steps", type=int, default=40)
    p.add_argument("--image-val-every", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true", help="recompute bases cached in " + str(CACHE_DIR))
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--no-2d", action="store_true")
    p.add_argument("--rules", nargs="+", default=list(STEP_RULES), choices=list(ALL_RULES), metavar="RULE",
                   help=f"step rules to compare (default: {list(STEP_RULES)}; also {list(SENSITIVITY_RULES)})")
    p.add_argument("--out", default=str(RESULTS / "step_rules"))
    a = p.parse_args(argv)
    a.rule_set = {name: ALL_RULES[name] for name in a.rules}
    a.command = command_line(__file__, argv)
    t0 = time.perf_counter()
    jobs = ([] if a.no_images else image_bases()) + ([] if a.no_2d else toy_bases(a.base_seeds))
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        results = list(pool.map(run_job, [{**j, "args": a} for j in jobs]))
    results.sort(key=lambda r: (r["kind"] != "image", r["label"]))
    wall = time.perf_counter() - t0
    summary = summarise(results, a.rule_set)
    out = Path(a.out)
    cfg = {k: v for k, v in vars(a).items()}
    out.with_suffix(".json").write_text(json.dumps({"config": cfg, "step_rules": a.rule_set, "gamma": GAMMA,
                                                    "wall_seconds": round(wall, 1), "summary": summary,
                                                    "bases": results}, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(results, summary, a, wall))
    plot(results, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


def run_job(job: dict) -> dict:
    """Run one base, or reuse its result from the scratch cache when its settings are unchanged."""
    a = job["args"]
    keys = ("n", "emd_n", "max_steps", "val_every") if job["kind"] == "2d" else \
        ("image_n", "image_max_steps", "image_val_every")
    settings = {"job": {k: v for k, v in job.items() if k != "args"}, "rules": a.rule_set, "gamma": GAMMA,
                "seed": a.seed, **{k: getattr(a, k) for k in keys}}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{job['label'].replace(' ', '_')}_{key}.json"
    if cache.is_file() and not a.fresh:
        return json.loads(cache.read_text(), object_hook=_int_keys)
    t0 = time.perf_counter()
    res = run_image(job) if job["kind"] == "image" else run_toy(job)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return json.loads(cache.read_text(), object_hook=_int_keys)  # same types as a cached result


def _int_keys(obj: dict) -> dict:
    """JSON turns the step keys of the score dicts into strings; turn them back."""
    return {int(k) if k.isdigit() else k: v for k, v in obj.items()}


if __name__ == "__main__":
    raise SystemExit(main())
