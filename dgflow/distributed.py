"""Sharded, resumable, multi-process refinement of many samples (``dgflow refine`` under torchrun).

The N samples are cut into fixed chunks of ``chunk_size`` (the last one may be shorter). Chunk
``c`` draws its prior latents and then its flow noise from one ``torch.Generator`` seeded by
:func:`chunk_seed` ``(seed, c)``, so every chunk's result depends only on ``(seed, c,
chunk_size)``, the run's settings and the device type (CPU and CUDA generators draw different
streams): not on how many processes share the work or which of them refines it, and not on the
memory ``batch_size`` used inside :func:`dgflow.refine` (beyond the last bits of floating point
where a kernel's arithmetic depends on the batch size; on the CPU kernels tested, bitwise equal).

With ``torch.distributed`` initialised (torchrun), rank ``r`` of ``W`` refines the chunks
``c = r, r + W, r + 2W, ...``. Each chunk is written to ``chunk_<c>.npz`` through a temporary
file and ``os.replace``, so a shard on disk is always complete; its existence is the chunk's
done-marker. A restarted run skips the shards already there, so every sample is written
exactly once. Rank 0 writes ``run.json`` (the settings, checked on resume) before any chunk and
``manifest.json`` (every shard with its index range and sha256) at the end; no two processes
ever write the same file.

Shard contents (numpy arrays): ``index`` (global sample indices, int64), ``z`` (prior latents),
``z_refined`` (refined latents) and, when decoding, ``x`` (the samples G(z_refined), float32);
with a ``stop`` rule that keeps the step it fired at (``LogitMatch``), also ``stop_step`` per sample
(the step the chunk's flow ended at; -1 where the rule never fired and every step ran).
:func:`load_shards` reassembles them in index order. With ``png_dir`` each decoded image is also
saved as ``<index>.png``, and with ``text_vocab`` (a text model) each chunk's decoded strings as
``chunk_<c>.txt``, one per line in index order (both before the chunk's shard, so a chunk cut
short is redone whole).
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checks import check_int
from .flow import check_refine_kwargs, generate, refine
from .io import atomic_json, atomic_write, sha256_of
from .data.text import decode as decode_text
from .passes import chunk_slices
from .models.protocol import GaussianPrior

FORMAT_VERSION = 1
SPEC_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
#: refine() arguments that only change memory use or display, never the result
NON_RESULT_KWARGS = ("batch_size", "progress")


def chunk_seed(seed: int, chunk: int) -> int:
    """63-bit seed of chunk ``chunk`` of a run seeded ``seed`` (sha256 of both, so chunks' streams
    are unrelated however close their indices)."""
    digest = hashlib.sha256(f"dgflow-chunk:{int(seed)}:{int(chunk)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the fixed chunks covering ``range(n)``."""
    return [(s.start, s.stop) for s in chunk_slices(n, chunk_size)]


def shard_name(chunk: int) -> str:
    return f"chunk_{chunk:06d}.npz"


def text_name(chunk: int) -> str:
    return f"chunk_{chunk:06d}.txt"


def chunk_latents(prior: GaussianPrior, seed: int, chunk: int, size: int,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Generator]:
    """Prior latents of one chunk and the generator, advanced past them, that then draws its noise."""
    rng = torch.Generator(device=device).manual_seed(chunk_seed(seed, chunk))
    return prior.sample(size, generator=rng, device=device), rng


def _no_barrier() -> None:
    pass


def _world() -> tuple[int, int, Callable[[], None]]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, _no_barrier


def _jsonable(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if callable(getattr(value, "as_dict", None)):  # e.g. a LogitMatch stop rule: its settings
        return _jsonable(value.as_dict())
    return f"{type(value).__module__}.{getattr(value, '__qualname__', type(value).__qualname__)}"


def run_spec(n: int, chunk_size: int, seed: int, prior: GaussianPrior, refine_kwargs: Mapping,
             decode: bool, model: Mapping | None = None) -> dict:
    """The settings a run's output depends on; a resumed run must have the same ones."""
    kw = {k: v for k, v in refine_kwargs.items() if k not in NON_RESULT_KWARGS}
    return {"format": FORMAT_VERSION, "n": n, "chunk_size": chunk_size, "seed": seed,
            "z_shape": list(prior.shape), "decode": decode, "refine": _jsonable(kw),
            "model": _jsonable(dict(model or {}))}


def _check_or_write_spec(out: Path, spec: dict, write: bool) -> None:
    path = out / SPEC_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old != spec:
            diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
            raise ValueError(f"out_dir {out} holds a run with other settings (differs in {diff}: "
                             f"{ {k: old.get(k) for k in diff} } vs { {k: spec.get(k) for k in diff} }); "
                             "resume with the same settings or use a new output folder")
    elif write:
        atomic_json(path, spec)


def done_chunks(out_dir: str | os.PathLike, n_chunks: int) -> set[int]:
    """Chunks whose shard file exists (shards only ever appear complete)."""
    out = Path(out_dir)
    return {c for c in range(n_chunks) if (out / shard_name(c)).is_file()}


def to_uint8_images(x: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Images (N, C, H, W) with C in {1, 3} and values in ``value_range`` -> uint8 (N, H, W, C)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"png_dir: samples of shape {tuple(x.shape[1:])} are not images (C, H, W) "
                         "with C = 1 or 3; drop the PNG output for this model")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"png_range must be (low, high) with high > low, got {tuple(value_range)}")
    u = ((x.float() - lo) / (hi - lo) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return u.permute(0, 2, 3, 1).cpu().numpy()


def write_pngs(x: torch.Tensor, indices: np.ndarray, folder: Path,
               value_range: Sequence[float] = (-1.0, 1.0)) -> None:
    """One PNG per sample, named by its global index (a folder pytorch-fid can read)."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with the [fid] extra
        raise ImportError("png_dir needs Pillow: pip install pillow (or dgflow[fid])") from exc

    folder.mkdir(parents=True, exist_ok=True)
    for img, i in zip(to_uint8_images(x, value_range), indices):
        # written before the chunk's shard, which marks them done: a chunk cut short is redone whole
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{int(i):07d}.png")


@dataclass
class ShardRun:
    """What :func:`refine_to_shards` did (as seen by the calling rank)."""

    out_dir: Path
    n_chunks: int
    written: list[int] = field(default_factory=list)  # chunks this rank refined in this call
    complete: bool = False  # every chunk's shard exists (after the final barrier)
    manifest: Optional[Path] = None  # written by rank 0


def refine_to_shards(generator: Callable[[torch.Tensor], torch.Tensor],
                     critic: Callable[[torch.Tensor], torch.Tensor], prior: GaussianPrior, n: int,
                     out_dir: str | os.PathLike, *, chunk_size: int = 1000, seed: int = 0,
                     refine_kwargs: Mapping | None = None, decode: bool = True,
                     device: torch.device | str | None = None, png_dir: str | os.PathLike | None = None,
                     png_range: Sequence[float] = (-1.0, 1.0), text_vocab: str | None = None,
                     progress: bool = False,
                     max_chunks: int | None = None, model_info: Mapping | None = None,
                     autocast_dtype: torch.dtype | None = None, rank: int | None = None,
                     world_size: int | None = None) -> ShardRun:
    """Refine ``n`` prior samples chunk by chunk into ``out_dir``; resumable, rank-sharded.

    Args:
        generator, critic: as for :func:`dgflow.refine`, already on ``device``.
        prior: latent prior (``generator.prior`` of an :func:`dgflow.as_generator` model).
        n: number of samples; chunk_size: samples per shard (fixes the output, keep it on resume).
        seed: run seed; chunk ``c`` uses :func:`chunk_seed` ``(seed, c)``.
        refine_kwargs: keyword arguments of :func:`dgflow.refine` (steps, eta, gamma,
            divergence, solver, batch_size, ...), except ``generator_rng``. A ``stop`` rule
            sees each chunk as one batch (e.g. :class:`dgflow.stopping.LogitMatch` stops a chunk
            once its mean logit has closed the gap); ``run.json`` records its ``as_dict()``.
        decode: also store ``x = generator(z_refined)`` (decoded under ``no_grad``).
        device: where latents are drawn and refined (default: CPU).
        png_dir: also write each decoded image as ``<index>.png`` (values in ``png_range``).
        text_vocab: for a text generator (samples (N, L, V) over ``text_vocab``), also write each
            chunk's strings, decoded by argmax (:func:`dgflow.data.text.decode`), to ``chunk_<c>.txt``.
        progress: tqdm bar of this rank's samples (rank 0 only).
        max_chunks: stop after refining this many chunks in this process (a resumable stop).
        model_info: JSON-able description of the models, stored in ``run.json``, checked on resume.
        autocast_dtype: opt-in mixed precision (e.g. ``torch.bfloat16``) for the model passes.
        rank, world_size: share the work without ``torch.distributed`` (e.g. the jobs of a job
            array, one per rank, no barriers): every rank then rewrites the manifest from the
            shards it finds when it finishes; rerun any rank to refresh it once all are done.
            Default: the process group's rank and size, else 0 of 1.

    Under ``torch.distributed`` every rank must call this with the same arguments.
    """
    n = check_int(n, "n", 1)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    seed = check_int(seed, "seed")
    if max_chunks is not None:
        max_chunks = check_int(max_chunks, "max_chunks")
    kw = dict(refine_kwargs or {})
    for key in ("generator_rng", "return_trajectory", "return_info"):
        if key in kw:
            raise ValueError(f"refine_kwargs: {key} is not a setting of a sharded run"
                             + ("; it is set per chunk from (seed, chunk): pass seed=" if key == "generator_rng" else ""))
    check_refine_kwargs(kw)  # before anything is written: a typo must not leave a run.json behind
    if not isinstance(prior, GaussianPrior):
        raise TypeError(f"prior must be a dgflow GaussianPrior, got {type(prior).__name__}")
    decode = bool(decode) and generator is not None
    for name, value in (("png_dir", png_dir), ("text_vocab", text_vocab)):
        if value is not None and not decode:
            raise ValueError(f"{name} needs decoded samples (decode=True and a generator)")
    device = torch.device("cpu" if device is None else device)
    if png_dir is not None or text_vocab is not None:  # samples of the wrong kind: refused before any write
        probe = generate(generator, torch.zeros((1, *prior.shape), device=device))
        if png_dir is not None:
            to_uint8_images(probe, png_range)
        if text_vocab is not None:
            decode_text(probe, text_vocab)
    out = Path(out_dir)
    coordinated = rank is None and world_size is None  # one process, or a torch.distributed group
    if coordinated:
        rank, world, barrier = _world()
    elif rank is None or world_size is None:
        raise ValueError("rank and world_size must be given together")
    else:
        world, rank, barrier = check_int(world_size, "world_size", 1), check_int(rank, "rank"), _no_barrier
        if rank >= world:
            raise ValueError(f"rank must be < world_size={world}, got {rank}")
    lead = rank == 0 or not coordinated  # writes run.json and manifest.json
    bounds = chunk_bounds(n, chunk_size)
    spec = run_spec(n, chunk_size, seed, prior, kw, decode, model_info)
    if autocast_dtype is not None:
        spec["autocast"] = str(autocast_dtype)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    if coordinated and rank == 0:  # temporary files of a killed run; nobody is writing now
        for path in out.glob(".chunk_*.tmp"):
            path.unlink()
    barrier()
    _check_or_write_spec(out, spec, lead)
    barrier()

    done = done_chunks(out, len(bounds))
    todo = [c for c in range(rank, len(bounds), world) if c not in done]
    if max_chunks is not None:
        todo = todo[:max_chunks]
    amp = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else nullcontext())
    result = ShardRun(out, len(bounds))
    bar = tqdm(total=sum(bounds[c][1] - bounds[c][0] for c in todo), unit="sample",
               disable=not progress or rank != 0, desc=f"dgflow refine [rank {rank}/{world}]")
    for c in todo:
        start, stop = bounds[c]
        z, rng = chunk_latents(prior, seed, c, stop - start, device)
        with amp:
            # RunInfo only where a stop rule's step is read back: it adds per-step diagnostics to the loop
            if kw.get("stop") is not None:
                zr, info = refine(generator, critic, z, generator_rng=rng, return_info=True, **kw)
            else:
                zr = refine(generator, critic, z, generator_rng=rng, **kw)
            x = generate(generator, zr, kw.get("batch_size")) if decode else None
        arrays = {"index": np.arange(start, stop, dtype=np.int64), "z": z.cpu().numpy(),
                  "z_refined": zr.cpu().numpy()}
        if kw.get("stop") is not None:  # each chunk is one batch of the rule: where it stopped
            fired = info.stop_step
            arrays["stop_step"] = np.full(stop - start, -1 if fired is None else fired, dtype=np.int64)
        if x is not None:
            arrays["x"] = x.float().cpu().numpy()
            if png_dir is not None:
                write_pngs(x, arrays["index"], Path(png_dir), png_range)
            if text_vocab is not None:
                lines = "".join(line + "\n" for line in decode_text(x, text_vocab)).encode("utf-8")
                atomic_write(out / text_name(c), lambda fh, b=lines: fh.write(b))
        atomic_write(out / shard_name(c), lambda fh, a=arrays: np.savez(fh, **a))
        result.written.append(c)
        bar.update(stop - start)
    bar.close()
    barrier()
    done = done_chunks(out, len(bounds))
    result.complete = len(done) == len(bounds)
    if lead:
        result.manifest = write_manifest(out, spec, bounds, done)
    barrier()
    return result


def write_manifest(out: Path, spec: dict, bounds: list[tuple[int, int]], done: set[int]) -> Path:
    """Rewrite ``manifest.json`` atomically: the finished shards, their ranges and sha256."""
    shards = [{"chunk": c, "file": shard_name(c), "start": bounds[c][0], "stop": bounds[c][1],
               "sha256": sha256_of(out / shard_name(c))} for c in sorted(done)]
    path = out / MANIFEST_FILE
    atomic_json(path, {"spec": spec, "n_chunks": len(bounds), "complete": len(done) == len(bounds),
                        "missing": [c for c in range(len(bounds)) if c not in done], "shards": shards})
    return path


def load_shards(out_dir: str | os.PathLike, keys: Sequence[str] = ("z", "z_refined", "x"),
                verify: bool = True) -> dict[str, np.ndarray]:
    """Concatenate a finished run's shards in sample order.

    Checks that the manifest says complete, that every sample index 0..n-1 appears exactly
    once and (``verify``) each shard's sha256. Keys absent from the shards are skipped.
    """
    out = Path(out_dir)
    path = out / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has not finished (rerun the same command)")
    manifest = json.loads(path.read_text())
    if not manifest["complete"]:
        raise ValueError(f"{out}: run incomplete, chunks {manifest['missing']} missing; rerun to resume")
    parts: dict[str, list[np.ndarray]] = {}
    seen = np.zeros(manifest["spec"]["n"], dtype=np.int64)
    for entry in manifest["shards"]:
        file = out / entry["file"]
        if verify and sha256_of(file) != entry["sha256"]:
            raise ValueError(f"{file}: sha256 differs from the manifest; the shard was modified")
        with np.load(file) as data:
            np.add.at(seen, data["index"], 1)
            for k in keys:
                if k in data.files:
                    parts.setdefault(k, []).append(data[k])
    if not (seen == 1).all():
        raise ValueError(f"{out}: sample indices not covered exactly once "
                         f"(missing {int((seen == 0).sum())}, duplicated {int((seen > 1).sum())})")
    return {k: np.concatenate(v) for k, v in parts.items()}
