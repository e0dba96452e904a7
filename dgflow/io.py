"""Weights on disk: safetensors files of several named modules, verified by sha256."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_modules(path: str | os.PathLike, modules: Mapping[str, nn.Module],
                 metadata: Mapping[str, object] | None = None) -> str:
    """Save the state dicts of ``modules`` into one safetensors file, keys prefixed by name.

    ``metadata`` (JSON-serialisable) is stored under the ``"dgflow"`` header key.
    Written atomically (temporary file, then rename). Returns the file's sha256.
    """
    tensors = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"dgflow": json.dumps(dict(metadata or {}))})
    os.replace(tmp, path)
    return sha256_of(path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``"dgflow"`` metadata dict stored by :func:`save_modules` (empty if none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return json.loads(meta.get("dgflow", "{}"))


def load_modules(path: str | os.PathLike, modules: Mapping[str, nn.Module],
                 sha256: str | None = None) -> None:
    """Load weights saved by :func:`save_modules` into ``modules`` (strict, in place).

    If ``sha256`` is given the file is refused unless its hash matches.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if sha256 is not None:
        got = sha256_of(path)
        if got != sha256.lower():
            raise ValueError(f"sha256 mismatch for {path}: expected {sha256}, got {got}; "
                             "the file is corrupt or not the one registered, refusing to load it")
    tensors = load_file(str(path))
    for name, module in modules.items():
        prefix = name + "."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            raise KeyError(f"{path} holds no weights for {name!r}; "
                           f"it has prefixes {sorted({k.split('.')[0] for k in tensors})}")
        module.load_state_dict(sd, strict=True)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return load_file(str(path))
