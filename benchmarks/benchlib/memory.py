"""Peak memory of refine() and of the sharded path, one fresh process per point (for speed.py).

On CPU the peak is the peak RSS, VmHWM of /proc/self/status, reset after model loading and a
warm-up so that import-time transients do not mask it. It is the counter behind ``ru_maxrss``,
which in an exec'd child also reports the parent's RSS at fork, so ``ru_maxrss`` is recorded but
not used. On CUDA it is ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import dgflow


def _rss_bytes(field: str) -> int | None:
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so only what follows is measured."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(a, load_pair) -> None:
    """Run one memory point and print a JSON line: baseline and peak memory in MiB."""
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    g, d, _ = load_pair(device, a.seed, a.pair, a.model)
    kw = {"steps": a.mem_steps, "eta": a.eta, "gamma": a.gamma, "batch_size": a.batch_size}
    warm = g.prior.sample(a.batch_size, device=device)
    dgflow.refine(g, d, warm, **kw)
    dgflow.generate(g, warm, a.batch_size)
    del warm
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    elif _reset_peak_rss() and _rss_bytes("VmRSS") is not None:
        base = _rss_bytes("VmRSS")
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if a.mem_child == "refine":
        z = g.prior.sample(a.mem_point, generator=torch.Generator(device).manual_seed(a.seed), device=device)
        dgflow.refine(g, d, z, generator_rng=a.seed, **kw)
    else:
        from dgflow.distributed import refine_to_shards

        with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
            refine_to_shards(g, d, g.prior, a.mem_point, tmp, chunk_size=a.batch_size, seed=a.seed,
                             refine_kwargs=kw, device=device)
    if cuda:
        peak, measure = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    elif _rss_bytes("VmHWM") is not None:
        peak, measure = _rss_bytes("VmHWM"), "peak RSS (VmHWM, reset after warm-up)"
    else:
        peak, measure = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"
    print(json.dumps({"mode": a.mem_child, "n": a.mem_point, "baseline_mib": base / 2 ** 20,
                      "latents_mib": a.mem_point * g.prior.dim * 4 / 2 ** 20,
                      "peak_mib": peak / 2 ** 20, "seconds": time.perf_counter() - t0, "measure": measure,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(a, script: str) -> list[dict]:
    """Every (mode, N) point in a fresh ``python script --mem-child ...`` process."""
    common = ["--pair", a.pair, "--model", a.model, "--device", a.device, "--threads", str(a.threads),
              "--batch-size", str(a.batch_size), "--mem-steps", str(a.mem_steps), "--seed", str(a.seed),
              "--tmp", a.tmp or ""]
    rows = []
    for mode in ("refine", "shards"):
        for n in a.mem_n:
            proc = subprocess.run([sys.executable, script, *common, "--mem-child", mode, "--mem-point", str(n)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"memory point {mode} N={n} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"memory: {rows[-1]}", flush=True)
    return rows
