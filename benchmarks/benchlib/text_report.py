"""The text table's report (``benchmarks/text_table.py``): Markdown and figure from its results.

JS at equal steps and by step, the critic output by step, JS at equal critic gain (where each
method's mean critic output first reaches the level each reference DGflow flow reaches at the
table's last step, linear between the recorded steps), example strings; the figure JS-4 / JS-6 by
step and JS-4 against the critic output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchlib import pyplot


def fmt(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def markdown(res: dict) -> str:
    base = res["methods"].get("base")  # absent from a --only run without it, until merged
    fl, tr = res["floor"]["heldout_B_vs_A"], res["floor"]["train_vs_A"]
    lines = ["# Text: character-level WGAN-GP on the fortunes corpus", "",
             f"Command: `{res['command']}`  ", f"Machine: {res['machine']}; {res['wall_seconds'] / 60:.1f} min wall.",
             *[f"Then `{x['command']}` ({x['wall_seconds'] / 60:.1f} min wall), merged."
               for x in res.get("also_run", [])],
             "",
             f"{res['n']:,} strings of 32 characters per method and seed, {res['steps']} gradient steps for every "
             f"method, mean ± std over {len(res['seeds'])} seeds of the latents ({res['std']}). "
             f"JS in bits against {res['n']:,} held-out strings (half A); lower is better.", "",
             "| method | JS-4 | JS-6 | JS-4 vs base | JS-6 vs base | steps run (state returned) | s / run |",
             "|---|---|---|---|---|---|---|"]
    for name, s in res["methods"].items():
        d4, d6 = ((f"{(s[k] / base[k] - 1) * 100:+.1f}%" if base else "") for k in ("js4_mean", "js6_mean"))
        ran = s.get("steps_run", [0 if name == "base" else res["steps"]])
        back = s.get("returned_step", ran)
        ran_txt = "/".join(map(str, ran)) + ("" if back == ran else f" ({'/'.join(map(str, back))})")
        lines.append(f"| {name} | {fmt(s['js4_mean'], s['js4_std'])} | {fmt(s['js6_mean'], s['js6_std'])} | "
                     f"{d4} | {d6} | {ran_txt} | {s['seconds_mean']:.0f} |")
    lines += [f"| floor: held-out half B vs A | {fl['js4']:.4f} | {fl['js6']:.4f} | | | | |",
              f"| 10,000 train strings vs A | {tr['js4']:.4f} | {tr['js6']:.4f} | | | | |", "",
              "Calls (G, D: the zoo model's generator and critic, its WGAN output used as the logit):", ""]
    gains = {k: s["calibrated_gain"] for k, s in res["methods"].items() if "calibrated_gain" in s}
    lines[-2:-2] = [f"{k}: the critic's estimated gain per seed, Platt-calibrated on the real strings: "
                    + ", ".join(f"{g:.3g}" for g in v) + " nats; from its raw logits (what the data-free "
                    "default reads, at-chance threshold 0.02): "
                    + ", ".join(f"{g:.3g}" for g in res["methods"][k]["raw_gain"]) + ".\n" for k, v in gains.items()]
    lines += [f"* {k}: `{v}`" for k, v in res["calls"].items()]
    lines += ["", "## JS by step (mean over seeds; JS-4 / JS-6)", "",
              "| step | " + " | ".join(k for k in res["methods"] if k != "base") + " |",
              "|---|" + "---|" * (len(res["methods"]) - 1)]
    steps = sorted({int(k) for n, s in res["methods"].items() if n != "base" for k in s["by_step"]})
    for step in steps:
        cells = []
        for name, s in res["methods"].items():
            if name == "base":
                continue
            v = s["by_step"].get(str(step))
            cells.append(f"{v['js4_mean']:.4f} / {v['js6_mean']:.4f}" if v else "")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "Mean critic output d(G(z)) (the logit the flows climb) by step, averaged over seeds:", "",
              "| step | " + " | ".join(k for k in res["methods"] if k != "base") + " |",
              "|---|" + "---|" * (len(res["methods"]) - 1)]
    for step in steps:
        cells = [f"{s['logit_mean_by_step'][str(step)]:.3f}" if str(step) in s["logit_mean_by_step"] else ""
                 for name, s in res["methods"].items() if name != "base"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += equal_gain_lines(res)
    lines += ["", "## Example strings (seed 0; line i of every block comes from the same latent)", ""]
    for name, ex in res["examples_seed0"].items():
        lines += [f"**{name}**", "", "```"] + [s for s in ex] + ["```", ""]
    return "\n".join(lines)


def path_of(s: dict, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A method's recorded path: steps, mean critic output and mean ``key`` (JS) at each."""
    steps = np.array(sorted(int(k) for k in s["by_step"] if k in s["logit_mean_by_step"]))
    logit = np.array([s["logit_mean_by_step"][str(k)] for k in steps])
    return steps, logit, np.array([s["by_step"][str(k)][f"{key}_mean"] for k in steps])


def at_logit(s: dict, level: float) -> tuple[float, float, float] | None:
    """(step, JS-4, JS-6) where a method's path first reaches mean critic output ``level``, linearly
    interpolated between recorded steps; ``None`` if it never does."""
    (steps, logit, js4), js6 = path_of(s, "js4"), path_of(s, "js6")[2]
    reached = np.nonzero(logit >= level)[0]
    if not len(reached):
        return None
    i = int(reached[0])
    if i == 0:
        return float(steps[0]), float(js4[0]), float(js6[0])
    w = (level - logit[i - 1]) / (logit[i] - logit[i - 1])
    return tuple(float(v[i - 1] + w * (v[i] - v[i - 1])) for v in (steps, js4, js6))


EQUAL_GAIN_REFS = ("DGflow (paper)", "DGflow (defaults)")  # the levels: these flows' critic output at the last step


def equal_gain_lines(res: dict) -> list[str]:
    """Markdown: every method's JS where its path reaches the critic output that each reference
    flow reaches at the table's step count (equal gain in the critic, not equal steps)."""
    refs = [r for r in EQUAL_GAIN_REFS if r in res["methods"] and str(res["steps"]) in res["methods"][r]["logit_mean_by_step"]]
    if not refs:
        return []
    levels = {r: res["methods"][r]["logit_mean_by_step"][str(res["steps"])] for r in refs}
    lines = ["", "## JS at equal critic gain (JS-4 / JS-6 at step s, interpolated along each path)", "",
             "Where each method's mean critic output first reaches the level a reference flow reaches at step "
             f"{res['steps']}; \"–\": never within its steps.", "",
             "| method | " + " | ".join(f"at {r}'s step-{res['steps']} level ({v:.3f})" for r, v in levels.items()) + " |",
             "|---|" + "---|" * len(levels)]
    for name, s in res["methods"].items():
        if name == "base":
            continue
        at = [at_logit(s, v) for v in levels.values()]
        cells = ["–" if a is None else f"{a[1]:.4f} / {a[2]:.4f} (s {a[0]:.1f})" for a in at]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(res: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, s in res["methods"].items():  # JS-4 against the critic output climbed: equal gain, not equal steps
        if name != "base":
            _, logit, js = path_of(s, "js4")
            axes[2].plot(logit, js, marker="o", ms=3, label=name)
    axes[2].set_xlabel("mean critic output d(G(z))")
    axes[2].set_ylabel("JS-4 (bits)")
    axes[2].set_title("JS-4 against the critic gain (every 5 steps)", fontsize=9)
    axes[2].grid(alpha=0.3)
    for ax, key, label in zip(axes, ("js4", "js6"), ("JS-4 (bits)", "JS-6 (bits)")):
        for name, s in res["methods"].items():
            if name == "base":
                ax.axhline(s[f"{key}_mean"], color="k", lw=1, label="base")
                continue
            steps = sorted(int(k) for k in s["by_step"])
            mu = np.array([s["by_step"][str(k)][f"{key}_mean"] for k in steps])
            sd = np.array([s["by_step"][str(k)][f"{key}_std"] for k in steps])
            ax.plot(steps, mu, marker="o", ms=3, label=name)
            ax.fill_between(steps, mu - sd, mu + sd, alpha=0.2)
        ax.set_xlabel("gradient step")
        ax.set_ylabel(label)
        ax.set_title(f"floor (held-out half B vs A): {res['floor']['heldout_B_vs_A'][key]:.4f}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)  # the floor is far below these curves: stated in the titles
    fig.suptitle(f"{res['model']}: {res['n']:,} strings, mean ± std over {len(res['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
