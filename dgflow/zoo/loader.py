"""Building a zoo model: import its architectures, fetch and verify its weights, load them."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..critics import as_logit
from ..io import load_modules
from ..models import AdaptedGenerator, GaussianPrior
from .errors import ZooEntryError, ZooError
from .registry import Registry, ZooLike, load_registry, weight_specs
from .weights import WeightsFile, fetch


@dataclass
class ZooModel:
    """A ready-to-use zoo model.

    ``generator`` maps latents to samples and carries its prior (``generator.sample_prior(n)``);
    ``critic`` returns the logit d(x) in dgflow's convention (the raw critic wrapped by
    :func:`dgflow.as_logit` with the entry's convention and temperature); ``refine_kwargs`` are the
    entry's recommended :func:`dgflow.refine` settings; ``entry`` is the raw yaml entry.
    """

    name: str
    generator: AdaptedGenerator
    critic: Callable[[torch.Tensor], torch.Tensor]
    prior: GaussianPrior
    refine_kwargs: dict
    entry: dict
    weights_paths: tuple[Path, ...] = field(default=())

    def refine(self, z: torch.Tensor, **overrides: Any) -> Any:
        """``dgflow.refine(generator, critic, z, **{**refine_kwargs, **overrides})``."""
        from ..flow import refine

        return refine(self.generator, self.critic, z, **{**self.refine_kwargs, **overrides})


def import_object(spec: str) -> Any:
    """The object named by ``"package.module:attr.path"``."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ZooError(f"cannot import module {module_name!r} named by {spec!r}: {err}") from err
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ZooError(f"module {module_name!r} has no attribute {attr!r} (named by {spec!r})") from err
    return obj


def build_net(name: str, net: str, spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate ``spec["arch"](**spec["kwargs"])``; it must return an ``nn.Module``."""
    factory = import_object(spec["arch"])
    try:
        module = factory(**dict(spec.get("kwargs") or {}))
    except TypeError as err:
        raise ZooEntryError(f"model {name!r}: {net}.arch {spec['arch']} rejected "
                            f"{net}.kwargs {dict(spec.get('kwargs') or {})}: {err}") from err
    if not isinstance(module, nn.Module):
        raise ZooEntryError(f"model {name!r}: {net}.arch {spec['arch']} returned a "
                            f"{type(module).__name__}, not a torch.nn.Module")
    return module


def weight_files(registry: Registry, name: str) -> list[WeightsFile]:
    """The weights files of model ``name`` with paths resolved against its zoo file."""
    entry = registry.get(name)
    return [WeightsFile.from_spec(name, spec, registry.base_dir(name)) for spec in weight_specs(entry)]


def z_shape(entry: Mapping[str, Any]) -> tuple[int, ...]:
    z = entry["z_dim"]
    return tuple(int(s) for s in z) if isinstance(z, list) else (int(z),)


def load(name: str, *, zoo: ZooLike = None, device: torch.device | str | None = None,
         cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None) -> ZooModel:
    """Build zoo model ``name``: generator (with its prior), critic (in dgflow's logit convention),
    recommended refine settings.

    Weights come from the entry's local path if present, else from the Hugging Face Hub cache or a
    download (``cache_dir``; ``local_files_only`` defaults to ``HF_HUB_OFFLINE``); their sha256 is
    always verified and only safetensors files are read. Models are returned in eval mode on
    ``device`` (default CPU).

    Raises :class:`UnknownModelError`, :class:`ZooEntryError`, :class:`WeightsNotAvailableError`
    or :class:`ChecksumError`, each naming what to fix.
    """
    registry = load_registry(zoo)
    entry = registry.get(name)
    nets = {net: build_net(name, net, entry[net]) for net in ("generator", "critic")}
    paths = []
    for wf in weight_files(registry, name):
        path = fetch(wf, cache_dir=cache_dir, local_files_only=local_files_only)
        if path.suffix != ".safetensors":
            raise ZooEntryError(
                f"model {name!r}: {path} is not a .safetensors file; dgflow loads only safetensors. "
                "Convert a torch checkpoint once with torch.load(f, weights_only=True) and "
                "dgflow.io.save_modules (see docs/zoo.md)")
        try:
            load_modules(path, {m: nets[m] for m in wf.modules})
        except (KeyError, RuntimeError) as err:
            raise ZooEntryError(f"model {name!r}: {path} does not fit the registered architectures: "
                                f"{err}") from err
        paths.append(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    for module in nets.values():
        module.to(device).eval()
    prior = GaussianPrior(z_shape(entry))
    crit_spec = entry["critic"]
    critic = as_logit(nets["critic"], crit_spec["convention"], float(crit_spec.get("temperature", 1.0)))
    return ZooModel(name=name, generator=AdaptedGenerator(nets["generator"], prior).eval(), critic=critic,
                    prior=prior, refine_kwargs=dict(entry.get("refine") or {}), entry=entry,
                    weights_paths=tuple(paths))
