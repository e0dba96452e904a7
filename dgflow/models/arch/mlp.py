"""Small fully connected networks for the 2D toy problems (docs/design.md §5)."""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, width: int = 128, depth: int = 3) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width`` units, then a linear output layer."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (N, z_dim) -> x (N, out_dim)."""

    def __init__(self, z_dim: int = 2, out_dim: int = 2, width: int = 128, depth: int = 3):
        super().__init__()
        self.z_dim = z_dim
        self.net = mlp(z_dim, out_dim, width, depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPCritic(nn.Module):
    """x (N, in_dim) -> scalar logit (N,)."""

    def __init__(self, in_dim: int = 2, width: int = 128, depth: int = 3):
        super().__init__()
        self.net = mlp(in_dim, 1, width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
