"""Argument validation shared by refine() and the baselines: every error names the argument."""
from __future__ import annotations

import math
import numbers

import torch


def check_latents(z: object, name: str = "z") -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension first, shape (N, ...); got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if not bool(torch.isfinite(z).all()):
        bad = int((~torch.isfinite(z)).flatten(1).any(1).sum())
        raise ValueError(f"{name} contains non-finite values (NaN or inf) in {bad} of {len(z)} samples")
    return z


def check_int(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value: object, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonnegative and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def check_batch_size(batch_size: object, name: str = "batch_size") -> int | None:
    return None if batch_size is None else check_int(batch_size, name, minimum=1)


def make_rng(rng: torch.Generator | int | None, device: torch.device, name: str = "generator_rng"
             ) -> torch.Generator | None:
    """None (global RNG), an int seed, or a torch.Generator on ``device``'s type."""
    if rng is None:
        return None
    if isinstance(rng, torch.Generator):
        if rng.device.type != device.type:
            raise ValueError(f"{name} lives on {rng.device} but z is on {device}; "
                             f"create it with torch.Generator(device=z.device)")
        return rng
    seed = check_int(rng, name)
    return torch.Generator(device=device).manual_seed(seed)


def as_logits(out: object, n: int, name: str = "critic") -> torch.Tensor:
    """Check a critic's output: a tensor of shape (n,) or (n, 1); returns shape (n,)."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor of logits, got {type(out).__name__}")
    if out.shape == (n, 1):
        return out[:, 0]
    if out.shape != (n,):
        raise ValueError(f"{name} must return logits of shape (N,) or (N, 1) with N={n}, "
                         f"got shape {tuple(out.shape)}")
    return out


def check_models(generator: object, critic: object) -> None:
    """``generator`` must be callable or None (identity), ``critic`` callable."""
    if generator is not None and not callable(generator):
        raise TypeError(f"generator must be callable (z -> x) or None, got {type(generator).__name__}")
    if not callable(critic):
        raise TypeError(f"critic must be callable (x -> logits), got {type(critic).__name__}")
