"""What the real-data stop rule adds to the steps it lets run, on every base of the safe-defaults study.

    python benchmarks/rule_overhead.py                   # all halves; ~15 min here (2 workers)
    python benchmarks/rule_overhead.py --split dev test  # some halves

For every base of ``benchmarks/configs/safe_defaults_bases.yaml`` (the study's seeded latents and
held-out real samples, ``benchlib.safe.setup``), ``refine(G, D, z, real=x)`` as a user calls it, and
from its ``RunInfo``: the steps run, the step returned, the wall time of the run and the stop rule's
share of it (``stop_seconds``: the rule's setup, calibration, checks and finish), and
``stop_overhead``, that share over the rest of the run. Both are measured inside the one run, so the
ratio does not move with the machine's load between runs as back-to-back timings do. The issue's
target: at most +10%. The study itself (``safe_defaults.py``) records the same numbers beside its
test metrics; this script re-measures them alone, where the study's cache would keep older ones.

Writes benchmarks/results/rule_overhead.json / .md / .png.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import dgflow
from benchlib import RESULTS, command_line, pyplot, write_results
from benchlib.safe import HALVES, STUDY_SETTINGS, jobs_of, map_bases, setup

TARGET = 0.10  # the issue's bound on the rule's overhead


def measure(job: dict) -> dict:
    """One base: ``refine(G, D, z, real=x)`` with the study's settings, and what its RunInfo says."""
    a = job.pop("args")
    b = setup(job, a)
    _, info = dgflow.refine(b.g, b.d, b.z, real=b.real, batch_size=b.batch_size, generator_rng=a.seed + 4,
                            return_info=True)
    out = {**job, "steps_run": info.steps_run, "stop_step": info.stop_step, "seconds": info.seconds,
           "stop_seconds": info.stop_seconds, "overhead": info.stop_overhead}
    print(f"{job['half']:7s} {job['label']:38s} {info.steps_run:3d} steps, returned "
          f"{info.stop_step if info.stop_step is not None else info.steps_run:3d}: rule {info.stop_seconds:6.2f} s "
          f"of {info.seconds:7.2f} s, +{100 * info.stop_overhead:.1f}%", flush=True)
    return out


def summarise(rows: list[dict]) -> dict:
    out = {}
    for half in dict.fromkeys(r["half"] for r in rows):
        for kind in ("image", "2d"):
            v = [r["overhead"] for r in rows if r["half"] == half and r["kind"] == kind]
            if v:
                out[f"{half} | {kind}"] = {"bases": len(v), "median": statistics.median(v), "max": max(v),
                                           "over_target": sum(x > TARGET for x in v)}
    return out


def markdown(rows: list[dict], summary: dict, command: str, wall: float) -> str:
    lines = ["# The real-data stop rule's overhead", "",
             f"`{command}` ({wall / 60:.0f} min wall, one thread per base, two bases side by side on a 2-core "
             f"CPU, {platform.machine()}). `refine(G, D, z, real=x)` per base of the safe-defaults study "
             "(`DataMatch`: 2,000 held-out real samples, its first 1,000 compared every 5 steps, images through "
             "the random CNN, the step steered); overhead = the rule's own wall time (`RunInfo.stop_seconds`: "
             "setup, calibration, checks, finish) over the rest of the same run (`RunInfo.stop_overhead`). "
             f"Target: at most +{100 * TARGET:.0f}%.", "",
             "| half | kind | bases | median overhead | worst overhead | over the target |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        half, kind = key.split(" | ")
        lines.append(f"| {half} | {kind} | {s['bases']} | +{100 * s['median']:.1f}% | +{100 * s['max']:.1f}% | "
                     f"{s['over_target']} |")
    lines += ["", "| half | base | steps run | step returned | run, s | rule, s | overhead |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ret = r["stop_step"] if r["stop_step"] is not None else r["steps_run"]
        lines.append(f"| {r['half']} | {r['label']} | {r['steps_run']} | {ret} | {r['seconds']:.2f} | "
                     f"{r['stop_seconds']:.2f} | +{100 * r['overhead']:.1f}% |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(rows)), 4.5))
    colours = {"image": "tab:blue", "2d": "tab:orange"}
    for kind, colour in colours.items():  # one bar series per kind, so the legend names them
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        ax.bar(idx, [100 * rows[i]["overhead"] for i in idx], color=colour, label=f"{kind} bases")
    ax.axhline(100 * TARGET, color="k", lw=0.8, ls="--", label=f"target +{100 * TARGET:.0f}%")
    ax.set_xticks(range(len(rows)), [f"{r['half']}: {r['label']}" for r in rows], rotation=80, fontsize=6)
    ax.set(ylabel="rule overhead, % of the steps' time", title="refine(G, D, z, real=x): the stop rule's own time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", nargs="+", choices=[*HALVES, "all"], default=["all"], help="halves to run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=STUDY_SETTINGS["seed"])
    p.add_argument("--out", default=str(RESULTS / "rule_overhead"))
    a = p.parse_args(argv)
    study = SimpleNamespace(**{**STUDY_SETTINGS, "seed": a.seed})  # the study's latents and real samples
    jobs = jobs_of(a.split)
    t0 = time.perf_counter()
    rows = map_bases(measure, jobs, study, a.workers)
    wall = time.perf_counter() - t0
    summary, command = summarise(rows), command_line(__file__, argv)
    write_results(a.out, {"command": command, "target": TARGET, "wall_seconds": wall, "summary": summary,
                          "bases": rows}, markdown(rows, summary, command, wall), lambda path: plot(rows, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
