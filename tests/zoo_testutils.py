"""Shared fixtures of the zoo tests: tiny saved models, an isolated registry, a hand-built Hub cache.

Everything is offline: huggingface_hub's metadata (HEAD) call is replaced by one that fails the
test, so any attempt to reach the network is caught.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from dgflow.io import save_modules, sha256_of
from dgflow.models.arch.mlp import MLPCritic, MLPGenerator

GEN = "dgflow.models.arch.mlp:MLPGenerator"
CRIT = "dgflow.models.arch.mlp:MLPCritic"
SMALL = {"width": 8, "depth": 1}
REPO = "dgflow-test/toy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Saved:
    generator: MLPGenerator
    critic: MLPCritic
    path: Path
    sha256: str


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No packaged zoo, no DGFLOW_ZOO, a private HF_HOME, and no network for huggingface_hub."""
    import huggingface_hub.file_download as fd
    from dgflow.zoo import registry

    empty = tmp_path / "packaged_zoo.yaml"
    empty.write_text("format: 1\nmodels: {}\n")
    monkeypatch.setattr(registry, "PACKAGED_ZOO", empty)
    monkeypatch.delenv("DGFLOW_ZOO", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("the zoo tried to reach the Hugging Face Hub")

    monkeypatch.setattr(fd, "get_hf_file_metadata", no_network)


@pytest.fixture
def saved(tmp_path) -> Saved:
    """A tiny generator/critic pair saved with dgflow.io.save_modules."""
    torch.manual_seed(0)
    g, d = MLPGenerator(z_dim=2, out_dim=2, **SMALL), MLPCritic(in_dim=2, **SMALL)
    path = tmp_path / "models" / "toy.safetensors"
    sha = save_modules(path, {"generator": g, "critic": d})
    return Saved(g, d, path, sha)


def make_entry(weights: dict, **over) -> dict:
    """A valid entry for the tiny MLPs with the given weights spec."""
    entry = {"dataset": "25gaussians", "z_dim": 2,
             "generator": {"arch": GEN, "kwargs": {"z_dim": 2, "out_dim": 2, **SMALL}},
             "critic": {"arch": CRIT, "kwargs": {"in_dim": 2, **SMALL}, "convention": "wgan"},
             "refine": {"divergence": "kl", "eta": 0.05, "gamma": 0.0, "steps": 5},
             "weights": weights}
    entry.update(over)
    return entry


def write_zoo(path: Path, models: dict) -> Path:
    path.write_text(yaml.safe_dump({"format": 1, "models": models}, sort_keys=False))
    return path


def fake_hub_cache(cache: Path, content: Path, *, repo_id: str = REPO, filename: str = "toy.safetensors",
                   commit: str = COMMIT, ref: str = "main") -> Path:
    """The real huggingface_hub cache layout: blobs/<sha256> (the LFS etag), a snapshot symlink
    snapshots/<commit>/<filename> -> ../../blobs/<sha256>, and refs/<ref> holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blob = repo / "blobs" / sha256_of(content)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content.read_bytes())
    snap = repo / "snapshots" / commit / filename
    snap.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, snap.parent), snap)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snap


def same_outputs(model, g: torch.nn.Module, d: torch.nn.Module) -> bool:
    """Whether a loaded ZooModel computes exactly what the saved nets compute."""
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = g(z)
        return torch.equal(model.generator(z), x) and torch.equal(model.critic(x), d(x))
