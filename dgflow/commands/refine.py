"""`dgflow refine`: refine N samples of a zoo model or of your own models into resumable shards.

    dgflow refine --model NAME --n 50000 --steps 25 --out DIR [--png DIR/png]
    dgflow refine --generator mypkg.nets:make_g --critic mypkg.nets:make_d --z-dim 128 --n 1000 --out DIR
    torchrun --nproc_per_node 4 -m dgflow.cli refine -n 50000 ...   # same output, 4 processes
    dgflow refine --model NAME -n 10000 --steps 100 --stop-real heldout.npy --out DIR   # LogitMatch stop

``--generator``/``--critic`` take ``module:attr`` (or ``path/to/file.py:attr``; ``attr`` may be
dotted). The object found there is used as follows: an ``nn.Module`` instance is the model; a
class, or any callable that can be called with no arguments, is a *factory* and is called
once to build the model (load your weights inside it); any other callable (one that needs an
argument, such as a function ``z -> x``) is the model itself.

Output (see :mod:`dgflow.distributed`): ``DIR/chunk_<c>.npz`` shards with ``index``, ``z``,
``z_refined`` and ``x``, ``DIR/run.json`` and ``DIR/manifest.json``. Rerunning the same command
resumes an interrupted run; the result does not depend on the number of processes.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..critics import CONVENTIONS, as_logit
from ..divergences import WEIGHTS
from ..flow import DATA_STEPS, DEFAULT_STEPS, resolve_steps

#: refine() arguments the command line sets; unset ones come from the zoo entry, else refine()
FLOW_ARGS = ("steps", "eta", "gamma", "divergence", "clip")


def refine_defaults() -> dict:
    """refine()'s own defaults of :data:`FLOW_ARGS`."""
    from ..flow import refine_defaults as defaults

    return defaults(*FLOW_ARGS)


def flow_overrides(args: argparse.Namespace, keys: tuple[str, ...] = FLOW_ARGS) -> dict:
    """The flow options given on the command line (``--clip none`` is an explicit ``clip=None``)."""
    return {k: None if getattr(args, k) == "none" else getattr(args, k) for k in keys
            if getattr(args, k) is not None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refine", help="refine N samples of a model into resumable .npz shards",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("model (either --model, or --generator and --critic)")
    src.add_argument("--model", help="zoo model name (see `dgflow zoo list`)")
    src.add_argument("--zoo", help="zoo file to resolve --model in (default: the shipped one)")
    src.add_argument("--generator", metavar="MODULE:CALLABLE", help="your generator, or a factory of it")
    src.add_argument("--critic", metavar="MODULE:CALLABLE", help="your critic (logit, larger on data)")
    src.add_argument("--z-dim", type=int, help="latent size of --generator (default: its z_dim attribute)")
    src.add_argument("--critic-convention", choices=sorted(CONVENTIONS),
                     help="what --critic outputs (default logit: larger on data; 'prob' a probability of "
                          "being real, 'neg' a critic larger on generated samples); see dgflow.critics")
    src.add_argument("--temperature", type=float,
                     help="divide --critic's logit by this (> 0; for a WGAN critic of arbitrary scale)")
    p.add_argument("-n", "--n", "--num-samples", dest="n", type=int, required=True,
                   help="number of samples (under torchrun write -n or --num-samples: torchrun's own "
                        "parser takes --n for a prefix of its --nnodes)")
    p.add_argument("--out", required=True, help="output folder of the shards (resumed if it exists)")
    defaults = ", ".join(f"{k} {v}" for k, v in refine_defaults().items() if k != "steps")
    defaults = f"steps {DEFAULT_STEPS} ({DATA_STEPS} with --real), {defaults}"
    flow = p.add_argument_group(f"flow (default: the zoo entry's settings, else dgflow.refine's: {defaults})")
    flow.add_argument("--steps", type=int)
    flow.add_argument("--eta", type=_eta, help="step size, or 'auto' (see dgflow.refine)")
    flow.add_argument("--gamma", type=float)
    flow.add_argument("--divergence", choices=sorted(WEIGHTS))
    flow.add_argument("--clip", type=_clip, help="cap on each sample's drift, in multiples of the first "
                                                "step's median drift length, or 'none'")
    flow.add_argument("--real", metavar="FILE",
                      help="held-out real samples (.npy, .npz with one array or 'x', or .pt tensor) in the "
                           "generator's output space: each chunk then stops by dgflow.stopping.DataMatch "
                           "(refine's default rule with real data: the energy distance to them every 5 steps, images "
                           "compared through a fixed untrained CNN, the step lengthened while it falls and the "
                           "flow sent back to the best state at a shorter step when it does not, best "
                           f"state kept; --steps is the budget of gradient passes, default {DATA_STEPS} even "
                           "for a zoo model)")
    flow.add_argument("--no-auto-stop", action="store_true",
                      help="run exactly --steps steps (refine's stop=None, the paper's scheme), not refine's "
                           "default stop rule (which leaves a chunk unchanged when the critic is at chance)")
    flow.add_argument("--stop-real", metavar="FILE",
                      help="held-out real samples (.npy, .npz with one array or 'x', or .pt tensor) to stop "
                           "each chunk early by dgflow.stopping.LogitMatch: once its mean logit has closed "
                           "--stop-fraction of the gap to theirs (--steps is then the maximum)")
    flow.add_argument("--stop-fraction", type=float, default=None,
                      help="share of the logit gap to close before stopping (default: LogitMatch's, 0.5)")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    run.add_argument("--chunk-size", type=int, default=1000,
                     help="samples per shard; fixes the output, keep it when resuming (default 1000)")
    run.add_argument("--batch-size", type=int, help="forward/backward batch inside a chunk (memory only)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available; under torchrun "
                                      "each rank takes cuda:LOCAL_RANK)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads of each process (torch.set_num_threads; default: torch's, usually the "
                          "number of cores; on a loaded machine 1 can be much faster)")
    run.add_argument("--no-decode", action="store_true", help="store latents only, no x")
    run.add_argument("--png", metavar="DIR", help="also write every decoded image as DIR/<index>.png "
                                                  "(a folder pytorch-fid reads)")
    run.add_argument("--text-vocab", metavar="CHARS",
                     help="a text generator's vocabulary (one character per index of its (N, L, V) output): "
                          "also write each chunk's strings, decoded by argmax, to DIR/chunk_<c>.txt "
                          "(default for a zoo text model: its entry's)")
    run.add_argument("--png-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                     help="value range of the images mapped to 0..255 (default -1 1)")
    run.add_argument("--bf16", action="store_true", help="opt-in bfloat16 autocast of the model passes")
    run.add_argument("--compile", action="store_true", help="opt-in torch.compile of both models")
    run.add_argument("--channels-last", action="store_true",
                     help="opt-in channels-last memory format of the models' conv weights (faster convolutions "
                          "on CPU; results change at float rounding level)")
    run.add_argument("--stop-after", type=int, metavar="K", help="stop after K chunks per process "
                                                                 "(rerun to resume)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def _eta(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', got {value!r}") from None


def _clip(value: str) -> float | str:
    if value.lower() == "none":
        return "none"  # explicit "no cap", distinct from the option being absent
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'none', got {value!r}") from None


def load_samples(path: str, option: str = "--stop-real") -> torch.Tensor:
    """Samples (M, ...) from ``.npy``, ``.npz`` (its only array, or ``x``) or ``.pt`` (a tensor)."""
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"dgflow refine: {option}: no such file {path}")
    if file.suffix == ".pt":
        data = torch.load(file, map_location="cpu", weights_only=True)
    elif file.suffix in (".npy", ".npz"):
        data = np.load(file)
        if file.suffix == ".npz":
            names = data.files
            if "x" not in names and len(names) != 1:
                raise SystemExit(f"dgflow refine: {option} {path}: holds arrays {names}; "
                                 "give one array or one named 'x'")
            data = data["x" if "x" in names else names[0]]
        data = torch.from_numpy(np.ascontiguousarray(data))
    else:
        raise SystemExit(f"dgflow refine: {option} {path}: use a .npy, .npz or .pt file")
    if not isinstance(data, torch.Tensor) or data.dim() < 1 or len(data) == 0 or not data.is_floating_point():
        raise SystemExit(f"dgflow refine: {option} {path}: expected a non-empty float array (M, ...) "
                         "of real samples")
    return data.float()


def stop_rule(args: argparse.Namespace, generator, critic, device: torch.device):
    """The stop rule of the command line: ``--real`` (DataMatch), ``--stop-real`` / ``--stop-fraction``
    (LogitMatch), ``--no-auto-stop`` (None), or ``"auto"`` (refine's default without real data)."""
    from ..stopping import DataMatch, LogitMatch

    given = [o for o, v in (("--real", args.real), ("--stop-real", args.stop_real),
                            ("--no-auto-stop", args.no_auto_stop)) if v]
    if len(given) > 1:
        raise SystemExit(f"dgflow refine: {' and '.join(given)} are alternatives: give one")
    if args.stop_fraction is not None and args.stop_real is None:
        raise SystemExit("dgflow refine: --stop-fraction needs --stop-real FILE")
    if args.no_auto_stop:
        return None
    if args.real is not None:
        try:
            return DataMatch(load_samples(args.real, "--real").to(device), generator, critic,
                             batch_size=args.batch_size)
        except ValueError as exc:
            raise SystemExit(f"dgflow refine: --real: {exc}") from exc
    if args.stop_real is None:
        return "auto"
    real = load_samples(args.stop_real).to(device)
    kw = {} if args.stop_fraction is None else {"fraction": args.stop_fraction}
    try:
        return LogitMatch(critic, real, batch_size=args.batch_size, **kw)
    except (ValueError, RuntimeError) as exc:
        raise SystemExit(f"dgflow refine: --stop-real/--stop-fraction: {exc}") from exc


def load_object(spec: str, what: str) -> object:
    """``module:attr`` or ``file.py:attr`` (``attr`` may be dotted) -> the object."""
    if ":" not in spec:
        raise SystemExit(f"dgflow refine: --{what} must look like module:callable or file.py:callable, "
                         f"got {spec!r}")
    target, attr = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            mod_spec = importlib.util.spec_from_file_location(f"_dgflow_user_{what}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, FileNotFoundError) as exc:
        raise SystemExit(f"dgflow refine: cannot load --{what} {spec!r}: {exc}") from exc
    return obj


def _is_factory(obj: object) -> bool:
    if isinstance(obj, type):
        return True
    try:
        inspect.signature(obj).bind()
    except TypeError:
        return False
    except ValueError:  # no signature (builtins): treat as the model
        return False
    return True


def as_model(obj: object, what: str) -> object:
    """An nn.Module is the model; a class or zero-argument callable is a factory; else the model."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SystemExit(f"dgflow refine: --{what} is a {type(obj).__name__}, not a model or factory")
    if _is_factory(obj):
        model = obj()
        if not callable(model):
            raise SystemExit(f"dgflow refine: the --{what} factory returned a {type(model).__name__}, "
                             "not a callable model")
        return model
    return obj


def init_distributed(device: str | None) -> tuple[torch.device, bool]:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise SystemExit(f"dgflow refine: --device {device}: no CUDA device is available here "
                         "(torch.cuda.is_available() is False); use --device cpu")
    if device is not None:
        try:
            torch.device(device)
        except RuntimeError as exc:
            raise SystemExit(f"dgflow refine: --device {device}: {exc}") from None
    if world <= 1:
        return torch.device(device or ("cuda" if want_cuda else "cpu")), False
    dist = torch.distributed
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
        return dev, True
    return dev, False


def load_models(args: argparse.Namespace, device: torch.device):
    """(generator, critic, prior, refine defaults, description) from --model or --generator/--critic."""
    from ..io import state_digest
    from ..models import as_generator

    if args.model:
        if args.generator or args.critic:
            raise SystemExit("dgflow refine: give either --model or --generator/--critic, not both")
        if args.critic_convention is not None or args.temperature is not None:
            raise SystemExit("dgflow refine: --critic-convention/--temperature apply to --critic; a zoo entry "
                             "sets its critic's own (see `dgflow zoo show NAME`)")
        from .. import zoo

        try:
            m = zoo.load(args.model, zoo=args.zoo, device=device)
        except zoo.ZooError as exc:
            raise SystemExit(f"dgflow refine: --model {args.model}: {exc}") from exc
        from ..data.text import vocab_of_entry

        files = m.entry["weights"] if isinstance(m.entry["weights"], list) else [m.entry["weights"]]
        info = {"model": args.model, "sha256": [f["sha256"] for f in files]}
        vocab = vocab_of_entry(m.entry)
        return m.generator, m.critic, m.prior, dict(m.refine_kwargs), info | ({"text_vocab": vocab} if vocab else {})
    if not (args.generator and args.critic):
        raise SystemExit("dgflow refine: give --model NAME, or both --generator and --critic")
    gen = as_model(load_object(args.generator, "generator"), "generator")
    critic = as_model(load_object(args.critic, "critic"), "critic")
    for m in (gen, critic):
        if isinstance(m, nn.Module):
            m.to(device)
    try:
        gen = as_generator(gen, args.z_dim)
    except ValueError as exc:
        raise SystemExit(f"dgflow refine: --z-dim: {exc}") from exc
    convention = args.critic_convention or "logit"
    temperature = 1.0 if args.temperature is None else args.temperature
    try:
        critic = as_logit(critic, convention, temperature)
    except ValueError as exc:
        raise SystemExit(f"dgflow refine: --critic-convention/--temperature: {exc}") from exc
    # the models' state, not just their names: a resume with a changed checkpoint is refused
    return gen, critic, gen.prior, {}, {"generator": args.generator, "critic": args.critic,
                                       "z_dim": list(gen.prior.shape), "convention": convention,
                                       "temperature": temperature, "state_sha256": state_digest(gen, critic)}


def refine_kwargs(args: argparse.Namespace, model_defaults: dict) -> dict:
    """Command line over the model's settings over refine()'s defaults."""
    kw = {**refine_defaults(), **model_defaults, **flow_overrides(args)}
    if args.batch_size is not None:
        kw["batch_size"] = args.batch_size
    return kw


def main(args: argparse.Namespace) -> int:
    from ..distributed import refine_to_shards

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"dgflow refine: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device, owns_group = init_distributed(args.device)
    try:
        gen, critic, prior, defaults, info = load_models(args, device)
        kw = refine_kwargs(args, defaults)
        if args.text_vocab is not None:  # else a zoo text model's own (load_models), recorded in run.json
            info["text_vocab"] = args.text_vocab
        vocab = None if args.no_decode else info.get("text_vocab")
        kw["stop"] = stop_rule(args, gen, critic, device)
        # with --real the data end the flow: refine(real=...)'s budget, not a zoo entry's fixed length
        steps = args.steps if args.real is not None else kw.get("steps")
        kw["steps"] = resolve_steps(steps, "auto", args.real)
        if args.channels_last:
            info["channels_last"] = True
            for m in (gen, critic):
                if isinstance(m, nn.Module):
                    m.to(memory_format=torch.channels_last)
        if args.compile:
            info["compile"] = True
            gen, critic = torch.compile(gen), torch.compile(critic)
        try:
            res = refine_to_shards(gen, critic, prior, args.n, args.out, chunk_size=args.chunk_size,
                                   seed=args.seed, refine_kwargs=kw, decode=not args.no_decode,
                                   device=device, png_dir=args.png, png_range=args.png_range,
                                   text_vocab=vocab,
                                   progress=not args.no_progress, max_chunks=args.stop_after,
                                   model_info=info, autocast_dtype=torch.bfloat16 if args.bf16 else None)
        except (ValueError, TypeError, FloatingPointError) as exc:
            raise SystemExit(f"dgflow refine: {exc}") from exc
        except OSError as exc:  # --out (or --png) is a file, is not writable, the disk is full, ...
            where = exc.filename or args.out
            raise SystemExit(f"dgflow refine: cannot write {where}: {exc.strerror or exc}") from exc
        if res.manifest is not None:
            state = "complete" if res.complete else "incomplete: rerun the same command to resume"
            print(f"dgflow refine: {res.n_chunks} chunks of {args.chunk_size} in {args.out} ({state}); "
                  f"manifest {res.manifest}", file=sys.stderr)
        return 0
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()
