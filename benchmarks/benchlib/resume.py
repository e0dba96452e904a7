"""Resumable GAN training for the training scripts: checkpoints and the loss log of one run.

A checkpoint holds both networks, both optimisers, the run's data/latent generator, torch's global
generator, the run's settings and the time spent, so that a resumed run continues exactly where
the killed one stopped. The settings guard against resuming a different run; only ``iters`` may
differ (a run may be extended).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from dgflow.io import atomic_write


def run_paths(name: str, ckpt_dir: str | None, out: str | None, log: str | None) -> tuple[Path, Path, Path]:
    """(checkpoint file, final weights, loss log) of the training run ``name``: the given paths, else
    ``~/.cache/dgflow/train/<name>/last.pt``, ``dgflow/weights/<name>.safetensors`` and
    ``benchmarks/results/<name>_trainlog.csv``. Creates the checkpoint folder."""
    from benchlib import RESULTS, ROOT

    folder = Path(ckpt_dir or Path.home() / ".cache" / "dgflow" / "train" / name)
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / "last.pt", Path(out or ROOT / "dgflow" / "weights" / f"{name}.safetensors"),
            Path(log or RESULTS / f"{name}_trainlog.csv"))


def save_state(path: Path, it: int, g, d, opt_g, opt_d, rng: torch.Generator, run: dict,
               seconds: tuple[float, float]) -> None:
    """Everything needed to resume after generator iteration ``it``, written atomically;
    ``seconds`` is the (wall, CPU) time spent so far."""
    state = {"iter": it, "generator": g.state_dict(), "critic": d.state_dict(),
             "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng.get_state(),
             "torch_rng": torch.get_rng_state(), "run": run, "seconds": seconds[0], "cpu_seconds": seconds[1]}
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_state(path: Path, g, d, opt_g, opt_d, rng: torch.Generator, run: dict
               ) -> tuple[int, tuple[float, float]]:
    """Restore a checkpoint of the same run into the given objects; returns (iteration, (wall,
    CPU) seconds spent so far). Exits with a message if the checkpoint belongs to another run."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    diff = {k: (st["run"].get(k), v) for k, v in run.items() if k != "iters" and st["run"].get(k) != v}
    if diff:  # the same run may be extended to more iterations
        raise SystemExit(f"{path} belongs to a different run (checkpoint vs now: {diff}); "
                         "use --fresh or another --ckpt-dir")
    g.load_state_dict(st["generator"])
    d.load_state_dict(st["critic"])
    opt_g.load_state_dict(st["opt_g"])
    opt_d.load_state_dict(st["opt_d"])
    rng.set_state(st["rng"])
    torch.set_rng_state(st["torch_rng"])
    return int(st["iter"]), (float(st["seconds"]), float(st["cpu_seconds"]))


def trim_log(path: Path, upto: int, fields: Sequence[str]) -> None:
    """Rewrite the CSV loss log ``path`` (columns ``fields``, the first ``iter``) with its header
    and only the rows logged at or before iteration ``upto`` (the resume point); create it if absent."""
    rows = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["iter"]) <= upto]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fields)
        w.writeheader()
        w.writerows(rows)


def run_training(name: str, g, d, opts: tuple, rng: torch.Generator, run: dict, cfg, sample_real, sample_z, *,
                 state_path: Path, log_path: Path, fields: Sequence[str], fresh: bool, ckpt_every: int,
                 log_every: int, at_checkpoint: Callable[[int], tuple[list[str], str]] | None = None,
                 **train_kw) -> tuple[float, float]:
    """Train ``g`` against ``d`` by :func:`dgflow.training.train_gan` up to ``cfg.iters`` generator
    iterations, resuming from ``state_path`` unless ``fresh``, checkpointing every ``ckpt_every``.

    The CSV log ``log_path`` has columns ``fields``: iteration, critic and generator loss, wall and
    CPU seconds, then any extra columns, which ``at_checkpoint(iteration) -> (values, message)``
    fills at each checkpoint (e.g. a progress metric). Returns the (wall, CPU) seconds spent in all.
    """
    from dgflow.training import train_gan

    opt_g, opt_d = opts
    start, spent = 0, (0.0, 0.0)
    if state_path.is_file() and not fresh:
        start, spent = load_state(state_path, g, d, opt_g, opt_d, rng, run)
        print(f"resuming {name} from iteration {start} ({state_path})", flush=True)
    trim_log(log_path, start, fields)
    t0, c0 = time.perf_counter() - spent[0], time.process_time() - spent[1]

    def elapsed() -> tuple[float, float]:
        return time.perf_counter() - t0, time.process_time() - c0

    extra = len(fields) - 5
    iters = cfg.iters
    with open(log_path, "a", newline="") as fh:
        writer = csv.writer(fh)

        def on_log(it: int, l_d: float, l_g: float) -> None:
            writer.writerow([it, f"{l_d:.5f}", f"{l_g:.5f}", *(f"{s:.1f}" for s in elapsed()), *[""] * extra])
            fh.flush()

        while start < iters:
            stop = min(start + ckpt_every, iters)
            cfg.iters = stop
            train_gan(g, d, sample_real, sample_z, cfg, start_iter=start, optimizers=(opt_g, opt_d),
                      on_log=on_log, log_every=log_every, **train_kw)
            start = stop
            values, message = at_checkpoint(start) if at_checkpoint is not None else ([], "")
            if values:
                writer.writerow([start, "", "", *(f"{s:.1f}" for s in elapsed()), *values])
                fh.flush()
            save_state(state_path, start, g, d, opt_g, opt_d, rng, run, elapsed())
            print(f"{name}: {start}/{iters} generator iterations, wall/CPU s: %.0f / %.0f%s"
                  % (*elapsed(), message), flush=True)
    cfg.iters = iters
    return elapsed()
