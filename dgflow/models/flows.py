"""Normalizing flows as dgflow generators: one flat N(0, I) latent, mapped by the flow's sampling pass.

A multiscale flow (RealNVP, Glow) samples x by drawing one latent per level from a learned
diagonal Gaussian base, z_i ~ N(loc_i, scale_i^2), and running its forward (sampling) direction
on the list [z_0, ..., z_{L-1}]. :class:`FlowGenerator` turns that into what :func:`dgflow.refine`
moves: a flat vector u of ``z_dim = sum_i prod(shape_i)`` standard normal numbers,

    z_i = loc_i + T * scale_i * u_i,     x = flow(z_0, ..., z_{L-1}),

with u_i the i-th slice of u reshaped to the level's shape and T the sampling temperature
(normflows' convention: T multiplies the base's standard deviation, T = 1 is the model, T < 1 the
usual "reduced temperature" samples). Under the model u ~ N(0, I) exactly, so the N(0, I) prior
that the rest of dgflow assumes holds, and :meth:`FlowGenerator.encode` inverts the map:
u_i = (z_i - loc_i) / (T scale_i) for the z_i of the flow's inverse pass.

Two kinds of flow work without subclassing:

* any ``normflows.MultiscaleFlow`` (or single-level ``normflows.NormalizingFlow``) whose base
  distributions are unconditional ``DiagGaussian`` or ``GlowBase``. Beware that normflows'
  ``flow(x)`` returns the negative log-likelihood, not a sample: the adapter calls
  ``forward_and_log_det`` (sampling) and ``inverse_and_log_det`` (encoding). Class-conditional
  bases are refused with an error (fix a class and expose the flow through the protocol below).
* any object implementing :class:`MultiscaleFlowLike` (``level_shapes``, ``base_loc_scale()``,
  ``decode(zs)`` and optionally ``encode(x)``): the small protocol for other libraries' flows.

ActNorm layers initialise themselves from the first batch they see (Kingma & Dhariwal 2018);
doing that on a batch of latents during refinement would silently change the model. The adapter
never initialises: it refuses to run a flow with an uninitialised ActNorm (any submodule with a
zero ``data_dep_init_done`` buffer) and says how to initialise it: load trained weights, or call
:func:`initialize_actnorm` with a batch of data.
"""
from __future__ import annotations

import math
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .protocol import GaussianPrior

Shape = tuple[int, ...]


@runtime_checkable
class MultiscaleFlowLike(Protocol):
    """What a flow of another library provides to be adapted by :class:`FlowGenerator`.

    * ``level_shapes``: the shape (without batch dimension) of each level's latent z_i, in the
      order ``decode`` takes them;
    * ``base_loc_scale()``: a list with one ``(loc_i, scale_i)`` pair per level, tensors
      broadcastable to ``(1, *level_shapes[i])``, scale_i > 0: the base distribution is
      z_i ~ N(loc_i, scale_i^2) (unconditional; compute them with gradients allowed, they are
      the model's parameters);
    * ``decode(zs)``: the sampling direction, list of (N, *shape_i) tensors -> x (N, ...);
    * optionally ``encode(x)``: the inverse, x -> list of z_i (needed only by
      :meth:`FlowGenerator.encode`).

    Make it an ``nn.Module`` (or give it one as attribute ``module``) so that ``.to()``, eval mode
    and :func:`dgflow.refine`'s freezing reach its parameters.
    """

    level_shapes: Sequence[Shape]

    def base_loc_scale(self) -> list[tuple[torch.Tensor, torch.Tensor]]: ...

    def decode(self, zs: list[torch.Tensor]) -> torch.Tensor: ...


class _NormflowsView:
    """:class:`MultiscaleFlowLike` for a normflows ``MultiscaleFlow`` / ``NormalizingFlow``
    (reads the flow's modules each call; holds no state of its own)."""

    def __init__(self, flow: nn.Module):
        self.flow = flow
        self.multiscale = isinstance(flow.q0, nn.ModuleList)
        self.bases = list(flow.q0) if self.multiscale else [flow.q0]
        self.level_shapes = [self._shape(i, q) for i, q in enumerate(self.bases)]

    @staticmethod
    def _kind(q: nn.Module) -> str:
        import normflows as nf

        if isinstance(q, nf.distributions.GlowBase):
            return "glow"
        if isinstance(q, nf.distributions.DiagGaussian):
            return "diag"
        return "other"

    def _shape(self, i: int, q: nn.Module) -> Shape:
        kind = self._kind(q)
        if kind == "other":
            raise TypeError(f"flow: base distribution q0[{i}] is a {type(q).__name__}; FlowGenerator supports "
                            "normflows' unconditional DiagGaussian and GlowBase (a class-conditional or other "
                            "base: wrap the flow in an object implementing dgflow.models.flows.MultiscaleFlowLike)")
        if kind == "glow" and q.class_cond:
            raise ValueError(f"flow: base distribution q0[{i}] is class-conditional (GlowBase(num_classes="
                             f"{q.num_classes})); refine needs an unconditional prior: fix a class and expose "
                             "the flow through dgflow.models.flows.MultiscaleFlowLike")
        return tuple(int(s) for s in q.shape)

    def base_loc_scale(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for q in self.bases:
            if self._kind(q) == "glow":   # GlowBase's reparametrisation of its per-channel loc and log scale
                loc = q.loc * torch.exp(q.loc_logs * q.logscale_factor)
                log_scale = q.log_scale * torch.exp(q.log_scale_logs * q.logscale_factor)
            else:
                loc, log_scale = q.loc, q.log_scale
            out.append((loc, log_scale.exp()))
        return out

    def decode(self, zs: list[torch.Tensor]) -> torch.Tensor:
        return self.flow.forward_and_log_det(zs if self.multiscale else zs[0])[0]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.flow.inverse_and_log_det(x)[0]
        return list(z) if self.multiscale else [z]


def _is_normflows(flow: Any) -> bool:
    try:
        import normflows as nf
    except ImportError:
        return False
    return isinstance(flow, (nf.MultiscaleFlow, nf.NormalizingFlow))


def _view(flow: Any) -> Any:
    if _is_normflows(flow):
        return _NormflowsView(flow)
    missing = [a for a in ("level_shapes", "base_loc_scale", "decode") if not hasattr(flow, a)]
    if missing:
        raise TypeError(f"flow: a {type(flow).__name__} is neither a normflows MultiscaleFlow/NormalizingFlow "
                        f"nor a dgflow.models.flows.MultiscaleFlowLike (missing {', '.join(missing)})")
    return flow


def uninitialized_actnorms(module: Any) -> list[str]:
    """Names of the submodules of ``module`` with a data-dependent init still pending (normflows'
    ActNorm and anything else with a zero ``data_dep_init_done`` buffer)."""
    modules = module.named_modules() if isinstance(module, nn.Module) else []
    return [name or "<flow>" for name, m in modules
            if isinstance(getattr(m, "data_dep_init_done", None), torch.Tensor) and not float(m.data_dep_init_done) > 0]


@torch.no_grad()
def initialize_actnorm(flow: nn.Module, x: torch.Tensor) -> nn.Module:
    """Initialise the ActNorm layers of a normflows flow from a batch of *data* ``x`` (one inverse
    pass, as in training: each layer then outputs zero mean, unit variance on that batch).
    Layers already initialised are left alone. Returns ``flow``."""
    if not _is_normflows(flow):
        raise TypeError(f"flow: initialize_actnorm takes a normflows flow, got {type(flow).__name__}")
    flow.inverse_and_log_det(x)
    return flow


class FlowGenerator(nn.Module):
    """A normalizing flow as a generator u -> x with u ~ N(0, I) of ``z_dim`` numbers (see module doc).

    Args:
        flow: a normflows ``MultiscaleFlow``/``NormalizingFlow`` or a :class:`MultiscaleFlowLike`.
            It is registered as ``self.flow`` when it is an ``nn.Module`` (else its ``module``
            attribute is), so ``.to()``, ``.eval()``, ``state_dict()`` and ``dgflow.refine``'s
            freezing reach it. It must be initialised (trained weights loaded or
            :func:`initialize_actnorm` called); the adapter never changes it.
        temperature: T > 0; the latents are z_i = loc_i + T scale_i u_i.

    ``z_dim``, ``prior`` (N(0, I) over (z_dim,)), ``z_shape`` and ``sample_prior(n)`` make it
    usable by :func:`dgflow.as_generator`, the zoo and the CLI; ``level_shapes`` lists the levels.
    """

    def __init__(self, flow: Any, temperature: float = 1.0):
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        view = _view(flow)   # validates the flow now
        self.flow = flow if isinstance(flow, nn.Module) else None
        if self.flow is None and isinstance(getattr(flow, "module", None), nn.Module):
            self.module = flow.module
        self._external = None if isinstance(flow, nn.Module) else flow
        self.temperature = float(temperature)
        self.level_shapes: tuple[Shape, ...] = tuple(tuple(int(s) for s in sh) for sh in view.level_shapes)
        if not self.level_shapes or any(not sh or min(sh) < 1 for sh in self.level_shapes):
            raise ValueError(f"flow: level_shapes must be non-empty shapes of positive sizes, got {self.level_shapes}")
        self.level_sizes = tuple(math.prod(sh) for sh in self.level_shapes)
        self.z_dim = sum(self.level_sizes)
        self.prior = GaussianPrior((self.z_dim,))

    @property
    def view(self) -> Any:
        """The :class:`MultiscaleFlowLike` the adapter calls (built afresh, so it follows .to() and copies)."""
        return _view(self.flow if self.flow is not None else self._external)

    @property
    def z_shape(self) -> Shape:
        return self.prior.shape

    def sample_prior(self, n: int, **kw: Any) -> torch.Tensor:
        """n latents u ~ N(0, I), shape (n, z_dim) (keywords of :meth:`GaussianPrior.sample`)."""
        return self.prior.sample(n, **kw)

    def _check_u(self, u: torch.Tensor) -> None:
        if not isinstance(u, torch.Tensor) or u.dim() != 2 or u.shape[1] != self.z_dim:
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"u must be a tensor of shape (N, {self.z_dim}) (the flow's levels "
                             f"{list(self.level_shapes)} flattened), got {got}")

    def _check_initialized(self) -> None:
        pending = uninitialized_actnorms(self.flow if self.flow is not None else getattr(self, "module", None))
        if pending:
            raise RuntimeError(f"flow: {len(pending)} ActNorm layer(s) are not initialised ({pending[0]}, ...); "
                               "running them now would initialise them from a batch of latents and change the "
                               "model. Load trained weights, or call dgflow.models.flows.initialize_actnorm(flow, "
                               "x_data) once before adapting it")

    def _loc_scale(self, view: Any, u: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        pairs = view.base_loc_scale()
        if len(pairs) != len(self.level_shapes):
            raise ValueError(f"flow: base_loc_scale() gave {len(pairs)} pairs for {len(self.level_shapes)} levels")
        return [(loc.to(u.dtype), (self.temperature * scale).to(u.dtype)) for loc, scale in pairs]

    def levels(self, u: torch.Tensor) -> list[torch.Tensor]:
        """The flow's latents z_i = loc_i + T scale_i u_i, each (N, *level_shapes[i])."""
        self._check_u(u)
        parts = u.split(self.level_sizes, dim=1)
        pairs = self._loc_scale(self.view, u)
        return [loc + scale * p.reshape(len(u), *sh) for p, sh, (loc, scale) in zip(parts, self.level_shapes, pairs)]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """x = flow(levels(u)), the flow's sampling direction."""
        self._check_initialized()
        return self.view.decode(self.levels(u))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent u (N, z_dim) with ``forward(u) == x``: the inverse pass, standardised by loc, scale, T."""
        self._check_initialized()
        view = self.view
        if not hasattr(view, "encode"):
            raise TypeError(f"flow: a {type(view).__name__} has no encode(x); FlowGenerator.encode needs it")
        zs = view.encode(x)
        if len(zs) != len(self.level_shapes):
            raise ValueError(f"flow: encode(x) gave {len(zs)} latents for {len(self.level_shapes)} levels")
        pairs = self._loc_scale(view, x)
        return torch.cat([((z - loc) / scale).reshape(len(x), -1) for z, (loc, scale) in zip(zs, pairs)], dim=1)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, levels={list(self.level_shapes)}, temperature={self.temperature}"
