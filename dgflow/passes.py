"""Passes of the models over a batch, chunk by chunk: d(G(z)) with or without its gradient.

The one place where dgflow calls a generator and a critic. Every error names the model at
fault: a generator that returns no tensor, a critic whose output has the wrong shape, a
forward with no gradient path to ``z`` (run under ``torch.no_grad()`` or detached), non-finite
logits or gradients.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch

from ._checks import as_logits, check_batch_size, check_latents
from .models.modules import frozen

Model = Callable[[torch.Tensor], torch.Tensor]
#: default chunk of the no-grad pass :func:`logits` (in eval mode chunking never changes a result)
EVAL_CHUNK = 4096


def chunk_slices(n: int, size: int | None = None) -> list[slice]:
    """Slices cutting ``range(n)`` into consecutive chunks of ``size`` (``None``: one chunk)."""
    b = n if size is None else size
    return [slice(i, min(i + b, n)) for i in range(0, n, max(b, 1))]


def decode(generator: Optional[Model], z: torch.Tensor) -> torch.Tensor:
    """``generator(z)``, checked to be a tensor with one sample per latent (``None``: ``z`` itself)."""
    if generator is None:
        return z
    x = generator(z)
    if not isinstance(x, torch.Tensor):
        hint = " (it returns several values: pass e.g. lambda z: G(z)[0])" if isinstance(x, (tuple, list)) else ""
        raise TypeError(f"generator must return a torch.Tensor of samples, got {type(x).__name__}{hint}")
    if x.dim() == 0 or len(x) != len(z):
        raise ValueError(f"generator must return one sample per latent: {len(z)} latents gave output of "
                         f"shape {tuple(x.shape)}")
    return x


def logits_and_grad(generator: Optional[Model], critic: Model, z: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d(z) = critic(generator(z)) of shape (N,), its gradient w.r.t. z (same shape as z), and the
    decoded samples generator(z) (detached: what the pass saw, free to keep).

    Raises ``ValueError`` when d has no gradient path to z (a forward under ``torch.no_grad()``
    or ``torch.inference_mode()``, or an output detached from its input): that is no zero
    gradient, and treating it as one would turn the flow into pure noise.
    """
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        x = decode(generator, zg)
        d = as_logits(critic(x), len(z))
        g = torch.autograd.grad(d.sum(), zg, allow_unused=True)[0] if d.requires_grad else None
    if g is None and len(z):
        culprit = "generator" if generator is not None and not x.requires_grad else "critic"
        raise ValueError(f"{culprit}: its output has no gradient path to z (it ran under torch.no_grad() or "
                         "torch.inference_mode(), or detached its result, e.g. .detach(), .item(), numpy); "
                         "refinement needs d critic(generator(z)) / dz: remove the no_grad/detach from the "
                         f"{culprit}'s forward")
    return d.detach(), (torch.zeros_like(z) if g is None else g), x.detach()


def chunked_logits_and_grad(generator: Optional[Model], critic: Model, state: torch.Tensor,
                            chunks: list[slice], keep: int = 0
                            ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """:func:`logits_and_grad` over ``chunks`` of ``state``: logits in float32, the gradient, and the
    decoded samples of the first ``keep`` latents (``None`` if ``keep`` is 0), so that a stop rule
    comparing them needs no second decode."""
    if len(chunks) == 1:  # one chunk: no buffers to fill, no copies
        d, g, x = logits_and_grad(generator, critic, state)
        return d.float(), g, (x[:keep].clone() if keep > 0 else None)  # not the whole batch kept alive
    logits = torch.empty(len(state), device=state.device, dtype=torch.float32)
    grad = torch.empty_like(state)
    kept = []
    for s in chunks:
        d, g, x = logits_and_grad(generator, critic, state[s])
        logits[s] = d.float()
        grad[s] = g
        if s.start < keep:
            kept.append(x[: keep - s.start])
    return logits, grad, (torch.cat(kept) if kept else None)


@torch.no_grad()
def logits(generator: Optional[Model], critic: Model, z: torch.Tensor, batch_size: int | None = EVAL_CHUNK, *,
           eval_mode: bool | None = True, name: str = "critic") -> torch.Tensor:
    """d(G(z)) (``generator=None``: d(z)) of shape (N,) in float32, in chunks of ``batch_size``
    (``None``: one pass), without autograd.

    The models run frozen (:func:`dgflow.models.frozen`: eval mode unless ``eval_mode=False``,
    every flag restored afterwards); ``eval_mode=None`` leaves them as they are (for a caller
    that froze them itself). Raises ``FloatingPointError`` on non-finite logits, naming ``name``
    (the argument the samples came from).
    """
    out = torch.empty(len(z), device=z.device, dtype=torch.float32)
    with (nullcontext() if eval_mode is None else frozen(generator, critic, eval_mode=eval_mode)):
        for s in chunk_slices(len(z), batch_size):
            out[s] = as_logits(critic(decode(generator, z[s])), s.stop - s.start).float()
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        raise FloatingPointError(f"critic produced non-finite logits on {name} for {int(bad.sum())} of "
                                 f"{len(out)} samples (first: index {int(bad.nonzero()[0])})")
    return out


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every element of the tensors is finite, with one reduction per tensor: a sum is finite
    only if every term is (a NaN or inf term makes it NaN or inf); a sum that overflows is checked in full."""
    return all(bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all()) for t in tensors)


def check_finite(step: int, logits: torch.Tensor, grad: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` naming the step if any logit or logit gradient is not finite."""
    if all_finite(logits, grad):
        return
    ok_d = torch.isfinite(logits)
    ok = ok_d & torch.isfinite(grad).flatten(1).all(1)
    if not bool(ok.all()):
        what = "logits" if not bool(ok_d.all()) else "logit gradients"
        bad = int((~ok).sum())
        raise FloatingPointError(f"critic produced non-finite {what} at step {step} for {bad} of "
                                 f"{len(ok)} samples (first bad sample index {int((~ok).nonzero()[0])})")


def check_state(step: int, state: torch.Tensor, hint: str = "") -> None:
    """Raise ``FloatingPointError`` if the update of ``step`` left a non-finite latent."""
    if all_finite(state):
        return
    bad = ~torch.isfinite(state).flatten(1).all(1)
    if bool(bad.any()):
        raise FloatingPointError(f"the update of step {step} made the latents non-finite for {int(bad.sum())} "
                                 f"of {len(state)} samples (first: index {int(bad.nonzero()[0])}){hint}")


def generate(generator: Optional[Model], z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Decode latents under ``no_grad`` in chunks, models in eval mode (restored afterwards)."""
    z = check_latents(z)
    batch_size = check_batch_size(batch_size)
    with frozen(generator), torch.no_grad():
        if not len(z):
            return decode(generator, z)
        return torch.cat([decode(generator, z[s]) for s in chunk_slices(len(z), batch_size)])
