"""Speed and memory of ``dgflow.refine``: the floor, a research-style reference loop, peak memory in N.

    python benchmarks/speed.py                      # CPU here, CUDA where available (--device)
    nohup python benchmarks/speed.py > speed.log &  # on a shared machine

In one run, on one generator/critic pair and one batch of ``--n`` latents cut into ``--batch-size``
chunks, each timing repeated ``--repeats`` times in rotating order (medians reported; the ratios
are medians of per-repeat ratios). On a CPU the clock is the process CPU time of one thread,
which other processes on a shared machine do not inflate as they do wall time; on CUDA it is
wall time with synchronisation:

* **floor**: ``steps`` x (forward + backward of critic(generator(z)) w.r.t. z only, parameters
  frozen), the work no implementation of the flow can skip;
* **refine**: ``dgflow.refine``'s time with the reference's scheme (fixed eta, ``clip=None``),
  and refine / floor (target <= 1.10); also refine with its default step rule (``eta="auto"``,
  ``clip=1``), whose per-step extra is a median and a norm over the latents;
* **reference**: the loop as research code usually writes it: parameters left trainable so
  ``backward()`` also computes their gradients (then ``zero_grad``), a per-batch ``.item()`` log
  line, the same update and noise; its output is compared with refine's (``identical``) and
  reference / refine is the speed-up (target >= 1.5);
* **opt-ins** (``--opt-ins``): ``torch.compile`` of both models, channels-last memory format of
  both models' weights (``model.to(memory_format=torch.channels_last)``), the two together,
  bfloat16 autocast and, on CUDA, TF32; each with its median time and the largest change of the
  refined latents;
* **chunking**: the reference's output at a quarter, half and twice the batch size against the
  timed one (is "identical output" bitwise-stable, i.e. a meaningful bar?), and the floor's time
  at those chunk sizes (could a different chunking beat the floor at identical output?);
* **peak memory** for each N in ``--mem-n`` (a fresh process each; see ``benchlib/memory.py`` for
  how it is read on CPU and CUDA) of (a) ``dgflow.refine`` on all N latents with a fixed
  ``batch_size`` and (b) ``dgflow.distributed.refine_to_shards`` with ``chunk_size`` = that
  batch size, decoding to disk; ``--mem-steps`` flow steps (memory does not grow with steps).

Pair: the Fashion-MNIST DCGAN-lite of docs/design.md §5 (``dgflow.models.arch.dcgan``: 64-d z ->
128x4x4 -> transposed convs 64, 32, 1 to 32x32, ~17M MACs/image; spectral-norm critic with
stride-2 convs 32, 64, 128 -> linear, ~4M MACs/image). The trained weights are the zoo model
``--model`` (default ``fmnist-sndcgan``); ``--model ''`` takes the same architectures with a seeded
random init ("synthetic": speed and memory do not depend on the weights' values). Writes
``benchmarks/results/speed<tag>.json`` and ``speed<tag>.md`` (``--results-dir`` for another folder).
``--pair toy2d`` runs the same on the 2D MLPs (zoo ``toy2d-25gaussians-wgangp`` if available),
where the fixed per-step cost of the update is largest relative to the networks.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import statistics
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

import dgflow
from benchlib import RESULTS
from benchlib.memory import memory, memory_child
from dgflow.divergences import get_weight
from dgflow.models import frozen
from dgflow.passes import chunk_slices as chunks

log = logging.getLogger("reference_loop")


# ---------------------------------------------------------------- models
def load_pair(device: torch.device, seed: int = 0, pair: str = "fmnist", model: str = ""):
    """(generator, critic, description): zoo ``model`` (Fashion-MNIST pair) or a seeded random init."""
    torch.manual_seed(seed)
    g, d, desc = _toy2d_pair() if pair == "toy2d" else _fmnist_pair(model)
    return dgflow.as_generator(g.to(device).eval(), getattr(g, "z_dim", None)), d.to(device).eval(), desc


def _fmnist_pair(model: str):
    from dgflow import zoo
    from dgflow.models.arch.dcgan import DCGANGenerator, SNDCGANDiscriminator

    if not model:
        return (DCGANGenerator(), SNDCGANDiscriminator(),
                "synthetic: DCGANGenerator() + SNDCGANDiscriminator() (Fashion-MNIST sizes), random init")
    m = zoo.load(model)
    return m.generator, m.critic, f"zoo {model} ({m.entry['generator']['arch']}, {m.entry['critic']['arch']})"


def _toy2d_pair():
    from dgflow import zoo
    from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

    try:
        m = zoo.load("toy2d-25gaussians-wgangp")
        return m.generator, m.critic, "zoo toy2d-25gaussians-wgangp (128-wide 3-layer MLPs)"
    except zoo.ZooError as exc:
        return (MLPGenerator(2, 2), MLPCritic(2),
                f"synthetic: MLPGenerator(2, 2) + MLPCritic(2) (128-wide, 3 layers), random init ({exc})"[:300])


# ---------------------------------------------------------------- the three loops
def floor(g, d, z: torch.Tensor, steps: int, batch_size: int) -> None:
    """steps x (forward + backward w.r.t. z) on the same latents, parameters frozen."""
    with frozen(g, d):
        for _ in range(steps):
            for s in chunks(len(z), batch_size):
                zg = z[s].detach().requires_grad_(True)
                torch.autograd.grad(d(g(zg)).sum(), zg)


def ours(g, d, z, steps, eta, gamma, batch_size, seed) -> torch.Tensor:
    """refine with the reference's scheme (fixed eta, no drift cap), so the outputs can be compared."""
    return dgflow.refine(g, d, z, steps=steps, eta=eta, gamma=gamma, batch_size=batch_size,
                         generator_rng=seed, clip=None, stop=None)


def ours_defaults(g, d, z, steps, eta, gamma, batch_size, seed) -> torch.Tensor:
    """refine with its default step rule (eta="auto", clip=1): the cost of the defaults."""
    return dgflow.refine(g, d, z, steps=steps, gamma=gamma, batch_size=batch_size, generator_rng=seed, stop=None)


def reference(g, d, z, steps, eta, gamma, batch_size, seed) -> torch.Tensor:
    """The same flow written the way research code usually is (see the module docstring)."""
    g.eval()
    d.eval()
    weight = get_weight("kl")
    rng = torch.Generator(device=z.device).manual_seed(seed)
    noise_scale = math.sqrt(2 * gamma * eta)
    for step in range(steps):
        grads, logits = [], []
        for s in chunks(len(z), batch_size):
            zb = z[s].clone().requires_grad_(True)
            out = d(g(zb)).view(-1)
            out.sum().backward()  # parameters require grad: their .grad is computed too
            grads.append(zb.grad.detach())
            logits.append(out.detach())
            log.info(f"step {step} batch {s.start // batch_size}: d={out.mean().item():.4f} "
                     f"|grad|={zb.grad.norm(dim=1).mean().item():.4f}")
            g.zero_grad()
            d.zero_grad()
        grad, logit = torch.cat(grads), torch.cat(logits)
        z = z + eta * weight(logit).view(-1, *([1] * (z.dim() - 1))) * grad
        z = z + noise_scale * torch.randn(z.shape, generator=rng, device=z.device, dtype=z.dtype)
    return z.detach()


def timed(fn, device: torch.device) -> tuple[float, object]:
    """(seconds, result): process CPU time on a CPU device (one thread: robust to other users of a
    shared machine, which wall time is not), wall time with synchronisation on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - t0, out
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


# ---------------------------------------------------------------- timing
def time_loops(g, d, z, a, device) -> dict:
    """Repeats of floor / refine / reference back to back (rotating order); the ratios are the
    medians of the per-repeat ratios, so slow drifts of the machine's load cancel out."""
    flow = (a.steps, a.eta, a.gamma, a.batch_size, a.seed)
    fns = {"floor": lambda: floor(g, d, z, a.steps, a.batch_size), "refine": lambda: ours(g, d, z, *flow),
           "reference": lambda: reference(g, d, z, *flow), "refine_defaults": lambda: ours_defaults(g, d, z, *flow)}
    ours(g, d, z[: a.batch_size], 1, a.eta, a.gamma, a.batch_size, a.seed)  # warm-up
    times = {k: [] for k in fns}
    outs = {}
    for r in range(a.repeats):
        names = list(fns)[r % len(fns):] + list(fns)[: r % len(fns)]
        for name in names:
            t, outs[name] = timed(fns[name], device)
            times[name].append(t)
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = lambda num, den: statistics.median(x / y for x, y in zip(times[num], times[den]))  # noqa: E731
    diff = (outs["refine"] - outs["reference"]).abs().max().item()
    return {"clock": "CUDA-synchronised wall" if device.type == "cuda" else "process CPU time, 1 thread",
            "seconds": times, "median_s": med, "refine_over_floor": per("refine", "floor"),
            "defaults_over_floor": per("refine_defaults", "floor"),
            "reference_over_refine": per("reference", "refine"), "reference_over_floor": per("reference", "floor"),
            "identical_output": bool(torch.equal(outs["refine"], outs["reference"])),
            "max_abs_diff_vs_reference": diff, "_refined": outs["refine"]}


def chunking_checks(g, d, z, a, device) -> dict:
    """Is "identical output" a meaningful bar, and can re-chunking beat the floor? The reference's
    output at other batch sizes (max |diff| to the timed batch size; 0 = bitwise the same), and the
    floor's time per chunk size (medians of 5 rotating repeats, relative to the timed batch size)."""
    sizes = sorted({max(1, a.batch_size // 4), max(1, a.batch_size // 2), a.batch_size, 2 * a.batch_size})
    flow = (a.steps, a.eta, a.gamma)
    base = reference(g, d, z, *flow, a.batch_size, a.seed)
    diffs = {b: (reference(g, d, z, *flow, b, a.seed) - base).abs().max().item() for b in sizes if b != a.batch_size}
    times = {b: [] for b in sizes}
    for r in range(5):
        for b in sizes[r % len(sizes):] + sizes[: r % len(sizes)]:
            times[b].append(timed(lambda: floor(g, d, z, a.steps, b), device)[0])
    med = {b: statistics.median(v) for b, v in times.items()}
    return {"reference_max_diff_by_batch_size": diffs,
            "floor_time_by_batch_size": {b: med[b] / med[a.batch_size] for b in sizes}}


@contextmanager
def _tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


OPT_INS = ["compile", "channels_last", "channels_last+compile", "bf16_autocast"]


def _opt_in(name: str, g, d, device: torch.device):
    """(generator, critic, context factory) of one opt-in: ``compile``, ``channels_last`` (both:
    ``channels_last+compile``),
    ``bf16_autocast`` or ``tf32``; the context is entered around each timed call only."""
    if name == "compile":
        return torch.compile(g), torch.compile(d), nullcontext
    if name in ("channels_last", "channels_last+compile"):  # on copies: Module.to changes the module in place
        gg = copy.deepcopy(g).to(memory_format=torch.channels_last)
        dd = copy.deepcopy(d).to(memory_format=torch.channels_last)
        return (gg, dd, nullcontext) if name == "channels_last" else (torch.compile(gg), torch.compile(dd), nullcontext)
    if name == "bf16_autocast":
        return g, d, lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return g, d, _tf32


def time_opt_ins(g, d, z, a, device, base: torch.Tensor) -> dict:
    """Opt-in speed-ups on the same latents, each timed in alternation with plain refine (so the
    ratio is a median of per-repeat ratios, like the loops'), the first call (compilation) and the
    largest change of the refined latents against the default float32 run."""
    flow = (a.steps, a.eta, a.gamma, a.batch_size, a.seed)
    res = {}
    for name in OPT_INS + (["tf32"] if device.type == "cuda" else []):
        try:
            gg, dd, ctx = _opt_in(name, g, d, device)

            def run():
                with ctx():
                    return ours(gg, dd, z, *flow)

            t0 = time.perf_counter()
            first, _ = timed(run, device)
            first_wall = time.perf_counter() - t0  # compilation runs partly in worker processes
            ts, plain, out = [], [], None
            for r in range(a.repeats):
                for which in (("opt", "plain") if r % 2 else ("plain", "opt")):
                    if which == "opt":
                        t, out = timed(run, device)
                        ts.append(t)
                    else:
                        plain.append(timed(lambda: ours(g, d, z, *flow), device)[0])
            res[name] = {"median_s": statistics.median(ts), "seconds": ts, "plain_refine_s": plain,
                         "first_call_s": first, "first_call_wall_s": first_wall,
                         "over_refine": statistics.median(x / y for x, y in zip(ts, plain)),
                         "max_abs_change_of_z_refined": (out.float() - base).abs().max().item()}
        except Exception as exc:  # an opt-in that does not work here is reported, not fatal
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"opt-in {name}: " + ", ".join(f"{k} {v}" for k, v in res[name].items()
                                             if k not in ("seconds", "plain_refine_s")), flush=True)
    return res


# ---------------------------------------------------------------- report
def markdown(res: dict) -> str:
    t, c = res["timing"], res["config"]
    m = t["median_s"]
    lines = [f"# dgflow speed ({res['device']}, {c['threads']} thread(s))", "",
             f"Pair: {res['pair']}. N = {c['n']} latents, batch_size {c['batch_size']}, {c['steps']} steps "
             f"(KL, eta {c['eta']}, gamma {c['gamma']}); {t['clock']}; medians of {c['repeats']} repeats "
             "in rotating order (ratios: medians of the per-repeat ratios).", "",
             "| loop | median s | vs floor | target |", "|---|---|---|---|",
             f"| floor: steps x fwd+bwd w.r.t. z | {m['floor']:.3f} | 1.00 | |",
             f"| dgflow.refine | {m['refine']:.3f} | {t['refine_over_floor']:.3f} | <= 1.10: "
             f"{'met' if t['refine_over_floor'] <= 1.10 else 'NOT met'} |",
             f"| dgflow.refine, default step rule (eta auto, clip 1) | {m['refine_defaults']:.3f} | "
             f"{t['defaults_over_floor']:.3f} | |",
             f"| reference loop (param grads, .item() log) | {m['reference']:.3f} | "
             f"{t['reference_over_floor']:.3f} | |", "",
             f"Speed-up of refine over the reference: **{t['reference_over_refine']:.2f}x** (target >= 1.5: "
             f"{'met' if t['reference_over_refine'] >= 1.5 else 'NOT met'}); identical output: "
             f"{t['identical_output']} (max |diff| {t['max_abs_diff_vs_reference']:.3g}).", ""]
    if res.get("chunking"):
        ch = res["chunking"]
        lines += ["The reference's output at other batch sizes, max |diff| to batch size "
                  f"{c['batch_size']} (0: bitwise identical): "
                  + ", ".join(f"{b}: {v:.3g}" for b, v in ch["reference_max_diff_by_batch_size"].items())
                  + f". The floor's time per chunk size, relative to {c['batch_size']}: "
                  + ", ".join(f"{b}: {v:.2f}" for b, v in ch["floor_time_by_batch_size"].items()) + ".", ""]
    if res.get("opt_ins"):
        lines += ["Opt-ins, each timed in alternation with plain refine (vs refine: median of per-repeat "
                  "ratios; speed-up over the reference: the reference/refine ratio above divided by it):", "",
                  "| opt-in | median s | vs refine | speed-up over the reference | first call: s (wall s) | "
                  "max change of z_refined |", "|---|---|---|---|---|---|"]
        for k, v in res["opt_ins"].items():
            if "error" in v:
                lines.append(f"| {k} | failed: {v['error'][:80]} | | | | |")
            else:
                lines.append(f"| {k} | {v['median_s']:.3f} | {v['over_refine']:.3f} | "
                             f"{t['reference_over_refine'] / v['over_refine']:.2f}x | "
                             f"{v['first_call_s']:.2f} ({v['first_call_wall_s']:.1f}) | "
                             f"{v['max_abs_change_of_z_refined']:.3g} |")
        lines.append("")
    if res.get("memory"):
        lines += [f"Peak memory ({res['memory'][0]['measure']}, MiB; {c['mem_steps']} steps, batch/chunk "
                  f"{c['batch_size']}, fresh process per point):", "",
                  "| N | N x z_dim float32 | refine(): peak | refine(): above baseline | shards: peak | "
                  "shards: above baseline |", "|---|---|---|---|---|---|"]
        by = {(r["mode"], r["n"]): r for r in res["memory"]}
        for n in c["mem_n"]:
            r, s = by[("refine", n)], by[("shards", n)]
            lines.append(f"| {n} | {r.get('latents_mib', float('nan')):.1f} | {r['peak_mib']:.0f} | "
                         f"{r['peak_mib'] - r['baseline_mib']:.0f} | "
                         f"{s['peak_mib']:.0f} | {s['peak_mib'] - s['baseline_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", choices=["fmnist", "toy2d"], default="fmnist",
                   help="fmnist: the Fashion-MNIST DCGAN-lite (the benchmark); toy2d: the 2D MLPs, "
                        "where per-step overhead is largest relative to the model")
    p.add_argument("--model", default="fmnist-sndcgan",
                   help="zoo model of the fmnist pair (default fmnist-sndcgan; '' for the synthetic pair)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=256, help="latents timed")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--gamma", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=21,
                   help="short repeats, many: the per-repeat ratios then see the same machine load")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mem-n", type=int, nargs="*", default=[1000, 10000, 50000])
    p.add_argument("--mem-steps", type=int, default=2)
    p.add_argument("--opt-ins", action="store_true", help="also time torch.compile / channels-last / bf16 / TF32")
    p.add_argument("--tag", default="", help="suffix of the result files (speed<tag>.json)")
    p.add_argument("--results-dir", default=str(RESULTS), help="where the result files go")
    p.add_argument("--tmp", default=None, help="folder for the shards of the memory runs")
    p.add_argument("--mem-child", choices=["refine", "shards"], help=argparse.SUPPRESS)
    p.add_argument("--mem-point", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    a.tmp = a.tmp or None
    if a.mem_child:
        memory_child(a, load_pair)
        return 0
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    g, d, desc = load_pair(device, a.seed, a.pair, a.model)
    z = g.prior.sample(a.n, generator=torch.Generator(device).manual_seed(a.seed + 1), device=device)
    print(f"pair: {desc}; device {device}", flush=True)
    timing = time_loops(g, d, z, a, device)
    base = timing.pop("_refined")
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
           "torch": torch.__version__, "pair": desc,
           "config": {k: v for k, v in vars(a).items() if not k.startswith("mem_child") and k != "tmp"},
           "timing": timing, "chunking": chunking_checks(g, d, z, a, device)}
    print(f"chunking: {res['chunking']}", flush=True)
    res["opt_ins"] = time_opt_ins(g, d, z, a, device, base) if a.opt_ins else {}
    res["memory"] = memory(a, __file__) if a.mem_n else []
    out = Path(a.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"speed{a.tag}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"speed{a.tag}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
