"""Files on disk: atomic writes, safetensors weights of several named modules verified by sha256,
and digests of models' state."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Callable, Mapping

import torch
from safetensors.torch import load_file, save
from torch import nn


def atomic_write(path: str | os.PathLike, writer: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``writer(binary file)`` so that it appears complete or not at all.

    The bytes go to a temporary file in the same folder (named per process, so concurrent
    writers never share one), are flushed to disk (fsync) and renamed over ``path``; the
    temporary file is removed if anything fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_json(path: str | os.PathLike, obj: object) -> None:
    """``obj`` as indented JSON, written by :func:`atomic_write`."""
    atomic_write(path, lambda fh: fh.write((json.dumps(obj, indent=1) + "\n").encode()))


def state_digest(*models: object) -> str:
    """sha256 of the parameters and buffers (names, dtypes, shapes, values) of the modules behind
    ``models`` (:func:`dgflow.models.modules_of`): equal exactly when the models' state is.
    A model with no modules (a pure function) contributes nothing."""
    from .models.modules import modules_of

    h = hashlib.sha256()
    for i, model in enumerate(models):
        for j, module in enumerate(modules_of(model)):
            for name, t in module.state_dict(keep_vars=False).items():
                t = t.detach().cpu().contiguous()
                h.update(f"{i}.{j}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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
    Written by :func:`atomic_write`. Returns the file's sha256.
    """
    tensors = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata={"dgflow": json.dumps(dict(metadata or {}))})
    atomic_write(path, lambda fh: fh.write(data))
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
