"""Is refine's default safe on bases it was not designed on? (issue: safe by default)

    python benchmarks/safe_defaults.py                 # every base of the split; ~1 h here (2 workers)
    python benchmarks/safe_defaults.py --split dev     # the development half only

The bases and their development / test split are ``benchmarks/configs/safe_defaults_bases.yaml``,
declared before the rules were designed. For every base, from the same seeded latents (2D: 5,000;
images: 2,000) and scored on *test* data (2D: EMD to 1,000 fresh points, HQ %, modes; images: FID
(FMNIST-CNN features) against the test split):

* the rules: ``refine``'s old default (``eta="auto"``, ``clip=1``, 25 steps, ``stop=None``); its
  new default without real data (the same plus :class:`dgflow.stopping.AtChance`); its new
  default with real data (``real=`` 2,000 held-out real samples: :class:`dgflow.stopping.DataMatch`);
  the old real-data rule (:class:`dgflow.stopping.LogitMatch`, half the gap, same real samples);
  the paper's scheme (eta 0.1, no cap, 25 steps);
* the oracle: the best step (every 5, up to ``--max-steps``) of the best fixed-eta scheme
  (eta 0.1, 0.03, 0.01, no cap), found with the test metric;
* gain recovery (base - rule) / (base - oracle), where the oracle beats the base by more than the
  metric's noise; the noise: the standard deviation of the base's metric over 3 latent seeds;
* the cost: gradient steps run and wall time relative to 25 plain steps of the same base.

Writes benchmarks/results/safe_defaults.json / .md / .png. Per-base results are cached under
benchmarks/results/_scratch/safe_defaults/ (keyed by their settings).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

import dgflow
import dgflow.flow
import dgflow.zoo
from benchlib import BASES_DIR, BENCHMARKS, RESULTS, SCRATCH, command_line, pyplot
from benchlib.bases import load_toy2d_base, register_gan_base, toy2d_base_path
from dgflow.io import read_metadata
from dgflow.stopping import LogitMatch, mean_logit

SPLIT_FILE = BENCHMARKS / "configs" / "safe_defaults_bases.yaml"
CACHE_DIR = SCRATCH / "safe_defaults"
ORACLE_ETAS = (0.1, 0.03, 0.01)
BUDGET = 25
RULES = ("old default", "default, no data", "default, real data", "LogitMatch ½", "paper η=0.1")


# ----------------------------------------------------------------------------- bases
def jobs_of(split: str) -> list[dict]:
    spec = yaml.safe_load(SPLIT_FILE.read_text())
    jobs = []
    for half in ("dev", "test") if split == "all" else (split,):
        for ds, loss, seed, iters in spec[half].get("toy2d", []):
            jobs.append({"half": half, "kind": "2d", "dataset": ds, "label": f"{ds} {loss} s{seed} it{iters}",
                         "path": str(toy2d_base_path(ds, loss, seed, iters))})
        for name in spec[half].get("image", []):
            jobs.append({"half": half, "kind": "image", "dataset": "fmnist", "model": name,
                         "label": name.replace(".safetensors", "").replace("_", "-")})
    return jobs


def load_image_base(model: str):
    """(generator, critic) of a zoo model, or of a weights file under BASES_DIR written by
    train_fmnist_gan.py (registered in a scratch zoo from its metadata, so the zoo builds it)."""
    if not model.endswith(".safetensors"):
        m = dgflow.zoo.load(model)
        return m.generator, m.critic
    path = BASES_DIR / model
    meta = read_metadata(path)
    zoo = CACHE_DIR / f"zoo_{path.stem}.yaml"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = f"fmnist-{meta['base']}"
    register_gan_base(zoo, name, path, meta)
    m = dgflow.zoo.load(name, zoo=zoo)
    return m.generator, m.critic


# ----------------------------------------------------------------------------- scoring
class Scorer2D:
    def __init__(self, ds: str, seed: int, emd_n: int):
        from dgflow.data import toy2d
        self.ds, self.emd_n = ds, emd_n
        self.test = toy2d.sample(ds, emd_n, torch.Generator().manual_seed(seed + 2))
        self.real = toy2d.sample(ds, 2000, torch.Generator().manual_seed(seed + 3))

    def __call__(self, x: torch.Tensor) -> dict:
        from dgflow.metrics.toy2d import emd, report
        r = report(self.ds, x)
        return {"score": emd(x[: self.emd_n], self.test), "hq": r["hq"], "modes": r.get("modes"),
                "modes_1pct": r.get("modes_1pct")}


class ScorerImage:
    def __init__(self, seed: int):
        from benchlib.evaluation import reference_sets
        from dgflow.metrics import fid as fidlib
        self.fidlib = fidlib
        self.ext = fidlib.CNNFeatures.from_file()
        refs = reference_sets(self.ext, "fmnist", seed, progress=False)
        self.test, self.real = refs["test"], refs["real"]

    def __call__(self, x: torch.Tensor) -> dict:
        f = self.fidlib
        return {"score": f.frechet_distance(f.gaussian_stats(f.extract(self.ext, x, 500)), self.test)}


# ----------------------------------------------------------------------------- one base
def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def run_base(job: dict) -> dict:
    torch.set_num_threads(1)
    a = job["args"]
    if job["kind"] == "2d":
        g, d = load_toy2d_base(job["path"])
        scorer, n, max_steps, bs = Scorer2D(job["dataset"], a.seed, a.emd_n), a.n, a.max_steps, None
        prior = lambda k, s: torch.randn(k, 2, generator=torch.Generator().manual_seed(s))  # noqa: E731
    else:
        g, d = load_image_base(job["model"])
        scorer, n, max_steps, bs = ScorerImage(a.seed), a.image_n, a.image_max_steps, 500
        prior = lambda k, s: g.sample_prior(k, generator=torch.Generator().manual_seed(s))  # noqa: E731
    z = prior(n, a.seed)
    score = lambda latents: scorer(dgflow.generate(g, latents, bs))  # noqa: E731
    base = score(z)
    noise = statistics.stdev([base["score"]] + [score(prior(n, a.seed + 100 + i))["score"] for i in range(2)])
    real = scorer.real
    common = dict(batch_size=bs, generator_rng=a.seed + 4)

    # the old default, every state kept (LogitMatch is replayed on its mean logits)
    states, d_mean = {}, {}

    def keep(step, zz, logits):
        states[step], d_mean[step] = zz.detach().clone(), float(logits.mean())

    z25, plain_s = timed(dgflow.refine, g, d, z, steps=BUDGET, stop=None, callback=keep, **common)
    states[BUDGET] = z25
    d_mean[BUDGET] = mean_logit(d, dgflow.generate(g, z25, bs), bs)
    logit_step = LogitMatch(d, real, batch_size=bs).stop_step([d_mean[k] for k in range(BUDGET + 1)])
    logit_step = BUDGET if logit_step is None else logit_step
    (z_free, info_free), free_s = timed(dgflow.refine, g, d, z, steps=BUDGET, return_info=True, **common)
    (z_real, info_real), real_s = timed(dgflow.refine, g, d, z, steps=BUDGET, real=real, return_info=True, **common)
    rules = {
        "old default": {"step": BUDGET, "steps_run": BUDGET, "seconds": plain_s, **score(z25)},
        "default, no data": {"step": info_free.stop_step if info_free.stop_step is not None else BUDGET,
                             "steps_run": info_free.steps_run, "seconds": free_s, "reason": info_free.stop_reason,
                             **score(z_free)},
        "default, real data": {"step": info_real.stop_step if info_real.stop_step is not None else BUDGET,
                               "steps_run": info_real.steps_run, "seconds": real_s, "reason": info_real.stop_reason,
                               **score(z_real)},
        "LogitMatch ½": {"step": logit_step, "steps_run": logit_step, **score(states[logit_step])},
    }
    # the oracle: every fixed-eta scheme's test curve
    curves, diverged = {}, {}
    for eta in ORACLE_ETAS:
        every5 = {}

        def keep5(step, zz, logits):
            if step % 5 == 0:
                every5[step] = zz.detach().clone()

        try:
            every5[max_steps] = dgflow.refine(g, d, z, steps=max_steps, eta=eta, clip=None, stop=None,
                                              callback=keep5, **common)
        except FloatingPointError as exc:  # a fixed step too long for this critic: its curve ends there
            diverged[f"η={eta}"] = str(exc)
        curves[f"η={eta}"] = {k: score(s) for k, s in sorted(every5.items())}
    paper = curves["η=0.1"].get(BUDGET, {"score": float("inf")})
    rules["paper η=0.1"] = {"step": BUDGET, "steps_run": BUDGET, **paper,
                            **({"diverged": diverged["η=0.1"]} if "η=0.1" in diverged else {})}
    scheme, step = min(((s, k) for s, c in curves.items() for k in c), key=lambda sk: curves[sk[0]][sk[1]]["score"])
    oracle = {"scheme": scheme, "step": step, **curves[scheme][step]}
    out = {k: v for k, v in job.items() if k != "args"}
    out.update(base=base, noise=noise, oracle=oracle, rules=rules, curves=curves, diverged=diverged,
               plain_seconds=plain_s,
               gain_estimate=info_free.stop_reason)
    for r in rules.values():
        r.update(judge(base["score"], oracle["score"], r["score"], noise))
        if "seconds" in r:
            r["cost_ratio"] = r["seconds"] / plain_s
    print(f"{job['half']:4s} {job['label']:34s} base {base['score']:.3f} oracle {oracle['score']:.3f} "
          f"({scheme} @{step}) | " + " | ".join(f"{k}: {r['score']:.3f} @{r['step']}" for k, r in rules.items()),
          flush=True)
    return out


NOISE_SIGMAS = 2.0  # "beyond the metric's noise": more than 2 standard deviations of the base's metric


def judge(base: float, oracle: float, rule: float, noise: float) -> dict:
    """Recovery (where the oracle beats the base beyond the noise) and whether the rule is worse."""
    margin = NOISE_SIGMAS * noise
    return {"recovery": (base - rule) / (base - oracle) if base - oracle > margin else None,
            "worse": rule - base > margin, "rel_change": (rule - base) / base}


# ----------------------------------------------------------------------------- summary
def summarise(results: list[dict]) -> dict:
    out = {}
    for half in dict.fromkeys(r["half"] for r in results):
        for rule in RULES:
            rows = [r["rules"][rule] for r in results if r["half"] == half]
            rec = [x["recovery"] for x in rows if x["recovery"] is not None]
            cost = [x["cost_ratio"] for x in rows if "cost_ratio" in x]
            out[f"{half} | {rule}"] = {
                "bases": len(rows), "worse_beyond_noise": sum(x["worse"] for x in rows),
                "gainable_bases": len(rec), "mean_recovery": statistics.mean(rec) if rec else None,
                "worst_recovery": min(rec) if rec else None,
                "mean_rel_change": statistics.mean(x["rel_change"] for x in rows),
                "mean_steps_run": statistics.mean(x["steps_run"] for x in rows),
                "mean_cost_ratio": statistics.mean(cost) if cost else None}
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def markdown(results: list[dict], summary: dict, a, wall: float) -> str:
    lines = ["# Safe defaults: refine's rules on bases they were not designed on", "",
             f"`{a.command}` ({sum(r['seconds'] for r in results) / 60:.0f} CPU-process minutes over the bases, "
             f"one thread each, on a 2-core CPU; this run {wall / 60:.0f} min with cached bases). Split: `{SPLIT_FILE.relative_to(BENCHMARKS.parent)}` "
             "(declared before the rules were designed). Metric: 2D EMD to 1,000 fresh points; images FID "
             f"(FMNIST-CNN features) against the test split, N = {a.image_n:,}. Recovery = (base − rule) / "
             "(base − oracle), on the bases where the oracle (best step of the best fixed-η scheme, chosen with "
             f"the test metric) beats the base by more than {NOISE_SIGMAS:g}σ of the metric's noise (σ: the "
             "base's metric over 3 latent seeds); *worse*: the rule ends more than that above the base. Cost: "
             f"wall time relative to {BUDGET} plain steps of the same base.", "",
             "| half | rule | bases | worse beyond noise | gainable | mean recovery | worst recovery | "
             "mean change | mean steps run | cost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in summary.items():
        half, rule = key.split(" | ")
        cost = "–" if row["mean_cost_ratio"] is None else f"{row['mean_cost_ratio']:.2f}×"
        lines.append(f"| {half} | {rule} | {row['bases']} | {row['worse_beyond_noise']} | {row['gainable_bases']} | "
                     f"{_pct(row['mean_recovery'])} | {_pct(row['worst_recovery'])} | "
                     f"{100 * row['mean_rel_change']:+.1f}% | {row['mean_steps_run']:.1f} | {cost} |")
    lines += ["", "## Per base", "", "Each cell: test metric @ step (recovery; ✗ = worse beyond noise). 2D adds HQ % "
              "and modes.", "", "| half | base | base metric ± σ | oracle | " + " | ".join(RULES) + " |",
              "|---|---|---|---|" + "---|" * len(RULES)]
    for r in results:
        def cell(x):
            extra = f", HQ {100 * x['hq']:.0f}%, {x['modes']} modes" if x.get("hq") is not None and x.get("modes") \
                else (f", HQ {100 * x['hq']:.0f}%" if x.get("hq") is not None else "")
            rec = "" if x.get("recovery") is None else f" ({_pct(x['recovery'])})"
            return f"{x['score']:.3f} @{x['step']}{rec}{' ✗' if x.get('worse') else ''}{extra}"
        o = r["oracle"]
        lines.append(f"| {r['half']} | {r['label']} | {cell({**r['base'], 'step': 0})} ± {r['noise']:.3f} | "
                     f"{o['score']:.3f} ({o['scheme']} @{o['step']}) | "
                     + " | ".join(cell(r["rules"][k]) for k in RULES) + " |")
    lines += ["", "Why the no-data default stopped where it did, per base:", ""]
    lines += [f"* {r['label']}: {r['rules']['default, no data']['reason']}" for r in results]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    """Relative change of the test metric per base and rule, dev and test halves side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(15, 6), sharey=True, squeeze=False)
    for ax, half in zip(axes[0], ("dev", "test")):
        rows = [r for r in results if r["half"] == half]
        width = 0.8 / (len(RULES) + 1)
        for j, rule in enumerate(("oracle",) + RULES):
            vals = [((r["oracle"]["score"] if rule == "oracle" else r["rules"][rule]["score"]) - r["base"]["score"])
                    / r["base"]["score"] for r in rows]
            ax.bar([i + j * width for i in range(len(rows))], [100 * max(min(v, 1.0), -1.0) for v in vals],
                   width, label=rule)
        ax.set_xticks([i + 0.4 for i in range(len(rows))], [r["label"] for r in rows], rotation=75, fontsize=7)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=f"{half} half", ylabel="test metric change vs base, % (clipped at ±100)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def cached_run(job: dict) -> dict:
    a = job["args"]
    settings = {"job": {k: v for k, v in job.items() if k != "args"}, "seed": a.seed, "n": a.n, "emd_n": a.emd_n,
                "max_steps": a.max_steps, "image_n": a.image_n, "image_max_steps": a.image_max_steps,
                "refine": repr(dgflow.flow.refine_defaults("steps", "eta", "clip", "stop", "auto_step", "gamma"))}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{job['label'].replace(' ', '_')}_{key}.json"
    if cache.is_file() and not a.fresh:
        return json.loads(cache.read_text())
    t0 = time.perf_counter()
    res = run_base(job)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return json.loads(cache.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["dev", "test", "all"], default="all")
    p.add_argument("--only", nargs="+", help="labels of bases to run (default: all of the split)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--emd-n", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=100, help="oracle scan of the 2D bases")
    p.add_argument("--image-n", type=int, default=2000)
    p.add_argument("--image-max-steps", type=int, default=40, help="oracle scan of the image bases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "safe_defaults"))
    a = p.parse_args(argv)
    a.command = command_line(__file__, argv)
    jobs = [j for j in jobs_of(a.split) if not a.only or j["label"] in a.only]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        results = list(pool.map(cached_run, [{**j, "args": a} for j in jobs]))
    wall = time.perf_counter() - t0
    summary = summarise(results)
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"command": a.command, "split_file": str(SPLIT_FILE.name),
                                                    "noise_sigmas": NOISE_SIGMAS, "oracle_etas": ORACLE_ETAS,
                                                    "budget": BUDGET, "wall_seconds": round(wall, 1),
                                                    "summary": summary, "bases": results}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results, summary, a, wall))
    plot(results, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
