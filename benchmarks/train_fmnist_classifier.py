"""Train the Fashion-MNIST CNN whose penultimate layer gives "FID (FMNIST-CNN features)".

    python benchmarks/train_fmnist_classifier.py     # -> dgflow/weights/fmnist_cnn.safetensors

:class:`~dgflow.models.arch.SmallCNNClassifier` (3x3 convs 32, 64 with max-pooling, a 128-d
linear layer whose pre-ReLU outputs are the FID features, ReLU, dropout 0.3, linear to 10
classes) on the 60k train split at 32x32 in [-1, 1] (the generators' output format), Adam 1e-3,
batch 128, 3 epochs, seeded, one thread. The test-split
accuracy goes into the weights' metadata and ``benchmarks/results/fmnist_classifier.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchlib import RESULTS, ROOT, display_path
from dgflow.data import fmnist
from dgflow.io import save_modules
from dgflow.models.arch import SmallCNNClassifier
from dgflow.passes import chunk_slices

KWARGS = {"in_channels": 1, "channels": [32, 64], "feat_dim": 128, "n_classes": 10, "img_size": 32}


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    hits = sum(int((model(x[s]).argmax(1) == y[s]).sum()) for s in chunk_slices(len(x), batch_size))
    return hits / len(x)


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int
          ) -> SmallCNNClassifier:
    """Cross-entropy training with Adam on shuffled mini-batches."""
    torch.manual_seed(seed)
    model = SmallCNNClassifier(**KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed + 1)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=rng)
        bar = tqdm(range(0, len(x), batch_size), desc=f"epoch {epoch + 1}/{epochs}")
        for i in bar:
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(ROOT / "dgflow" / "weights" / "fmnist_cnn.safetensors"))
    p.add_argument("--json", default=str(RESULTS / "fmnist_classifier.json"))
    p.add_argument("--limit", type=int, help="train on the first LIMIT train images only (smoke runs)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    x_train, y_train = (t[: a.limit] for t in fmnist.load_tensor("train", a.data_dir))
    x_test, y_test = fmnist.load_tensor("test", a.data_dir)
    t0 = time.perf_counter()
    model = train(x_train, y_train, a.epochs, a.batch_size, a.lr, a.seed)
    secs = time.perf_counter() - t0
    meta = {"dataset": "fmnist", "class": "dgflow.models.arch.dcgan:SmallCNNClassifier", "kwargs": KWARGS,
            "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
            "train_accuracy": round(accuracy(model, x_train, y_train), 4),
            "test_accuracy": round(accuracy(model, x_test, y_test), 4), "n_test": len(x_test),
            "train_seconds": round(secs, 1), "threads": a.threads}
    sha = save_modules(a.out, {"classifier": model}, meta)
    report = {**meta, "path": display_path(a.out), "sha256": sha}
    Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
