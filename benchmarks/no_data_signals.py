"""What a data-free stop could see: the default flow's own signals beside the test metric, on seen bases.

    python benchmarks/no_data_signals.py                        # dev, test, holdout; ~30 min here (2 workers)
    python benchmarks/no_data_signals.py --split dev --workers 1

The bare ``refine(G, D, z)`` runs a fixed budget (25 steps) once the critic is not at chance
(``AtChance``): on the study's image bases that undershoots (the FID still falls at step 25), on
good 2D bases it can overshoot. A data-free stop needs a signal that turns where the test metric
does. For every base of the chosen halves (the study's latents, ``benchlib.safe.setup``) this
runs the default step rule for 100 steps with no stop and records, every 5 steps, the test metric
and quantities computed from the batch and the critic alone:

* ``logit_mean``, ``logit_std``: the critic's logits of the moving samples;
* ``gain``: :func:`dgflow.stopping.estimated_gain` of those logits (what the critic says is left);
* ``ess``: the effective sample size of softmax(logits), as a fraction of the batch;
* ``spread``: E||X - X'|| of the first 1,000 samples (images on DataMatch's random-CNN features),
  over step 0's: whether the batch contracts;
* ``self``: the energy distance of the first 1,000 samples to step 0's weighted by softmax(step-0
  logits) (the critic's estimate of the data at the generator's points);
* ``distance``: for reference, DataMatch's distance to 1,000 held-out real samples (what the
  real-data rule sees; no candidate below uses it).

Candidate data-free stops are replayed on the recorded checks (:data:`CANDIDATES`) and judged as
the study judges (recovery against the study's recorded oracle, worse beyond 2 sigma of its
recorded noise). All of these halves have been seen: nothing here may become a default before it
runs once on a half declared for it (fresh5). Writes benchmarks/results/no_data_signals.json / .md / .png.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import dgflow
from benchlib import RESULTS, command_line, pyplot, write_results
from benchlib.safe import (HALVES, REFINE_MODULES, STUDY_SETTINGS, cached, int_keys, jobs_of, judge, map_bases, pct,
                           recovery_summary, setup, source_hash, study_rows)
from dgflow.data_match import within_bound
from dgflow.distances import as_points, mean_pairwise_distance
from dgflow.passes import logits as critic_logits
from dgflow.stopping import AT_CHANCE_GAIN, MAX_GAIN_RATIO, OVERSHOOT, DataMatch, estimated_gain

STEPS, EVERY, POINTS = 100, 5, 1000
SEEN = [h for h in HALVES if h != "fresh5"]  # fresh5 is declared for the next default: never run here
SIGNALS = "v1: logit_mean logit_std gain ess spread self distance"  # in the cache key: change it with the signals


def weighted_energy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, xx: float) -> float:
    """Energy distance of the samples ``x`` (N, D) to the weighted sample (``y`` (M, D), weights
    ``w`` summing to 1): 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| with Y ~ w (its self-term V-statistic);
    ``xx``: E||X - X'|| (:func:`dgflow.distances.mean_pairwise_distance` of ``x``, which the caller has)."""
    x, y, w = as_points(x).double(), as_points(y).double(), w.double()
    xy = float((torch.cdist(x, y) @ w).mean())
    yy = float(w @ torch.cdist(y, y) @ w)
    return 2 * xy - xx - yy


def flow_signals(job: dict) -> dict:
    """One base: the default flow for STEPS steps, its signals and test metric every EVERY steps."""
    a = job["args"]
    b = setup(job, a)
    rule = DataMatch(b.real, b.g, batch_size=b.batch_size, max_points=POINTS)  # refine's real-data distance
    points = (lambda x: x) if rule.features is None else rule.features
    _, traj = dgflow.refine(b.g, b.d, b.z, steps=STEPS, stop=None, return_trajectory=EVERY,
                            batch_size=b.batch_size, generator_rng=a.seed + 4)
    checks, ref = {}, None
    for i, s in enumerate(traj):
        x = dgflow.generate(b.g, s, b.batch_size)
        d = critic_logits(None, b.d, x, b.batch_size).double().flatten()
        w = torch.softmax(d, 0)
        p = points(x[:POINTS])
        pp = mean_pairwise_distance(p)
        if ref is None:
            ref = (p, torch.softmax(d[:POINTS], 0), pp)
        checks[EVERY * i] = {**b.scorer(x), "logit_mean": float(d.mean()), "logit_std": float(d.std()),
                             "gain": estimated_gain(d), "ess": float(1 / (w * w).sum()) / len(d),
                             "spread": pp / ref[2], "self": weighted_energy(p, ref[0], ref[1], pp),
                             "distance": rule.distance_to(x)}
    return {"checks": checks}


def signals(job: dict) -> dict:
    """:func:`flow_signals`, cached by the library's code and this script's signal set (:data:`SIGNALS`)."""
    res = cached(flow_signals, job, {"code": source_hash(*REFINE_MODULES), "signals": SIGNALS})
    c = res["checks"]
    print(f"{job['half']:7s} {job['label']:38s} score {c['0']['score']:.4g} -> {c[str(STEPS)]['score']:.4g}", flush=True)
    return {**{k: v for k, v in job.items() if k != "args"}, "checks": c}


def stop_self(c: dict, budget: int = STEPS, start: int = 0) -> int:
    """The lowest ``self`` check from ``start`` up to ``budget``, ending after two checks in a row
    above it (DataMatch's patience)."""
    best, since = start, 0
    for s in [s for s in sorted(c) if start < s <= budget]:
        if c[s]["self"] < c[best]["self"]:
            best, since = s, 0
        else:
            since += 1
            if since >= 2:
                break
    return best


def veto_self(c: dict, budget: int = 25, patience: int = 2, max_ess: float = 0.5) -> int:
    """The weighted self-target as a veto on harm, where the critic's weights are uneven: with step 0's
    ESS below ``max_ess``, the latest check up to ``budget`` whose ``self`` distance is within
    DataMatch's bound (:func:`dgflow.data_match.within_bound`, tol 1: no farther than step 0's nor twice
    the lowest), ending after ``patience`` checks in a row beyond it; else ``budget``."""
    if c[0]["ess"] >= max_ess:
        return budget
    first, low, chosen, since = c[0]["self"], c[0]["self"], 0, 0
    for s in [s for s in sorted(c) if 0 < s <= budget]:
        low = min(low, c[s]["self"])
        if c[s]["self"] <= within_bound(first, low, 1.0):
            chosen, since = s, 0
        else:
            since += 1
            if since >= patience:
                break
    return chosen


def first_check(c: dict, test) -> int:
    """The first check at which ``test(check)`` holds (the last one if none does)."""
    return next((s for s in sorted(c)[1:] if test(c[s])), max(c))


def end_test(c: dict, kind: str, budget: int = 25) -> int:
    """``budget`` steps, then :class:`dgflow.stopping.AtChance`'s end test (not on images): step 0 when
    the mean logit has risen by :data:`dgflow.stopping.OVERSHOOT` times step 0's estimated gain while
    the gain is still at least :data:`dgflow.stopping.MAX_GAIN_RATIO` times step 0's."""
    first, last = c[0], c[budget]
    contradicts = (last["logit_mean"] >= first["logit_mean"] + OVERSHOOT * first["gain"]
                   and last["gain"] >= MAX_GAIN_RATIO * first["gain"])
    return 0 if kind != "image" and contradicts else budget


def gated(rule, by_kind: bool = False):
    """``rule`` (checks -> step, or (checks, kind) -> step with ``by_kind``) as a candidate (checks,
    kind) -> step behind the no-data default's gate (``AtChance``): step 0 when step 0's estimated
    gain is below :data:`dgflow.stopping.AT_CHANCE_GAIN`."""
    return lambda c, kind: 0 if c[0]["gain"] < AT_CHANCE_GAIN else (rule(c, kind) if by_kind else rule(c))


#: the data-free stops replayed on the recorded checks (each behind the AtChance gate): (checks, kind) -> step
CANDIDATES = {name: gated(rule) for name, rule in {
    "25 steps (stop 23's default)": lambda c: 25,
    "100 steps": lambda c: max(c),
    "self-target, patience 2": stop_self,
    "self-target, budget 25": lambda c: stop_self(c, 25),
    "self-target, budget 50": lambda c: stop_self(c, 50),
    "25 steps, then while self-target falls": lambda c: stop_self(c, start=25),
    "self-target veto where ESS < ½, budget 25": veto_self,
    "gain halved": lambda c: first_check(c, lambda k: k["gain"] <= c[0]["gain"] / 2),
    "spread -10%": lambda c: first_check(c, lambda k: k["spread"] <= 0.9),
    "ESS halved": lambda c: first_check(c, lambda k: k["ess"] <= c[0]["ess"] / 2),
}.items()}
CANDIDATES["25 steps, then AtChance's end test (not images)"] = gated(end_test, by_kind=True)


def judged(rows: list[dict]) -> dict:
    """Each candidate's step and test metric per base, judged against the study's oracle and noise."""
    study = study_rows()
    out = {}
    for r in rows:
        rec = study[(r["half"], r["label"])]
        base, oracle, noise = rec["base"]["score"], rec["oracle"]["score"], rec["noise"]
        c = int_keys(r["checks"])
        for name, rule in CANDIDATES.items():
            step = rule(c, r["kind"])
            out.setdefault(name, []).append({"half": r["half"], "label": r["label"], "kind": r["kind"], "step": step,
                                             "score": c[step]["score"], **judge(base, oracle, c[step]["score"], noise)})
    return out


def recorded_rows(paths: list[str]) -> tuple[dict, list[str]]:
    """The bases recorded in earlier results files of this script, by (half, label), and the commands
    that recorded them (a file that reused others names theirs)."""
    rows, commands = {}, []
    for path in paths:
        rec = json.loads(Path(path).read_text())
        commands += rec.get("recorded_by") or [rec["command"]]
        for r in rec["bases"]:
            rows.setdefault((r["half"], r["label"]), r)
    return rows, commands


def markdown(res: dict, summary: dict, record: dict) -> str:
    command = record["command"]
    lines = ["# Data-free signals along the default flow (seen bases; nothing adopted)", "",
             f"`{command}` (one thread per base, 2-core CPU). The default step rule for {STEPS} steps with no stop, "
             f"every {EVERY} steps the test metric (2D EMD, images FID on FMNIST-CNN features, N = 2,000) and the "
             "batch's own signals; candidate stops replayed on them and judged as `safe_defaults.py` judges "
             "(its recorded oracle and noise). These halves are all seen: a candidate is a hypothesis for the "
             "declared fresh5 half, not a result."
             + ("" if record["recorded_by"] == [command] else " The checks were recorded by "
                + ", ".join(f"`{c}`" for c in record["recorded_by"]) + "."), "",
             "| half | kind | candidate | bases | worse beyond noise | gainable | mean recovery | worst recovery |",
             "|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        lines.append(f"| {key} | {s['bases']} | {s['worse_beyond_noise']} | {s['gainable']} | "
                     f"{pct(s['mean_recovery'])} | {pct(s['worst_recovery'])} |")
    lines += ["", "## Per base (step returned: metric; ✗ = worse beyond noise)", "",
              "| half | base | " + " | ".join(res) + " |", "|---|---|" + "---|" * len(res)]
    for i, r in enumerate(next(iter(res.values()))):
        cells = [f"{v[i]['step']}: {v[i]['score']:.4g}{' ✗' if v[i]['worse'] else ''}" for v in res.values()]
        lines.append(f"| {r['half']} | {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path) -> None:
    plt = pyplot()
    keys = ("score", "distance", "gain", "spread", "self", "ess")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for r in rows:
        c = int_keys(r["checks"])
        steps = sorted(c)
        style = "-" if r["kind"] == "image" else ":"
        for ax, k in zip(axes.flat, keys):
            first = c[0][k] if k in ("score", "gain") and c[0][k] else 1.0
            ax.plot(steps, [c[s][k] / first for s in steps], style, lw=1)
    for ax, k in zip(axes.flat, keys):
        ax.set_title(f"{k} (over step 0's)" if k in ("score", "gain") else k)
        ax.set_xlabel("step")
        if k in ("distance", "self"):
            ax.set_yscale("symlog", linthresh=1e-3)
    axes.flat[0].set_yscale("log")
    fig.suptitle("Default flow, no stop: images solid, 2D dotted")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", nargs="+", default=["dev", "test", "holdout"], choices=SEEN,
                   help="seen halves whose recorded oracle and noise judge the candidates")
    p.add_argument("--kind", choices=["image", "2d", "all"], default="all")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true", help="recompute cached runs")
    p.add_argument("--reuse", nargs="*", default=[], metavar="JSON",
                   help="earlier results files of this script: their recorded bases are taken from them, not run "
                        "(new candidates are replayed on their checks)")
    p.add_argument("--out", default=str(RESULTS / "no_data_signals"))
    a = p.parse_args()
    jobs = [j for j in jobs_of(a.split) if a.kind in ("all", j["kind"])]
    kept, recorded_by = recorded_rows(a.reuse)
    todo = [j for j in jobs if (j["half"], j["label"]) not in kept]
    done = map_bases(signals, todo, argparse.Namespace(**STUDY_SETTINGS, fresh=a.fresh), a.workers)
    done = {(r["half"], r["label"]): r for r in done}
    rows = [kept.get((j["half"], j["label"])) or done[(j["half"], j["label"])] for j in jobs]
    res = judged(rows)
    summary = {}
    for name, v in res.items():
        for half in ["all", *dict.fromkeys(x["half"] for x in v)]:
            for kind in ("image", "2d"):
                sel = [x for x in v if half in ("all", x["half"]) and x["kind"] == kind]
                if sel:
                    summary[f"{half} | {kind} | {name}"] = recovery_summary(sel)
    if len(kept) < len(jobs):
        recorded_by.append(command_line(__file__))
    record = {"command": command_line(__file__), "recorded_by": list(dict.fromkeys(recorded_by)), "steps": STEPS,
              "every": EVERY, "summary": summary,
              "candidates": res, "bases": rows}
    write_results(a.out, record, markdown(res, summary, record), lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
