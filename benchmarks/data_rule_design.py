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
import statistics
from pathlib import Path

import dgflow
import dgflow.distances
import dgflow.engine
import dgflow.flow
import dgflow.solvers
from benchlib import RESULTS, command_line, pyplot, write_results
from benchlib.safe import (STUDY_SETTINGS, cached, int_keys, jobs_of, judge, long_curve, map_bases, pct,
                           real_data_default_of, recovery_summary, replay_datamatch, setup, study_rows)
from dgflow.stopping import FEATURES_TOL, DataMatch

SEEN = ("dev", "test", "holdout", "fresh", "fresh2")
#: the rules replayed: (budget, patience, tol) of benchlib.safe.replay_datamatch on the energy distance
#: (refine's default); budget 25 with patience 99 and tol 1 is the no-data schedule with a veto
GRID = [(b, p, t) for b, p, t in itertools.product((25, 50, 100), (1, 2, 3, 99), (0.0, 0.25, 0.5, 0.75, 1.0))]


def code_hash() -> str:
    """What a curve depends on: the steps (engine, solvers), the distances and how DataMatch takes them."""
    parts = [Path(m.__file__).read_bytes() for m in (dgflow.distances, dgflow.engine, dgflow.solvers)]
    parts += [inspect.getsource(f).encode() for f in (DataMatch._points, DataMatch.distance_to, long_curve)]
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def curve(job: dict) -> dict:
    """The base's design curve (the stage cached as ``curve``)."""
    a = job["args"]
    return long_curve(setup(job, a), a.seed, a.steps if job["kind"] == "2d" else a.image_steps)


def curve_of(job: dict) -> dict:
    """The job and its design curve, cached under CACHE_DIR by its settings."""
    a = job["args"]
    res = cached(curve, job, {"steps": a.steps if job["kind"] == "2d" else a.image_steps,
                              "refine": repr(dgflow.flow.refine_defaults("eta", "clip", "auto_step", "gamma")),
                              "code": code_hash()})
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
    return {**recovery_summary(judged), "mean_step": statistics.mean(x["step"] for x in judged),
            "truncated": sum(x["truncated"] for x in judged)}


CRITERION = ("fewest bases worse beyond noise, then the highest mean recovery, then the highest worst "
             "recovery (ties: the first of the grid)")
KINDS = {"all": "every seen base", "image": "images: the distance on random-CNN features",
         "2d": "2D: the distance on the samples themselves"}
DESIGNED = (100, 2)  # refine(real=)'s budget and DataMatch's patience, unchanged; tol: "auto"


def key(config: str) -> tuple[int, int, float]:
    b, p, t = config.split(" | ")
    return int(b), int(p), float(t)


def choose(table: dict) -> str:
    """The grid's rule by :data:`CRITERION`."""
    return min(table, key=lambda k: (table[k]["worse_beyond_noise"], -(table[k]["mean_recovery"] or -9),
                                     -(table[k]["worst_recovery"] or -9)))


def auto_tol(r: dict) -> float:
    """DataMatch's tol="auto" on this base: FEATURES_TOL where the distance is on features (images)."""
    return FEATURES_TOL if r["kind"] == "image" else 0.0


def recorded(r: dict, rule: dict) -> dict:
    return {**judge(r["base"]["score"], r["oracle"]["score"], rule["score"], r["noise"]), "step": rule["step"],
            "score": rule["score"], "truncated": False}


def rules_of(r: dict) -> dict:
    """Every real-data rule's result on one base: recorded, replayed and (``--defaults``) run now."""
    out = {"recorded default (steered, tol 0)": recorded(r, r["rules"]["default, real data"]),
           "replay: plain step, tol 0": replay(r, *DESIGNED, 0.0),
           "replay: plain step, tol auto": replay(r, *DESIGNED, auto_tol(r))}
    if "default_now" in r:
        out["run now: refine(real=) (steered, tol auto)"] = recorded(r, r["default_now"])
    return out


def _row(name: str, v: dict) -> str:
    return (f"| {name} | {v['bases']} | {v['worse_beyond_noise']} | {v['gainable']} | {pct(v['mean_recovery'])} | "
            f"{pct(v['median_recovery'])} | {pct(v['worst_recovery'])} | {v['mean_step']:.1f} | {v['truncated']} |")


HEAD = ("| {} | bases | worse beyond noise | gainable | mean recovery | median | worst | mean step returned | "
        "not ended when the curve did |\n|---|---|---|---|---|---|---|---|---|")


def markdown(results: list[dict], grids: dict, a) -> str:
    lines = ["# The real-data rule as a veto: design curves on the seen halves", "",
             f"`{a.command}` ({sum(r['curve']['seconds'] for r in results) / 60:.0f} CPU-process minutes for the "
             "curves, one thread each, 2-core CPU). Per base: refine's default step rule (plain step, no stop), the "
             "test metric and DataMatch's energy distance (images: on random-CNN features) to 2,000 held-out real "
             f"samples every 5 steps, to step {a.steps} (2D) / {a.image_steps} (images); the base's metric, noise "
             "and oracle from the study's recorded runs (`benchmarks/results/safe_defaults.json`, "
             "`safe_defaults_fresh2.json`). Each rule (budget, patience, tol) is replayed on those curves "
             "(`benchlib.safe.replay_datamatch`): a check is *within* when its distance is at most lowest + tol × "
             "min(start − lowest, lowest) (`dgflow.data_match.within_bound`; stop 21's recorded run had no cap at "
             "1 + tol times the lowest); the rule ends after *patience* checks in a row that are not and returns "
             "the latest check within the final bound. tol 0 is DataMatch's rule before (the lowest check); tol 1 "
             "returns the latest state no farther from the data than the start: the distance as a veto on harm rather than "
             "the picker of the step. Patience 99: the budget ends the run. *Not ended*: image rules still running "
             f"at step {a.image_steps}, where the curve ends (their step is then at most that). The fresh3 half is "
             "not in it.", "", f"Grid pick, declared before the grid was run: {CRITERION}.", ""]
    for kind, title in KINDS.items():
        pick = choose(grids[kind])
        lines += [f"## Grid: {title}", "", f"Pick: budget | patience | tol = **{pick}**.", "",
                  HEAD.format("budget / patience / tol")]
        lines += [_row(("**" + k + "**") if k == pick else k, v) for k, v in grids[kind].items()]
        lines.append("")
    lines += ["## The rules, per kind and half", "",
              "*tol auto*: DataMatch's default since stop 21, tol 1 on the images' feature distance and 0 on the "
              f"2D samples' (budget {DESIGNED[0]}, patience {DESIGNED[1]}, as before). *Recorded*: the steered "
              "default of stop 20 (`safe_defaults*.json`). *Run now*: `refine(G, D, z, real=...)` with the defaults "
              "of this commit (steered, tol auto), from the same latents (`--defaults`). The A/B declared in "
              "`benchmarks/configs/safe_defaults_bases.yaml`: tol auto becomes the default iff *run now* has at least "
              "the recorded rule's mean recovery on the seen image bases, with no more of them worse.", "",
              HEAD.format("bases / rule")]
    names = list(max((rules_of(r) for r in results), key=len))
    groups = [("images", lambda r: r["kind"] == "image"), ("2D", lambda r: r["kind"] == "2d"),
              ("all", lambda r: True)] + [(h, (lambda h: lambda r: r["half"] == h)(h)) for h in a.split]
    for gname, test in groups:
        rows = [rules_of(r) for r in results if test(r)]
        lines += [_row(f"{gname}: {n}", summary([x[n] for x in rows if n in x])) for n in names
                  if any(n in x for x in rows)]
    now = [r for r in results if "default_now" in r and r["kind"] == "2d"]
    if now:
        same = sum(r["default_now"]["step"] == r["rules"]["default, real data"]["step"]
                   and abs(r["default_now"]["score"] - r["rules"]["default, real data"]["score"]) < 1e-9 for r in now)
        lines += ["", f"On the 2D bases tol auto is 0, so the run now should be the recorded default's: same step and "
                  f"metric on {same} of {len(now)}."]
    lines += ["", "## Per base", "", "Test metric @ step (recovery; ✗ worse beyond noise).", "",
              "| half | base | base ± σ | oracle | " + " | ".join(names) + " |", "|---|---|---|---|" + "---|" * len(names)]
    for r in results:
        def cell(x):
            score = x["score"] if "score" in x else r["curve"]["checks"][x["step"]]["score"]
            rec = "" if x["recovery"] is None else f" ({pct(x['recovery'])})"
            return f"{score:.3f} @{x['step']}{rec}{' ✗' if x['worse'] else ''}"
        lines.append(f"| {r['half']} | {r['label']} | {r['base']['score']:.3f} ± {r['noise']:.3f} | "
                     f"{r['oracle']['score']:.3f} @{r['oracle']['step']} | "
                     + " | ".join(cell(rules_of(r)[n]) if n in rules_of(r) else "–" for n in names) + " |")
    return "\n".join(lines) + "\n"


def plot(grids: dict, path: Path) -> None:
    """Mean recovery against tol per kind of base, one line per budget (patience 2); x: a rule that
    leaves a base worse beyond noise."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind in zip(axes, ("image", "2d")):
        for budget in sorted({key(k)[0] for k in grids[kind]}):
            pts = sorted((key(k)[2], v) for k, v in grids[kind].items() if key(k)[:2] == (budget, 2))
            line, = ax.plot([t for t, _ in pts], [100 * (v["mean_recovery"] or 0) for _, v in pts], marker="o",
                            label=f"budget {budget}")
            bad = [(t, v) for t, v in pts if v["worse_beyond_noise"]]
            ax.scatter([t for t, _ in bad], [100 * (v["mean_recovery"] or 0) for _, v in bad], marker="x", s=90,
                       color=line.get_color(), zorder=3)
        ax.set(xlabel="tol", title=KINDS[kind], ylabel="mean gain recovery, % (gainable seen bases)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="patience 2; x: a base worse", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", nargs="+", default=list(SEEN), help="halves to run")
    p.add_argument("--steps", type=int, default=100, help="2D bases' curve length")
    p.add_argument("--image-steps", type=int, default=60, help="image bases' curve length")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--defaults", choices=("none", "image", "all"), default="none",
                   help="bases that also run refine(G, D, z, real=...) with the library's defaults (image: the "
                        "image bases, where tol auto is not 0)")
    p.add_argument("--fresh", action="store_true", help="recompute what is cached")
    p.add_argument("--out", default=str(RESULTS / "data_rule_design"))
    a = p.parse_args(argv)
    for k, v in STUDY_SETTINGS.items():
        setattr(a, k, v)
    a.command = command_line(__file__, argv)
    results = map_bases(curve_of, jobs_of(a.split), a, a.workers)
    study = study_rows()
    if a.defaults != "none":
        runs = map_bases(real_data_default_of, [j for j in jobs_of(a.split) if a.defaults == "all" or j["kind"] == "image"],
                         a, a.workers)
        for run in runs:
            next(r for r in results if (r["half"], r["label"]) == (run["half"], run["label"]))["default_now"] = run
    for r in results:
        r.update({k: study[(r["half"], r["label"])][k] for k in ("base", "noise", "oracle", "rules")})
        assert abs(r["curve"]["checks"][0]["score"] - r["base"]["score"]) < 1e-6 * max(1.0, r["base"]["score"]), r["label"]
    tests = {"all": lambda r: True, "image": lambda r: r["kind"] == "image", "2d": lambda r: r["kind"] == "2d"}
    grids = {kind: {f"{b} | {p} | {t:g}": summary([replay(r, b, p, t) for r in results if test(r)])
                    for b, p, t in GRID} for kind, test in tests.items()}
    write_results(a.out, {"command": a.command, "criterion": CRITERION, "grids": grids,
                          "picks": {k: choose(g) for k, g in grids.items()}, "bases": results},
                  markdown(results, grids, a), lambda path: plot(grids, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
