"""Text table: JS-4 / JS-6 of the character-level WGAN-GP base, refined by DGflow, DDLS and DOT.

    python benchmarks/text_table.py        # -> benchmarks/results/text_table.{json,md,png}
    python benchmarks/text_table.py --only "DGflow (defaults, real data)"   # one method, merged in

The base is the zoo model ``text-fortunes-wgangp`` (benchmarks/train_text_gan.py). For each of
3 seeds, 10,000 prior latents are refined by every method with the same number of gradient steps
(25) and decoded by argmax; each set of strings is scored by JS-4 and JS-6 (bits,
:mod:`dgflow.metrics.text`) against 10,000 held-out strings of the corpus (half A), every 5
steps. Methods, with nothing tuned to this benchmark:

* ``DGflow (paper)``: ``refine(G, D, z, **dgflow.PAPER)`` (25 steps, eta 0.1, gamma 0.01, KL, no cap, no stop);
* ``DGflow (defaults)``: ``refine(G, D, z, stop=None)``: refine's step rule (25 steps, eta "auto", clip 1)
  without its stop rule, which would return this base unchanged (its WGAN critic's estimated gain,
  0.008, is below :data:`dgflow.stopping.AT_CHANCE_GAIN`: a WGAN critic's logits are not nats);
* ``DGflow (defaults, real data)``: ``refine(G, D, z, real=x_B)`` with 1,000 strings of held-out
  half B, one-hot: refine's defaults with real data (budget 100 steps, the energy distance to them
  every 5 steps ends the flow; not at equal steps: the table gives the steps it ran);
* ``DDLS``: ``dgflow.baselines.ddls(G, D, z, 25)`` with the library's default ``eps``;
* ``DOT``: ``dgflow.baselines.dot(G, D, z, 25)`` with the library's default ``lr``.

Besides JS at equal steps, the Markdown gives each method's JS where its mean critic output first
reaches the level each DGflow flow reaches at the last step (equal critic gain; linear between the
5-step records), and the figure JS-4 against the critic output.

The floor is the JS between two disjoint held-out halves: the held-out strings are grouped in
blocks of 16 consecutive strings (512 characters, a few fortunes), the blocks shuffled (seed 0)
and dealt to half A (the reference, its first 10,000 strings) and half B (the floor's sample,
10,000 strings); so A and B share no block and nearly no fortune. 10,000 train strings against A
are reported beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import dgflow
import dgflow.flow
import dgflow.zoo
from benchlib import RESULTS, command_line, display_path
from benchlib.text_report import markdown, plot
from dgflow.baselines import ddls, dot
from dgflow.data.text import FORTUNES_DIR, decode, encode, load_corpus, one_hot, vocab_of_entry
from dgflow.metrics.text import NgramReference
from dgflow.passes import logits as critic_logits
from dgflow.stopping import estimated_gain, mean_logit

MODEL = "text-fortunes-wgangp"
BLOCK = 16
METHODS = ("base", "DGflow (paper)", "DGflow (defaults)", "DGflow (defaults, real data)", "DDLS", "DOT")
REAL_DATA = 1000  # held-out half B strings given to refine(real=...)
CALLS = {
    "DGflow (paper)": "dgflow.refine(G, D, z, **dgflow.PAPER)  # steps 25, eta 0.1, gamma 0.01, KL, no cap/stop",
    "DGflow (defaults)": "dgflow.refine(G, D, z, stop=None)  # refine's step rule, 25 steps, no stop rule",
    "DGflow (defaults, real data)": "dgflow.refine(G, D, z, real=x_B)  # 1,000 one-hot strings of held-out half B",
    "DDLS": "dgflow.baselines.ddls(G, D, z, steps=25)  # default eps",
    "DOT": "dgflow.baselines.dot(G, D, z, steps=25)  # default lr",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=MODEL, help="zoo model name")
    p.add_argument("--zoo", help="extra zoo yaml to resolve --model in")
    p.add_argument("--corpus", nargs="+", default=[FORTUNES_DIR], help="text files or directories")
    p.add_argument("-n", type=int, default=10_000, help="strings per method and seed (and per held-out half)")
    p.add_argument("--steps", type=int, default=25, help="gradient steps of every method")
    p.add_argument("--every", type=int, default=5, help="record JS every this many steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the latents")
    p.add_argument("--batch-size", type=int, default=2000, help="chunk size of the forward/backward passes")
    p.add_argument("--examples", type=int, default=12, help="example strings shown (seed 0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "text_table"), help="output stem (.json, .md, .png)")
    p.add_argument("--replot", action="store_true", help="only rewrite the .md and .png from the .json")
    p.add_argument("--only", nargs="+", choices=METHODS, help="run these methods only and merge them into the "
                                                                "existing .json (same settings)")
    return p.parse_args(argv)


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores (shared with other jobs), {threads} torch thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def heldout_halves(strings: list[str], n: int, block: int = BLOCK, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two disjoint halves of ``n`` strings each, made of shuffled blocks of ``block`` consecutive strings."""
    n_blocks = len(strings) // block
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    half = n_blocks // 2
    a = [strings[b * block + j] for b in order[:half] for j in range(block)]
    b = [strings[b * block + j] for b in order[half:] for j in range(block)]
    if len(a) < n or len(b) < n:
        raise SystemExit(f"-n {n}: the held-out split has {len(strings)} strings, too few for two halves "
                         f"of {n}; lower -n or raise heldout_fraction")
    return a[:n], b[:n]


def run_method(name: str, g, d, z: torch.Tensor, steps: int, every: int, seed: int, batch_size: int,
               real: torch.Tensor):
    """(final latents, {step: latents}, seconds) of one method on ``z`` (``real``: one-hot held-out strings)."""
    record = set(range(0, dgflow.flow.DATA_STEPS + 1, every))
    states: dict[int, torch.Tensor] = {}

    def cb(step, zs, logits):
        if step in record:
            states[step] = zs.detach().clone()

    rng = 1000 + seed
    t = time.perf_counter()
    if name == "base":
        out = z.clone()
    elif name == "DGflow (paper)":
        out = dgflow.refine(g, d, z, **{**dgflow.PAPER, "steps": steps}, generator_rng=rng, callback=cb,
                            batch_size=batch_size)
    elif name == "DGflow (defaults)":
        out = dgflow.refine(g, d, z, steps=steps, stop=None, generator_rng=rng, callback=cb, batch_size=batch_size)
    elif name == "DGflow (defaults, real data)":
        out, info = dgflow.refine(g, d, z, real=real, generator_rng=rng, callback=cb, batch_size=batch_size,
                                  return_info=True)
        secs = time.perf_counter() - t  # the states by step are the flow's; the one returned is info.stop_step's
        back = info.steps_run if info.stop_step is None else info.stop_step
        states.setdefault(back, out.detach().clone())  # the state returned is step back's (the last one: no callback)
        return out, states, secs, {"steps_run": info.steps_run, "returned_step": back,
                                   "calibrated_gain": info.stop_rule["gain"],
                                   "raw_gain": estimated_gain(critic_logits(g, d, z, batch_size))}
    elif name == "DDLS":
        out = ddls(g, d, z, steps, generator_rng=rng, callback=cb, batch_size=batch_size)
    elif name == "DOT":
        out = dot(g, d, z, steps, generator_rng=rng, callback=cb, batch_size=batch_size)
    else:
        raise ValueError(name)
    secs = time.perf_counter() - t
    if name != "base":
        states[steps] = out.detach().clone()
    return out, states, secs, {"steps_run": 0 if name == "base" else steps}


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.replot:
        stem = Path(a.out)
        res = json.loads(stem.with_suffix(".json").read_text())
        stem.with_suffix(".md").write_text(markdown(res))
        plot(res, stem.with_suffix(".png"))
        return 0
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    cmd = command_line(__file__, argv)
    m = dgflow.zoo.load(a.model, zoo=a.zoo)
    vocab = vocab_of_entry(m.entry)
    if vocab is None:
        raise SystemExit(f"--model {a.model}: not a text model (no generator.kwargs.vocab in its zoo entry)")
    corpus = load_corpus(a.corpus)
    if corpus.vocab != vocab:
        raise SystemExit(f"the corpus vocabulary {corpus.vocab!r} differs from the model's {vocab!r}")
    half_a, half_b = heldout_halves(corpus.strings("heldout"), a.n)
    ref = NgramReference(half_a)
    train = corpus.strings("train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:a.n].tolist()
    floor = {"heldout_B_vs_A": ref(half_b), "train_vs_A": ref([train[i] for i in pick])}
    print(f"floor (held-out B vs A): {floor['heldout_B_vs_A']}, train vs A: {floor['train_vs_A']}", flush=True)

    g, d = m.generator, m.critic
    methods = a.only or METHODS
    real = one_hot(encode(half_b[:REAL_DATA], vocab), len(vocab))
    runs: dict[str, dict] = {k: {"by_step": {}, "logit_mean": {}, "seconds": [], "final": [], "steps_run": [],
                                 "returned_step": []} for k in methods}
    examples: dict[str, list[str]] = {}
    for seed in a.seeds:
        z = g.sample_prior(a.n, generator=torch.Generator().manual_seed(seed))
        for name in methods:
            out, states, secs, ran = run_method(name, g, d, z, a.steps, a.every, seed, a.batch_size, real)
            if name == "base":
                states = {0: z}
            scores, logits = {}, {}
            for step, zs in sorted(states.items()):
                x = dgflow.generate(g, zs, a.batch_size)
                strings = decode(x, vocab)
                scores[step] = ref(strings)
                logits[step] = mean_logit(d, x, a.batch_size)
                if seed == a.seeds[0] and step == max(states):
                    examples[name] = strings[:a.examples]
            r = runs[name]
            for step, s in scores.items():
                r["by_step"].setdefault(step, []).append(s)
            for step, v in logits.items():
                r["logit_mean"].setdefault(step, []).append(v)
            r["seconds"].append(secs)
            r["steps_run"].append(ran["steps_run"])
            r["returned_step"].append(ran.get("returned_step", ran["steps_run"]))
            for key in ("calibrated_gain", "raw_gain"):
                if key in ran:
                    r.setdefault(key, []).append(ran[key])
            r["final"].append(scores[max(scores)] if "returned_step" not in ran
                              else ref(decode(dgflow.generate(g, out, a.batch_size), vocab)))
            if "returned_step" in ran and seed == a.seeds[0]:
                examples[name] = decode(dgflow.generate(g, out[:a.examples], a.batch_size), vocab)
            print(f"seed {seed} {name:18s} {secs:6.0f} s  " +
                  "  ".join(f"step {k}: {v['js4']:.4f}/{v['js6']:.4f}" for k, v in sorted(scores.items())),
                  flush=True)

    summary = {}
    for name, r in runs.items():
        summary[name] = {
            **{f"{k}_mean": mean_std([s[k] for s in r["final"]])[0] for k in ("js4", "js6")},
            **{f"{k}_std": mean_std([s[k] for s in r["final"]])[1] for k in ("js4", "js6")},
            "per_seed": r["final"],
            "by_step": {str(step): {f"{k}_{stat}": v for k in ("js4", "js6")
                                    for stat, v in zip(("mean", "std"), mean_std([s[k] for s in ss]))}
                        for step, ss in sorted(r["by_step"].items())},
            "logit_mean_by_step": {str(step): float(np.mean(v)) for step, v in sorted(r["logit_mean"].items())},
            "seconds_mean": float(np.mean(r["seconds"])),
            "steps_run": r["steps_run"], "returned_step": r["returned_step"],
            **{k: r[k] for k in ("calibrated_gain", "raw_gain") if k in r},
        }
    wall = time.perf_counter() - t_start
    result = {
        "command": cmd, "machine": machine(a.threads), "wall_seconds": round(wall, 1),
        "model": a.model, "weights_sha256": m.entry["weights"]["sha256"] if isinstance(m.entry["weights"], dict)
        else None, "corpus": [display_path(p) for p in a.corpus],
        "corpus_settings": corpus.settings, "n_train": len(corpus.train), "n_heldout": len(corpus.heldout),
        "n": a.n, "steps": a.steps, "every": a.every, "seeds": a.seeds, "std": "sample std over seeds (ddof=1)",
        "metric": "JS-n in bits between character n-gram frequencies of the generated strings and of "
                  "held-out half A (n-grams inside each string)",
        "calls": CALLS, "floor": floor, "methods": summary, "examples_seed0": examples,
    }
    stem = Path(a.out)
    if a.only:
        result = merged(stem.with_suffix(".json"), result)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json/.md/.png ({wall / 60:.1f} min)", flush=True)
    return 0


def merged(path: Path, new: dict) -> dict:
    """``new`` (a run of some methods) merged into the results at ``path`` if any (same settings), methods in
    :data:`METHODS` order; both commands are kept."""
    if not path.is_file():  # nothing to merge into: the table of these methods alone
        return new
    old = json.loads(path.read_text())
    keys = ("model", "weights_sha256", "n", "steps", "every", "seeds", "corpus_settings")
    if any(old.get(k) != new.get(k) for k in keys):
        raise SystemExit(f"--only: {path} was made with other settings ({', '.join(keys)} must match)")
    methods = {**old["methods"], **new["methods"]}
    examples = {**old["examples_seed0"], **new["examples_seed0"]}
    return {**old, "methods": {k: methods[k] for k in METHODS if k in methods},
            "examples_seed0": {k: examples[k] for k in METHODS if k in examples},
            "calls": CALLS, "also_run": old.get("also_run", []) + [
                {"command": new["command"], "machine": new["machine"], "wall_seconds": new["wall_seconds"]}]}


if __name__ == "__main__":
    raise SystemExit(main())
