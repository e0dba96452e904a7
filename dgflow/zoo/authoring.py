"""Writing zoo entries: register your own checkpoint in a yaml file of your own."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..io import atomic_write, sha256_of
from .errors import ZooEntryError
from .registry import FORMAT_VERSION, validate_entry


def arch_string(arch: Any) -> str:
    """``"module:qualname"`` of a class/function, or ``arch`` itself if it is already a string."""
    if isinstance(arch, str):
        return arch
    module, qualname = getattr(arch, "__module__", None), getattr(arch, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname:
        raise ZooEntryError(f"cannot name {arch!r} as 'module:callable'; pass an importable string")
    return f"{module}:{qualname}"


def entry_yaml(name: str, entry: Mapping[str, Any]) -> str:
    """``entry`` as yaml lines to paste under ``models:`` (indented by two spaces)."""
    text = yaml.safe_dump({name: dict(entry)}, sort_keys=False, default_flow_style=False, width=100)
    return "".join("  " + line + "\n" for line in text.splitlines())


def _stored_path(weights: Path, zoo_dir: Path) -> str:
    """``weights`` relative to the zoo file's directory when it lies below it, else absolute."""
    try:
        return weights.relative_to(zoo_dir).as_posix()
    except ValueError:
        return str(weights)


def register(name: str, weights: str | os.PathLike, *, zoo: str | os.PathLike, generator: Any,
             critic: Any, z_dim: int | list[int], dataset: str, convention: str,
             generator_kwargs: Mapping[str, Any] | None = None,
             critic_kwargs: Mapping[str, Any] | None = None, temperature: float | None = None,
             refine: Mapping[str, Any] | None = None, description: str | None = None,
             overwrite: bool = False) -> dict:
    """Add model ``name`` to the user zoo file ``zoo`` (created if absent) and return its entry.

    ``weights`` is a safetensors file written by ``dgflow.io.save_modules(path, {"generator": G,
    "critic": D})``; its sha256 is computed now. ``generator``/``critic`` are architectures: an
    importable ``"module:callable"`` string or the class itself, built with ``*_kwargs``.
    Load it back with ``dgflow.zoo.load(name, zoo=zoo)``.
    """
    zoo_path = Path(zoo).expanduser().resolve()
    weights = Path(weights).expanduser().resolve()
    if not weights.is_file():
        raise FileNotFoundError(f"weights: file not found: {weights}")
    critic_spec: dict[str, Any] = {"arch": arch_string(critic), "kwargs": dict(critic_kwargs or {}),
                                   "convention": convention}
    if temperature is not None:
        critic_spec["temperature"] = float(temperature)
    entry: dict[str, Any] = {
        **({"description": description} if description else {}),
        "dataset": dataset,
        "z_dim": list(z_dim) if isinstance(z_dim, (list, tuple)) else int(z_dim),
        "generator": {"arch": arch_string(generator), "kwargs": dict(generator_kwargs or {})},
        "critic": critic_spec,
        "refine": dict(refine or {}),
        "weights": {"path": _stored_path(weights, zoo_path.parent), "sha256": sha256_of(weights)},
    }
    validate_entry(name, entry, zoo_path)
    doc: dict[str, Any] = {"format": FORMAT_VERSION, "models": {}}
    if zoo_path.is_file():
        with open(zoo_path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or doc
        doc.setdefault("models", {})
        doc["models"] = doc["models"] or {}
    if name in doc["models"] and not overwrite:
        raise ZooEntryError(f"{zoo_path}: model {name!r} is already registered; pass overwrite=True "
                            "to replace it")
    doc["models"][name] = entry
    zoo_path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(doc, sort_keys=False).encode("utf-8")
    atomic_write(zoo_path, lambda fh: fh.write(text))
    return entry
