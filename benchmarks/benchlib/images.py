"""Image setups of the image benchmarks, and the held-out subsets of their train split.

The default setup is Fashion-MNIST at 32x32 (28x28 padded by 2) on a CPU. A YAML config
(``benchmarks/configs/cifar10.yaml``, ``stl10.yaml``) overrides the dataset, the architectures'
kwargs, the per-base training settings and the refinement settings; CIFAR10 and STL10 are read
with torchvision from a local directory (``download=False``: fetch them yourself where a network
exists).

:func:`train_splits` is the one place the train split is cut into the subsets the benchmarks hold
out (validation FID reference, LogitMatch's real samples, the images critics are fitted on), so
that they are disjoint by construction, not by two scripts agreeing on a seed and a slice.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import yaml

FMNIST = {
    "dataset": "fmnist",
    "generator": {"z_dim": 64, "channels": [128, 64, 32], "out_channels": 1, "bottom": 4},
    "critic": {"in_channels": 1, "channels": [32, 64, 128], "img_size": 32},
    "bases": {},
    "feature_extractor": "fmnist-cnn",
}
DATASETS = ("fmnist", "cifar10", "stl10")

# Disjoint slices of one seeded permutation of the train split (see train_splits).
TRAIN_SPLITS = {
    "val": slice(0, 10000),        # validation FID reference: chooses the stopping step
    "real": slice(10000, 12000),   # real samples whose mean logit LogitMatch aims at
    "fit": slice(20000, 30000),    # real samples a critic is fitted on (vae_fmnist.py)
}


def resolve(config: str | os.PathLike | None) -> dict:
    """The Fashion-MNIST setup, updated key by key from a YAML ``config`` if given."""
    setup = copy.deepcopy(FMNIST)
    if config is None:
        return setup
    with open(config) as fh:
        user = yaml.safe_load(fh) or {}
    unknown = set(user) - set(setup) - {"refine", "eval", "description"}
    if unknown:
        raise ValueError(f"config {config}: unknown keys {sorted(unknown)}")
    setup.update(user)
    if setup["dataset"] not in DATASETS:
        raise ValueError(f"config {config}: dataset must be one of {DATASETS}, got {setup['dataset']!r}")
    return setup


def _torchvision_images(dataset: str, split: str, root: str | None) -> torch.Tensor:
    import numpy as np
    import torchvision.datasets as tvd

    root = root or os.environ.get("DGFLOW_DATA_DIR") or str(Path.home() / "data")
    try:
        if dataset == "cifar10":
            arr = tvd.CIFAR10(root, train=split == "train", download=False).data  # (N, 32, 32, 3)
        else:  # stl10: the paper uses the 100k unlabeled images resized to 48x48 for training
            ds = tvd.STL10(root, split="unlabeled" if split == "train" else "test", download=False)
            arr = ds.data.transpose(0, 2, 3, 1)
    except RuntimeError as e:
        raise FileNotFoundError(f"{dataset} not found under {root}: download it with torchvision "
                                f"(download=True) where a network exists and pass --data-dir") from e
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if dataset == "stl10":
        x = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", antialias=True,
                                            align_corners=False)
    return x


def load_images(dataset: str, split: str, root: str | None = None) -> torch.Tensor:
    """Images (N, C, S, S) float32 in [-1, 1] of ``split`` (``"train"`` or ``"test"``)."""
    if dataset == "fmnist":
        from dgflow.data import fmnist

        return fmnist.load_tensor(split, root)[0]
    if dataset in ("cifar10", "stl10"):
        return _torchvision_images(dataset, split, root)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def train_splits(dataset: str, seed: int, data_dir: str | None = None) -> dict[str, torch.Tensor]:
    """The held-out subsets of ``dataset``'s *train* split (never the test split), by name
    (:data:`TRAIN_SPLITS`): slices of one permutation seeded by ``seed``, checked to be disjoint."""
    train = load_images(dataset, "train", data_dir)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    index = {name: perm[s] for name, s in TRAIN_SPLITS.items()}
    if any(len(index[name]) != s.stop - s.start for name, s in TRAIN_SPLITS.items()):
        raise ValueError(f"{dataset}: its train split has {len(train)} images, too few for the "
                         f"held-out subsets {TRAIN_SPLITS}")
    everything = torch.cat(list(index.values()))
    if len(torch.unique(everything)) != len(everything):
        raise AssertionError(f"the held-out subsets of the {dataset} train split overlap: {TRAIN_SPLITS}")
    return {name: train[i] for name, i in index.items()}
