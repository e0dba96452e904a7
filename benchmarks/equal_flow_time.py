"""Is a smaller auto_step better per unit of flow time, or only because it flows less in 25 steps?

    python benchmarks/equal_flow_time.py     # reads benchmarks/results/defaults_sensitivity.json

``eta="auto"`` sets eta so that the median first-step drift is ``auto_step``; halving auto_step
halves eta, so k steps at auto_step a cover the flow time of 2k steps at a / 2. This compares, on
every base of the sensitivity run (``benchmarks/step_rules.py --rules ...``, no new refinement),
the test score of ``auto 0.01, clip 1`` at step 2k with that of ``auto, clip 1`` (0.02) at step k,
and that of ``auto 0.04, clip 1`` at step k with 0.02 at step 2k: k = 25 on the 2D bases (EMD and
HQ), k = 20 on Fashion-MNIST (FID; its runs stop at 40 steps).
Writes ``benchmarks/results/equal_flow_time.json`` and ``.md`` (``--out`` for another prefix).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchlib import RESULTS

SMALL, DEFAULT, LARGE = "auto 0.01, clip 1", "auto, clip 1", "auto 0.04, clip 1"


def compare(bases: list[dict]) -> list[dict]:
    rows = []
    for b in bases:
        k = 25 if b["kind"] == "2d" else 20
        small, default, large = (b["rules"][r]["test"] for r in (SMALL, DEFAULT, LARGE))
        key = "emd" if b["kind"] == "2d" else "fid"
        row = {"base": b["label"], "kind": b["kind"], "metric": key, "k": k, "start": default["0"][key],
               "default_at_k": default[str(k)][key], "small_at_k": small[str(k)][key],
               "small_at_2k": small[str(2 * k)][key], "large_at_k": large[str(k)][key],
               "default_at_2k": default[str(2 * k)][key]}
        if b["kind"] == "2d":
            row.update(hq_default_at_k=default[str(k)]["hq"], hq_small_at_k=small[str(k)]["hq"],
                       hq_small_at_2k=small[str(2 * k)]["hq"])
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sel = [r for r in rows if r["kind"] == kind]
        rel = {c: 100 * statistics.mean((r[c] - r["start"]) / r["start"] for r in sel)
               for c in ("default_at_k", "small_at_k", "small_at_2k", "large_at_k", "default_at_2k")}
        out[kind] = {"bases": len(sel), "mean_rel_change_pct": rel}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sensitivity", default=str(RESULTS / "defaults_sensitivity.json"),
                   help="the step_rules.py sensitivity run to read")
    p.add_argument("--out", default=str(RESULTS / "equal_flow_time"), help="output prefix (.json, .md)")
    a = p.parse_args(argv)
    res = json.loads(Path(a.sensitivity).read_text())
    rows = compare(res["bases"])
    summ = summary(rows)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "summary": summ}, indent=1) + "\n")
    lines = ["Command: `python benchmarks/equal_flow_time.py` (from defaults_sensitivity.json). Mean relative "
             "change of the test distance from the base (2D: EMD, k = 25; Fashion-MNIST: FID, k = 20):", "",
             "| bases | auto_step 0.02 at k | 0.01 at k | 0.01 at 2k (same flow time as 0.02 at k) | "
             "0.04 at k | 0.02 at 2k (same flow time as 0.04 at k) |", "|---|---|---|---|---|---|"]
    for kind, s in summ.items():
        r = s["mean_rel_change_pct"]
        lines.append(f"| {kind} ({s['bases']}) | {r['default_at_k']:+.1f}% | {r['small_at_k']:+.1f}% | "
                     f"{r['small_at_2k']:+.1f}% | {r['large_at_k']:+.1f}% | {r['default_at_2k']:+.1f}% |")
    lines += ["", "| base | start | 0.02 at k | 0.01 at k | 0.01 at 2k | HQ %: 0.02 at k / 0.01 at k / 0.01 at 2k |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        hq = (f"{100 * r['hq_default_at_k']:.1f} / {100 * r['hq_small_at_k']:.1f} / {100 * r['hq_small_at_2k']:.1f}"
              if "hq_default_at_k" in r else "")
        lines.append(f"| {r['base']} | {r['start']:.3f} | {r['default_at_k']:.3f} | {r['small_at_k']:.3f} | "
                     f"{r['small_at_2k']:.3f} | {hq} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
