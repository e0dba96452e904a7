"""Design curves for the real-data rule as a veto (issue: safe by default, stop 21).

    python benchmarks/data_rule_design.py              # the seen halves (dev test holdout fresh fresh2)

For every base: refine's default step rule (``eta="auto"``, ``clip=1``, plain step, no stop) for
``--steps`` steps (2D) or ``--image-steps`` (images), with every 5 steps the test metric and the
distances :class:`dgflow.stopping.DataMatch` takes to 2,000 held-out real samples
(``benchlib.safe.long_curve``); the same latents, noise and real samples as
``benchmarks/safe_defaults.py``, whose recorded results give each base's metric, noise and oracle.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import itertools
import json
import statistics
import time
from pathlib import Path

import dgflow
import dgflow.calibration
import dgflow.distances
import dgflow.engine
import dgflow.flow
import dgflow.solvers
from benchlib import RESULTS, command_line, pyplot
from dgflow.stopping import DataMatch
from benchlib.safe import (CACHE_DIR, STUDY_SETTINGS, int_keys, jobs_of, judge, long_curve, map_bases,
                           replay_datamatch, setup, study_rows)

SEEN = ("dev", "test", "holdout", "fresh", "fresh2")
#: the rules replayed: (budget, patience, tol) of benchlib.safe.replay_datamatch on the energy distance
#: (refine's default); budget 25 with patience 99 and tol 1 is the no-data schedule with a veto
GRID = [(b, p, t) for b, p, t in itertools.product((25, 50, 100), (1, 2, 3, 99), (0.0, 0.25, 0.5, 0.75, 1.0))]
CURRENT = (100, 2, 0.0)  # DataMatch, plain step (the real-data default without its step control)


def code_hash() -> str:
    """What a curve depends on: the steps (engine, solvers), the distances and how DataMatch takes them."""
    parts = [Path(m.__file__).read_bytes() for m in (dgflow.distances, dgflow.engine, dgflow.solvers)]
    parts += [inspect.getsource(f).encode() for f in (DataMatch._points, DataMatch.distance_to, long_curve)]
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def curve(job: dict) -> dict:
    """The base's design curve, cached under CACHE_DIR by its settings."""
    a = job["args"]
    steps = a.steps if job["kind"] == "2d" else a.image_steps
    settings = {"job": {k: v for k, v in job.items() if k != "args"}, "steps": steps,
                **{k: getattr(a, k) for k in STUDY_SETTINGS},
                "refine": repr(dgflow.flow.refine_defaults("eta", "clip", "auto_step", "gamma")),
                "code": code_hash()}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{job['label'].replace(' ', '_')}_curve_{key}.json"
    if not cache.is_file():
        t0 = time.perf_counter()
        res = long_curve(setup(job, a), a.seed, steps)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(res))
        print(f"{job['half']} {job['label']}: {res['seconds']} s", flush=True)
    res = json.loads(cache.read_text())
    res["checks"] = int_keys(res["checks"])
    return {**{k: v for k, v in job.items() if k != "args"}, "curve": res}


def replay(r: dict, budget: int, patience: int, tol: float) -> dict:
    """One base judged at the step a rule returns on its curve; ``truncated``: the rule had not ended
    when the curve did (shorter than the budget), so its step is the curve's last check or earlier."""
    checks = r["curve"]["checks"]
    step, stopped = replay_datamatch(checks, budget, patience, tol=tol, ended=True)
    truncated = not stopped and max(checks) < budget
    return {"step": step, "truncated": truncated, **judge(r["base"]["score"], r["oracle"]["score"],
                                                          checks[step]["score"], r["noise"])}


def summary(judged: list[dict]) -> dict:
    rec = [x["recovery"] for x in judged if x["recovery"] is not None]
    return {"bases": len(judged), "worse_beyond_noise": sum(x["worse"] for x in judged), "gainable": len(rec),
            "mean_recovery": statistics.mean(rec) if rec else None,
            "median_recovery": statistics.median(rec) if rec else None, "worst_recovery": min(rec) if rec else None,
            "mean_step": statistics.mean(x["step"] for x in judged),
            "truncated": sum(x["truncated"] for x in judged)}


CRITERION = ("fewest bases worse beyond noise, then the highest mean recovery, then the highest worst "
             "recovery, over all seen bases pooled")


def default_run(job: dict) -> dict:
    """``refine(G, D, z, real=...)`` with refine's defaults as they are now (the seen halves' A/B of a
    new real-data default against the recorded one), cached by the library's code."""
    a = job["args"]
    settings = {"job": {k: v for k, v in job.items() if k != "args"}, **{k: getattr(a, k) for k in STUDY_SETTINGS},
                "code": hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in
                                                (dgflow.flow, dgflow.stopping, dgflow.distances, dgflow.engine,
                                                 dgflow.solvers, dgflow.calibration))).hexdigest()[:12]}
    cache = CACHE_DIR / (f"{job['label'].replace(' ', '_')}_default_"
                         f"{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]}.json")
    if not cache.is_file():
        b = setup(job, a)
        t0 = time.perf_counter()
        zz, info = dgflow.refine(b.g, b.d, b.z, real=b.real, batch_size=b.batch_size, generator_rng=a.seed + 4,
                                 return_info=True)
        res = {"step": info.stop_step, "steps_run": info.steps_run, "reason": info.stop_reason,
               "seconds": round(time.perf_counter() - t0, 1), **b.score(zz)}
        cache.write_text(json.dumps(res))
        print(f"{job['half']} {job['label']}: default {res['score']:.4g} @{res['step']}", flush=True)
    return {"label": job["label"], "half": job["half"], **json.loads(cache.read_text())}


def key(config: str) -> tuple[int, int, float]:
    b, p, t = config.split(" | ")
    return int(b), int(p), float(t)


def choose(table: dict) -> str:
    """The grid's rule by :data:`CRITERION`."""
    return min(table, key=lambda k: (table[k]["worse_beyond_noise"], -(table[k]["mean_recovery"] or -9),
                                     -(table[k]["worst_recovery"] or -9)))


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _row(name: str, v: dict) -> str:
    return (f"| {name} | {v['bases']} | {v['worse_beyond_noise']} | {v['gainable']} | {_pct(v['mean_recovery'])} | "
            f"{_pct(v['median_recovery'])} | {_pct(v['worst_recovery'])} | {v['mean_step']:.1f} | {v['truncated']} |")


HEAD = ("| {} | bases | worse beyond noise | gainable | mean recovery | median | worst | mean step returned | "
        "not ended when the curve did |\n|---|---|---|---|---|---|---|---|---|")


def markdown(results, table, halves, steered, chosen, a) -> str:
    b, p, t = key(chosen)
    cur = "{} | {} | {:g}".format(*CURRENT)
    lines = ["# The real-data rule as a veto: design curves on the seen halves", "",
             f"`{a.command}` ({sum(r['curve']['seconds'] for r in results) / 60:.0f} CPU-process minutes, one thread "
             "each, 2-core CPU). Per base: refine's default step rule (plain step, no stop), the test metric and "
             "DataMatch's energy distance (images: on random-CNN features) to 2,000 held-out real samples every 5 "
             f"steps, to step {a.steps} (2D) / {a.image_steps} (images); the base's metric, noise and oracle from "
             "the study's recorded runs (`benchmarks/results/safe_defaults.json`, `safe_defaults_fresh2.json`). "
             "Each rule (budget, patience, tol) replayed on those curves (`benchlib.safe.replay_datamatch`): a check "
             "is *within* when its distance is at most lowest + tol × (start − lowest); the rule ends after "
             "*patience* checks in a row that are not, and returns the latest check within the final bound. tol 0 "
             "is DataMatch's rule (the lowest check); tol 1 returns the latest state no farther from the data "
             "than the start: the distance as a veto on harm rather than the picker of the step. Patience 99: "
             "the budget ends the run. The fresh3 half is not in it: it is run once, with the rule chosen here.",
             "", f"Choice, declared before the grid was run: {CRITERION}. **Chosen: budget {b}, patience {p}, "
             f"tol {t:g}.**", "", "## Pooled over the seen halves", "", HEAD.format("rule"),
             _row("refine(real=) today (steered, recorded runs)", steered),
             _row(f"DataMatch plain step, {cur} (replayed)", table[cur]), _row(f"**chosen: {chosen}**", table[chosen]),
             "", "Every rule of the grid (budget | patience | tol), pooled:", "", HEAD.format("budget / patience / tol")]
    lines += [_row(k, v) for k, v in sorted(table.items(), key=lambda kv: key(kv[0]))]
    lines += ["", "## Per half: the chosen rule and the plain-step DataMatch", "", HEAD.format("half / rule")]
    for h in a.split:
        lines += [_row(f"{h}: chosen", halves[f"{h} | {chosen}"]), _row(f"{h}: DataMatch plain", halves[f"{h} | {cur}"])]
    lines += ["", "## Per base", "", "Test metric @ step (recovery; ✗ worse beyond noise).", "",
              "| half | base | base ± σ | oracle | today (steered) | DataMatch plain | chosen |", "|---|---|---|---|---|---|---|"]
    for r in results:
        def cell(x, score):
            rec = "" if x["recovery"] is None else f" ({_pct(x['recovery'])})"
            return f"{score:.3f} @{x['step']}{rec}{' ✗' if x['worse'] else ''}"
        s = r["rules"]["default, real data"]
        steer = {**judge(r["base"]["score"], r["oracle"]["score"], s["score"], r["noise"]), "step": s["step"]}
        reps = [replay(r, *key(c)) for c in (cur, chosen)]
        lines.append(f"| {r['half']} | {r['label']} | {r['base']['score']:.3f} ± {r['noise']:.3f} | "
                     f"{r['oracle']['score']:.3f} @{r['oracle']['step']} | {cell(steer, s['score'])} | "
                     + " | ".join(cell(x, r['curve']['checks'][x['step']]['score']) for x in reps) + " |")
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Pooled mean recovery against tol, one line per budget and patience; the worse count marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    tols = sorted({key(k)[2] for k in table})
    for (b, p) in sorted({key(k)[:2] for k in table}):
        rows = [table[f"{b} | {p} | {t:g}"] for t in tols]
        line, = axes[0].plot(tols, [100 * (r["mean_recovery"] or 0) for r in rows], marker="o", label=f"budget {b}, patience {p}")
        axes[1].plot(tols, [r["worse_beyond_noise"] for r in rows], marker="o", color=line.get_color())
    axes[0].set(xlabel="tol", ylabel="mean gain recovery, % (gainable seen bases)", title="recovery")
    axes[1].set(xlabel="tol", ylabel="bases worse beyond noise", title="harm")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", nargs="+", default=list(SEEN), help="halves to run")
    p.add_argument("--steps", type=int, default=100, help="2D bases' curve length")
    p.add_argument("--image-steps", type=int, default=60, help="image bases' curve length")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--defaults", action="store_true",
                   help="also run refine(G, D, z, real=...) with the library's defaults on every base")
    p.add_argument("--out", default=str(RESULTS / "data_rule_design"))
    a = p.parse_args(argv)
    for k, v in STUDY_SETTINGS.items():
        setattr(a, k, v)
    a.command = command_line(__file__, argv)
    results = map_bases(curve, jobs_of(a.split), a, a.workers)
    study = study_rows()
    if a.defaults:
        for r, run in zip(results, map_bases(default_run, jobs_of(a.split), a, a.workers)):
            r["default_now"] = run
    for r in results:
        r.update({k: study[(r["half"], r["label"])][k] for k in ("base", "noise", "oracle", "rules")})
        assert abs(r["curve"]["checks"][0]["score"] - r["base"]["score"]) < 1e-6 * max(1.0, r["base"]["score"]), r["label"]
    table = {f"{b} | {p} | {t:g}": summary([replay(r, b, p, t) for r in results]) for b, p, t in GRID}
    halves = {f"{h} | {b} | {p} | {t:g}": summary([replay(r, b, p, t) for r in results if r["half"] == h])
              for h in a.split for b, p, t in GRID}
    steered = summary([{**judge(r["base"]["score"], r["oracle"]["score"], r["rules"]["default, real data"]["score"],
                                r["noise"]), "step": r["rules"]["default, real data"]["step"], "truncated": False}
                       for r in results])
    chosen = choose(table)
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"command": a.command, "criterion": CRITERION, "chosen": chosen,
                                                    "grid": table, "halves": halves, "steered_default": steered,
                                                    "bases": results}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results, table, halves, steered, chosen, a))
    plot(table, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
