"""Character-level WGAN-GP language model (after Gulrajani et al. 2017, "Improved Training of
Wasserstein GANs", section 5.2), shrunk for a CPU budget.

Layout: sequences are ``(N, L, V)`` -- batch, position, character -- everywhere outside these
modules (one-hot rows for real text, softmax rows for generated text); the convolutions run on
``(N, V, L)`` internally.

* :class:`CharGenerator`: z (N, z_dim) -> linear -> (N, width, L) -> ``blocks`` residual blocks ->
  1x1 convolution to V channels -> softmax over the vocabulary at each position -> (N, L, V).
* :class:`CharCritic`: (N, L, V) -> 1x1 convolution to ``width`` channels -> ``blocks`` residual
  blocks -> flatten -> linear -> (N,) (a WGAN critic's score, larger on real text).

A residual block is ``x + 0.3 * conv(relu(conv(relu(x))))`` with two width-preserving 1D
convolutions of kernel ``kernel`` (the original: width 512, 5 blocks, kernel 5, 32 positions,
128-d z). No normalisation layers, so the critic is a plain function of its input and the
gradient penalty is well defined.

Both modules carry their vocabulary (``vocab``, a string with one character per output channel)
so a text zoo entry is self-describing; :func:`dgflow.data.text.decode` turns their outputs
into strings.
"""
from __future__ import annotations

import torch
from torch import nn

RES_SCALE = 0.3


class ResBlock1d(nn.Module):
    """``x + 0.3 * conv(relu(conv(relu(x))))``, channels and length preserved."""

    def __init__(self, width: int, kernel: int = 5):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd (length-preserving padding), got {kernel}")
        pad = kernel // 2
        self.conv1 = nn.Conv1d(width, width, kernel, padding=pad)
        self.conv2 = nn.Conv1d(width, width, kernel, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.relu(x))
        h = self.conv2(torch.relu(h))
        return x + RES_SCALE * h


def _check(vocab: str, seq_len: int, width: int, blocks: int) -> None:
    if not isinstance(vocab, str) or len(vocab) < 2 or len(set(vocab)) != len(vocab):
        raise ValueError(f"vocab must be a string of at least 2 distinct characters, got {vocab!r}")
    for name, v in (("seq_len", seq_len), ("width", width)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(blocks, int) or blocks < 0:
        raise ValueError(f"blocks must be an int >= 0, got {blocks!r}")


class CharGenerator(nn.Module):
    """z (N, z_dim) -> per-position softmax over ``vocab``, shape (N, seq_len, len(vocab))."""

    def __init__(self, vocab: str, z_dim: int = 128, seq_len: int = 32, width: int = 128,
                 blocks: int = 2, kernel: int = 5):
        super().__init__()
        _check(vocab, seq_len, width, blocks)
        self.vocab, self.z_dim, self.seq_len, self.width = vocab, int(z_dim), int(seq_len), int(width)
        self.fc = nn.Linear(self.z_dim, self.width * self.seq_len)
        self.blocks = nn.Sequential(*[ResBlock1d(self.width, kernel) for _ in range(blocks)])
        self.out = nn.Conv1d(self.width, len(vocab), 1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores, (N, seq_len, V)."""
        h = self.fc(z.reshape(len(z), -1)).view(len(z), self.width, self.seq_len)
        return self.out(self.blocks(h)).transpose(1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(z), dim=-1)


class CharCritic(nn.Module):
    """(N, seq_len, len(vocab)) one-hot or softmax sequences -> score (N,)."""

    def __init__(self, vocab: str, seq_len: int = 32, width: int = 128, blocks: int = 2,
                 kernel: int = 5):
        super().__init__()
        _check(vocab, seq_len, width, blocks)
        self.vocab, self.seq_len, self.width = vocab, int(seq_len), int(width)
        self.inp = nn.Conv1d(len(vocab), self.width, 1)
        self.blocks = nn.Sequential(*[ResBlock1d(self.width, kernel) for _ in range(blocks)])
        self.fc = nn.Linear(self.width * self.seq_len, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1:] != (self.seq_len, len(self.vocab)):
            raise ValueError(f"x: expected (N, {self.seq_len}, {len(self.vocab)}) sequences "
                             f"(batch, position, character), got {tuple(x.shape)}")
        h = self.blocks(self.inp(x.transpose(1, 2)))
        return self.fc(h.flatten(1)).squeeze(-1)
