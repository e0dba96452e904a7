"""Is refine's default safe on bases it was not designed on? (issue: safe by default)

    python benchmarks/safe_defaults.py                 # every base of the split; ~1 h here (2 workers)
    python benchmarks/safe_defaults.py --split dev     # the development half only

The bases and their development / test split are ``benchmarks/configs/safe_defaults_bases.yaml``,
declared before the rules were designed. For every base, from the same seeded latents (2D: 5,000;
images: 2,000) and scored on *test* data (2D: EMD to 1,000 fresh points, HQ %, modes; images: FID
(FMNIST-CNN features) against the test split):

* the rules: ``refine``'s old default (``eta="auto"``, ``clip=1``, 25 steps, ``stop=None``); its
  new default without real data (the same plus :class:`dgflow.stopping.AtChance` with its end test on
  samples that are not images) and that rule without the end test (stop 23's default); its new
  default with real data (``real=`` 2,000 held-out real samples: :class:`dgflow.stopping.DataMatch`,
  which also steers the step); that rule with ``tol=0`` (stop 20's real-data default: the lowest
  check, whatever the distance is taken on);
  the old real-data rule (:class:`dgflow.stopping.LogitMatch`, half the gap, same real samples);
  the paper's scheme (eta 0.1, no cap, 25 steps);
* the oracle: the best step (every 5, up to ``--max-steps``) of the best fixed-eta scheme
  (eta 0.1, 0.03, 0.01, no cap), found with the test metric;
* gain recovery (base - rule) / (base - oracle), where the oracle beats the base by more than the
  metric's noise; the noise: the standard deviation of the base's metric over 3 latent seeds;
* the cost: gradient steps run and wall time relative to 25 plain steps of the same base (timed
  back to back in one process);
* the real-data rule's design curves: the default step rule for 100 steps, the test metric and
  DataMatch's distances (``benchlib.safe.CURVE_DISTANCES``: the energy distance on images' random-CNN
  features, the default; the energy distance and kernel MMD on the samples) every 5 steps,
  DataMatch replayed on them for each distance, budget and patience (``--long``: which halves get
  them), and the critic's Platt-calibrated gain.

Writes benchmarks/results/safe_defaults.json / .md / .png. Per-base results are cached under
benchmarks/results/_scratch/safe_defaults/ (keyed by their settings).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import statistics
import time
from pathlib import Path

import dgflow
import dgflow.calibration
import dgflow.distances
import dgflow.engine
import dgflow.flow
import dgflow.solvers
import dgflow.stopping
from benchlib import BENCHMARKS, RESULTS, command_line, pyplot, write_results
from benchlib.safe import (CURVE_DISTANCES, HALVES, LONG_STEPS, NOISE_SIGMAS, REFINE_MODULES, SPLIT_FILE,
                           STUDY_SETTINGS, UncappedVeto, cached, int_keys, jobs_of, judge, long_curve, map_bases,
                           noise_of, pct, replay_datamatch, setup, source_hash)
from dgflow.stopping import AtChance, DataMatch, LogitMatch, mean_logit

ORACLE_ETAS = (0.1, 0.03, 0.01)
BUDGET = 25
#: "no data, gate only": stop 23's no-data default, AtChance without its end test (fresh5 decides the end
#: test: benchmarks/configs/safe_defaults_bases.yaml); "real data, veto": stop 21's real-data default (benchlib.safe.UncappedVeto: the bound without stop
#: 22's cap); "real data, tol 0": the real-data default with DataMatch(tol=0), stop 20's default (fresh2 decided
#: its step control with a "real data, plain step" row; benchmarks/configs/safe_defaults_bases.yaml)
RULES = ("old default", "default, no data", "no data, gate only", "default, real data", "real data, veto",
         "real data, tol 0", "LogitMatch ½", "paper η=0.1")
STEP_DEFAULTS = ("eta", "clip", "auto_step", "gamma")  # what every stage's runs depend on


# ----------------------------------------------------------------------------- one base, in three cached stages
def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def fixed_stage(job: dict) -> dict:
    """The base, its noise, the fixed-step schemes (old default, LogitMatch replay, paper) and the oracle."""
    a = job["args"]
    b = setup(job, a)
    g, d, z, bs = b.g, b.d, b.z, b.batch_size
    base = b.score(z)
    common = dict(batch_size=bs, generator_rng=a.seed + 4)
    states, d_mean = {}, {}  # the old default, every state kept (LogitMatch is replayed on its mean logits)

    def keep(step, zz, logits):
        states[step], d_mean[step] = zz.detach().clone(), float(logits.mean())

    z25, plain_s = timed(dgflow.refine, g, d, z, steps=BUDGET, stop=None, callback=keep, **common)
    states[BUDGET] = z25
    d_mean[BUDGET] = mean_logit(d, dgflow.generate(g, z25, bs), bs)
    logit_step = LogitMatch(d, b.real, batch_size=bs).stop_step([d_mean[k] for k in range(BUDGET + 1)])
    logit_step = BUDGET if logit_step is None else logit_step
    rules = {"old default": {"step": BUDGET, "steps_run": BUDGET, "seconds": plain_s, **b.score(z25)},
             "LogitMatch ½": {"step": logit_step, "steps_run": logit_step, **b.score(states[logit_step])}}
    curves, diverged = {}, {}  # the oracle: every fixed-eta scheme's test curve
    for eta in ORACLE_ETAS:
        every5 = {}

        def keep5(step, zz, logits):
            if step % 5 == 0:
                every5[step] = zz.detach().clone()

        try:
            every5[b.max_steps] = dgflow.refine(g, d, z, steps=b.max_steps, eta=eta, clip=None, stop=None,
                                                callback=keep5, **common)
        except FloatingPointError as exc:  # a fixed step too long for this critic: its curve ends there
            diverged[f"η={eta}"] = str(exc)
        curves[f"η={eta}"] = {k: b.score(s) for k, s in sorted(every5.items())}
    paper = curves["η=0.1"].get(BUDGET, {"score": float("inf")})
    rules["paper η=0.1"] = {"step": BUDGET, "steps_run": BUDGET, **paper,
                            **({"diverged": diverged["η=0.1"]} if "η=0.1" in diverged else {})}
    scheme, step = min(((s, k) for s, c in curves.items() for k in c), key=lambda sk: curves[sk[0]][sk[1]]["score"])
    return {"base": base, "noise": noise_of(b, a.seed, base["score"]), "rules": rules, "curves": curves,
            "diverged": diverged, "plain_seconds": plain_s,
            "oracle": {"scheme": scheme, "step": step, **curves[scheme][step]}}


def long_stage(job: dict) -> dict:
    """The default step rule for LONG_STEPS steps, test metric and DataMatch's distances every 5
    (benchlib.safe.long_curve)."""
    a = job["args"]
    return long_curve(setup(job, a), a.seed)


def defaults_stage(job: dict) -> dict:
    """refine's defaults as a user calls them: ``refine(G, D, z)`` and ``refine(G, D, z, real=...)``."""
    a = job["args"]
    b = setup(job, a)
    common = dict(batch_size=b.batch_size, generator_rng=a.seed + 4, return_info=True)
    _, plain_s = timed(dgflow.refine, b.g, b.d, b.z, steps=BUDGET, stop=None, **common)  # the cost reference
    out = {"plain_seconds": plain_s}
    lowest = DataMatch(b.real, b.g, b.d, batch_size=b.batch_size, tol=0.0)  # as refine builds it, but tol
    veto = UncappedVeto(b.real, b.g, b.d, batch_size=b.batch_size)  # as refine builds it, but the bound
    for rule, extra in (("default, no data", {}), ("no data, gate only", {"stop": AtChance()}),
                        ("default, real data", {"real": b.real}),
                        ("real data, veto", {"stop": veto, "steps": dgflow.flow.DATA_STEPS}),
                        ("real data, tol 0", {"stop": lowest, "steps": dgflow.flow.DATA_STEPS})):
        (zz, info), secs = timed(dgflow.refine, b.g, b.d, b.z, **extra, **common)
        out[rule] = {"step": info.stop_step if info.stop_step is not None else info.steps_run,
                     "steps_run": info.steps_run, "seconds": secs, "reason": info.stop_reason,
                     "rule_overhead": info.stop_overhead, "rule_seconds": info.stop_seconds, **b.score(zz)}
    return out


def run_base(job: dict) -> dict:
    """Every stage of one base, judged against its oracle and noise."""
    steps = {"refine": repr(dgflow.flow.refine_defaults(*STEP_DEFAULTS))}
    fixed = cached(fixed_stage, job, steps)
    stage_code = hashlib.sha256((inspect.getsource(defaults_stage) + inspect.getsource(UncappedVeto)).encode()
                                ).hexdigest()[:12]
    defaults = cached(defaults_stage, job, {"refine": repr(dgflow.flow.refine_defaults(*STEP_DEFAULTS, "steps", "stop")),
                                            "budgets": [dgflow.flow.DEFAULT_STEPS, dgflow.flow.DATA_STEPS],
                                            "code": source_hash(*REFINE_MODULES),
                                            "stage": stage_code})
    long = None
    if job["args"].long in ("all", job["half"]):
        long = cached(long_stage, job, {**steps, "long_steps": LONG_STEPS, "distances": CURVE_DISTANCES,
                                        "code": source_hash(dgflow.stopping, dgflow.data_match, dgflow.distances)})
        long["checks"] = int_keys(long["checks"])
    out = {k: v for k, v in job.items() if k != "args"}
    out.update(fixed, long=long, seconds=fixed["seconds"] + (long or {}).get("seconds", 0) + defaults["seconds"])
    out["rules"] = {k: ({**fixed["rules"], **defaults})[k] for k in RULES}
    base, oracle, noise = out["base"]["score"], out["oracle"]["score"], out["noise"]
    for name, r in out["rules"].items():
        r.update(judge(base, oracle, r["score"], noise))
        if name.startswith("default"):  # timed in one process, back to back with 25 plain steps
            r["cost_ratio"] = r["seconds"] / defaults["plain_seconds"]
            r["cost_per_step"] = r["cost_ratio"] * BUDGET / max(r["steps_run"], 1)
    print(f"{job['half']:4s} {job['label']:34s} base {base:.3f} oracle {oracle:.3f} "
          f"({out['oracle']['scheme']} @{out['oracle']['step']}) | "
          + " | ".join(f"{k}: {r['score']:.3f} @{r['step']}" for k, r in out["rules"].items()), flush=True)
    return out


# ----------------------------------------------------------------------------- summary
# DataMatch's budget and patience, replayed: budgets 25 / 50 / 100 at patience 2, patience 1 / 3 at 100
REPLAY_SETTINGS = ((25, 2), (50, 2), (100, 1), (100, 2), (100, 3))


def replay_table(results: list[dict]) -> dict:
    """DataMatch's distance, budget and patience, replayed on the long curves, per half; the bases
    judged as the rules are (the real-data rule was designed on the dev rows)."""
    out = {}
    for half in dict.fromkeys(r["half"] for r in results):
        rows = [r for r in results if r["half"] == half and r["long"]]
        for distance, (budget, patience) in ((x, bp) for x in CURVE_DISTANCES for bp in REPLAY_SETTINGS):
            judged = []
            for r in rows:
                step = replay_datamatch(r["long"]["checks"], budget, patience, distance)
                judged.append({"step": step, **judge(r["base"]["score"], r["oracle"]["score"],
                                                      r["long"]["checks"][step]["score"], r["noise"])})
            rec = [x["recovery"] for x in judged if x["recovery"] is not None]
            if judged:
                out[f"{half} | {distance} | {budget} | {patience}"] = {
                    "bases": len(judged), "worse_beyond_noise": sum(x["worse"] for x in judged),
                    "mean_recovery": statistics.mean(rec) if rec else None,
                    "median_recovery": statistics.median(rec) if rec else None,
                    "worst_recovery": min(rec) if rec else None,
                    "mean_step": statistics.mean(x["step"] for x in judged)}
    return out


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
                "median_recovery": statistics.median(rec) if rec else None,
                "worst_recovery": min(rec) if rec else None,
                "mean_rel_change": statistics.mean(x["rel_change"] for x in rows),
                "mean_steps_run": statistics.mean(x["steps_run"] for x in rows),
                "mean_cost_ratio": statistics.mean(cost) if cost else None,
                "max_cost_per_step_images": max((r["rules"][rule]["cost_per_step"] for r in results
                                                 if r["half"] == half and r["kind"] == "image"
                                                 and "cost_per_step" in r["rules"][rule]), default=None),
                **{f"max_rule_overhead_{kind}": max((r["rules"][rule]["rule_overhead"] for r in results
                                                    if r["half"] == half and r["kind"] == kind
                                                    and "rule_overhead" in r["rules"][rule]), default=None)
                   for kind in ("image", "2d")}}
    return out


def markdown(results: list[dict], summary: dict, a, wall: float) -> str:
    lines = ["# Safe defaults: refine's rules on bases they were not designed on", "",
             f"`{a.command}` ({sum(r['seconds'] for r in results) / 60:.0f} CPU-process minutes over the bases, "
             f"one thread each, on a 2-core CPU; this run {wall / 60:.0f} min with cached bases). Split: `{SPLIT_FILE.relative_to(BENCHMARKS.parent)}` "
             "(declared before the rules were designed). Metric: 2D EMD to 1,000 fresh points; images FID "
             f"(FMNIST-CNN features) against the test split, N = {a.image_n:,}. Recovery = (base − rule) / "
             "(base − oracle), on the bases where the oracle (best step of the best fixed-η scheme, chosen with "
             f"the test metric) beats the base by more than {NOISE_SIGMAS:g}σ of the metric's noise (σ: the "
             "base's metric over 3 latent seeds); *worse*: the rule ends more than that above the base. Cost: "
             f"wall time relative to {BUDGET} plain steps of the same base, timed back to back in one process; "
             "per step run: that ratio times 25 / the steps the rule ran (on 2D bases a step costs "
             "milliseconds and the checks dominate, so only images are shown). Rule overhead: the stop rule's "
             "own wall time over the rest of the same run (`RunInfo.stop_overhead`: its checks, calibration "
             "and finish against the steps it let run), the worst base; unlike the back-to-back ratios it does "
             "not move with the machine's load between runs.", "",
             "| half | rule | bases | worse beyond noise | gainable | mean recovery | median recovery | "
             "worst recovery | mean change | mean steps run | cost | worst cost per step run, images | "
             "worst rule overhead, images | worst rule overhead, 2D |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in summary.items():
        half, rule = key.split(" | ")
        cost = "–" if row["mean_cost_ratio"] is None else f"{row['mean_cost_ratio']:.2f}×"
        per_step = "–" if row["max_cost_per_step_images"] is None else f"{row['max_cost_per_step_images']:.2f}×"
        over = {k: "–" if row.get(f"max_rule_overhead_{k}") is None else f"+{100 * row[f'max_rule_overhead_{k}']:.1f}%"
                for k in ("image", "2d")}
        lines.append(f"| {half} | {rule} | {row['bases']} | {row['worse_beyond_noise']} | {row['gainable_bases']} | "
                     f"{pct(row['mean_recovery'])} | {pct(row['median_recovery'])} | {pct(row['worst_recovery'])} | "
                     f"{100 * row['mean_rel_change']:+.1f}% | {row['mean_steps_run']:.1f} | {cost} | {per_step} | "
                     f"{over['image']} | {over['2d']} |")
    lines += ["", "## Per base", "", "Each cell: test metric @ step (recovery; ✗ = worse beyond noise). 2D adds HQ % "
              "and modes.", "", "| half | base | base metric ± σ | oracle | " + " | ".join(RULES) + " |",
              "|---|---|---|---|" + "---|" * len(RULES)]
    for r in results:
        def cell(x):
            extra = f", HQ {100 * x['hq']:.0f}%, {x['modes']} modes" if x.get("hq") is not None and x.get("modes") \
                else (f", HQ {100 * x['hq']:.0f}%" if x.get("hq") is not None else "")
            rec = "" if x.get("recovery") is None else f" ({pct(x['recovery'])})"
            return f"{x['score']:.3f} @{x['step']}{rec}{' ✗' if x.get('worse') else ''}{extra}"
        o = r["oracle"]
        lines.append(f"| {r['half']} | {r['label']} | {cell({**r['base'], 'step': 0})} ± {r['noise']:.3f} | "
                     f"{o['score']:.3f} ({o['scheme']} @{o['step']}) | "
                     + " | ".join(cell(r["rules"][k]) for k in RULES) + " |")
    replay = replay_table(results)
    if replay:
        lines += ["", "## The real-data rule's distance, budget and patience, replayed", "",
                  f"The default step rule run {LONG_STEPS} steps per base (no stop), the test metric and "
                  "DataMatch's distances to the real samples every 5 steps (*energy*: the default, on images' "
                  "random-CNN features, else on the samples; *pixels*: on the samples themselves, images too); "
                  "DataMatch replayed on that curve for each distance, budget and patience, without its step "
                  "control (`adapt_step=False`: the same noise, so budget 100 and patience 2 is that rule's "
                  "result). The budget of `refine(G, D, z, real=...)` was chosen on the dev rows, the "
                  "features on dev and test after the test half had been seen; the holdout half was trained "
                  "after that, the fresh half after the step control and the features' deviations had been "
                  "designed on the other three.", "",
                  "| half | distance | budget | patience | bases | worse beyond noise | mean recovery | "
                  "median recovery | worst recovery | mean step returned |", "|---|---|---|---|---|---|---|---|---|---|"]
        for key, row in replay.items():
            half, distance, budget, patience = key.split(" | ")
            lines.append(f"| {half} | {distance} | {budget} | {patience} | {row['bases']} | "
                         f"{row['worse_beyond_noise']} | {pct(row['mean_recovery'])} | "
                         f"{pct(row['median_recovery'])} | {pct(row['worst_recovery'])} | {row['mean_step']:.1f} |")
        lines += ["", "Platt-calibrated estimated gain at step 0 (nats; raw: the critic's own logits), per base with a "
                  "long curve:", "", "| half | base | raw gain | calibrated gain | oracle gain over noise |",
                  "|---|---|---|---|---|"]
        for r in (r for r in results if r["long"]):
            gainable = r["base"]["score"] - r["oracle"]["score"] > NOISE_SIGMAS * r["noise"]
            lines.append(f"| {r['half']} | {r['label']} | {r['long']['gain_raw']:.3g} | "
                         f"{r['long']['gain_calibrated']:.3g} | {'yes' if gainable else 'no'} |")
    lines += ["", "Why the defaults stopped where they did, per base:", ""]
    lines += [f"* {r['label']}: no data: {r['rules']['default, no data']['reason']}; real data: "
              f"{r['rules']['default, real data']['reason']}; veto: {r['rules']['real data, veto']['reason']}; tol 0: "
              f"{r['rules']['real data, tol 0']['reason']}" for r in results]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    """Relative change of the test metric per base and rule, the halves side by side."""
    plt = pyplot()
    halves = list(dict.fromkeys(r["half"] for r in results))
    fig, axes = plt.subplots(1, len(halves), figsize=(7.5 * len(halves), 6), sharey=True, squeeze=False)
    for ax, half in zip(axes[0], halves):
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
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", nargs="+", choices=[*HALVES, "all"], default=["all"], help="halves to run")
    p.add_argument("--only", nargs="+", help="labels of bases to run (default: all of the split)")
    p.add_argument("--n", type=int, default=STUDY_SETTINGS["n"])
    p.add_argument("--emd-n", type=int, default=STUDY_SETTINGS["emd_n"])
    p.add_argument("--max-steps", type=int, default=STUDY_SETTINGS["max_steps"], help="oracle scan of the 2D bases")
    p.add_argument("--image-n", type=int, default=STUDY_SETTINGS["image_n"])
    p.add_argument("--image-max-steps", type=int, default=STUDY_SETTINGS["image_max_steps"],
                   help="oracle scan of the image bases")
    p.add_argument("--seed", type=int, default=STUDY_SETTINGS["seed"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--long", choices=[*HALVES, "all", "none"], default="all",
                   help=f"halves whose bases also run the default step rule for {LONG_STEPS} steps (the "
                        "real-data rule's design curves)")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "safe_defaults"))
    a = p.parse_args(argv)
    a.command = command_line(__file__, argv)
    jobs = [j for j in jobs_of(a.split) if not a.only or j["label"] in a.only]
    if not jobs:
        p.error(f"no base of --split {' '.join(a.split)} is labelled {a.only}")
    t0 = time.perf_counter()
    results = map_bases(run_base, jobs, a, a.workers)
    wall = time.perf_counter() - t0
    summary = summarise(results)
    write_results(a.out, {"command": a.command, "split_file": str(SPLIT_FILE.name), "noise_sigmas": NOISE_SIGMAS,
                          "oracle_etas": ORACLE_ETAS, "budget": BUDGET, "wall_seconds": round(wall, 1),
                          "budgets": {"no data": dgflow.flow.DEFAULT_STEPS, "real data": dgflow.flow.DATA_STEPS},
                          "summary": summary, "replay": replay_table(results), "bases": results},
                  markdown(results, summary, a, wall), lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
