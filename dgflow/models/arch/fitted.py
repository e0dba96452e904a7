"""Critics fitted by :func:`dgflow.fit_critic`, as architectures that a zoo entry can name.

A fitted critic is d(x) = a (a0 D0(x) + b0 + C(x)) + b (:class:`dgflow.fit.FittedCritic`): the
trained net C, optionally a frozen D0 (the density-ratio corrector) and two affine calibrations.
Its weights file (``dgflow fit-critic --out FILE``) holds all of them under the prefix
``critic.``; :func:`fitted_critic` rebuilds the empty structure those weights load into, from
the *specs* of C and D0: ``{"arch": "module:callable", "kwargs": {...}}`` (D0's also with its
logit ``convention`` and ``temperature``). In a zoo file::

    critic:
      arch: dgflow.models.arch.fitted:fitted_critic
      kwargs: {net: {arch: dgflow.models.arch.dcgan:SNDCGANDiscriminator, kwargs: {}},
               base: {arch: dgflow.models.arch.dcgan:SNDCGANDiscriminator, kwargs: {}, convention: ns}}
      convention: logit

:func:`fresh_critic` is the choice of C that ``dgflow fit-critic --arch`` offers (and the VAE
benchmark uses): fit_critic's default MLP, a fresh SN-DCGAN discriminator sized to the images, or
a fresh net of D0's own architecture (the corrector of the DGflow authors' code).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

ARCHS = ("mlp", "conv", "corrector")
MLP_ARCH = "dgflow.fit:critic_mlp"
CONV_ARCH = "dgflow.models.arch.dcgan:SNDCGANDiscriminator"


def build_spec(spec: Mapping[str, Any], what: str = "net") -> nn.Module:
    """``spec["arch"](**spec["kwargs"])``, which must be an ``nn.Module``."""
    from ...zoo.loader import import_object

    if not isinstance(spec, Mapping) or not isinstance(spec.get("arch"), str):
        raise ValueError(f"{what}: a spec is a mapping with an 'arch' string ('module:callable'), got {spec!r}")
    module = import_object(spec["arch"])(**dict(spec.get("kwargs") or {}))
    if not isinstance(module, nn.Module):
        raise TypeError(f"{what}: {spec['arch']} returned a {type(module).__name__}, not an nn.Module")
    return module


def base_module(spec: Mapping[str, Any]) -> nn.Module:
    """D0 in dgflow's logit convention, built from its spec (``convention``, ``temperature``)."""
    from ...calibration import _as_module
    from ...critics import as_logit

    return _as_module(as_logit(build_spec(spec, "base"), spec.get("convention", "logit"),
                               float(spec.get("temperature", 1.0))))


def fitted_critic(net: Mapping[str, Any], base: Mapping[str, Any] | None = None,
                  regularizer: str | None = None) -> nn.Module:
    """An untrained :class:`~dgflow.fit.FittedCritic` with C built from the spec ``net`` (spectral
    norm added when ``regularizer == "spectral"``, as fit_critic does), D0 from ``base`` and
    identity calibrations: the structure that ``fit-critic --out`` weights load into."""
    from ...calibration import Affine
    from ...fit import FitInfo, FittedCritic, apply_spectral_norm

    if regularizer not in ("spectral", "gp", None):
        raise ValueError(f"regularizer: unknown {regularizer!r}; use 'spectral', 'gp' or None")
    c = build_spec(net)
    c = apply_spectral_norm(c) if regularizer == "spectral" else c
    d0 = None if base is None else base_module(base)
    return FittedCritic(c.eval(), d0, Affine(), FitInfo(), Affine()).eval()


def fresh_critic(arch: str, sample_shape: Sequence[int], *, hidden: Sequence[int] = (128, 128),
                 base: Mapping[str, Any] | None = None, seed: int | None = None
                 ) -> tuple[nn.Module | None, dict]:
    """The initial net C for ``arch`` and its spec: ``(module or None, spec)``.

    * ``"mlp"``: None (fit_critic then builds its default MLP, started near zero when there is a
      base) and the spec of that MLP with ``hidden`` widths;
    * ``"conv"``: a fresh SN-DCGAN discriminator for images of ``sample_shape`` (C, S, S);
    * ``"corrector"``: a fresh net of D0's architecture (``base``, a spec).
    ``seed`` seeds the initialisation (torch's global generator, forked: its state is kept).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch: unknown {arch!r}; use one of {ARCHS}")
    shape = tuple(int(s) for s in sample_shape)
    if arch == "mlp":
        spec = {"arch": MLP_ARCH, "kwargs": {"in_features": math.prod(shape), "hidden": [int(h) for h in hidden],
                                             "small_output": base is not None}}
        return None, spec
    if arch == "conv":
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 8:
            raise ValueError(f"arch 'conv' needs square images (C, S, S) with S divisible by 8, got samples "
                             f"of shape {shape}")
        spec = {"arch": CONV_ARCH, "kwargs": {"in_channels": shape[0], "img_size": shape[1]}}
    else:
        if base is None:
            raise ValueError("arch 'corrector' needs a base critic D0 (its architecture is C's)")
        spec = {"arch": base["arch"], "kwargs": dict(base.get("kwargs") or {})}
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return build_spec(spec), spec
