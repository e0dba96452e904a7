"""A small Glow (Kingma & Dhariwal 2018) for 32x32 images, built from ``normflows`` (extra ``flows``).

:func:`glow` returns a ``normflows.MultiscaleFlow`` over images in [-1, 1] (``pip install
dgflow[flows]``). Levels, from the data side: squeeze (C, S, S) -> (4C, S/2, S/2), ``blocks``
Glow steps (affine coupling, invertible 1x1 convolution, ActNorm), then split off half of the
channels as that level's latent; the last level keeps all its channels. For 1x32x32 and
``levels=3`` the latents are 16x4x4, 4x8x8 and 2x16x16 (1,024 numbers in all). Every level's
base is an unconditional ``GlowBase`` (a learned per-channel mean and scale).

Pixels are mapped to an unbounded space by ``SymmetricLogit`` (the RealNVP logit
preprocessing, Dinh et al. 2017, for data in [-1, 1]), the flow's last step in the sampling
direction, so samples stay within [-1 - 2 alpha / (1 - 2 alpha), 1 + 2 alpha / (1 - 2 alpha)]. It
can also add a constant border (``pad``) that is not modelled, e.g. the -1 border of
Fashion-MNIST's 28x28 images padded to 32x32 (the density is then the interior's).

:func:`glow_generator` is the refinable generator: :class:`dgflow.models.flows.FlowGenerator`
around :func:`glow` (the zoo's ``generator.arch`` for Glow bases).
"""
from __future__ import annotations

import math
import warnings

import torch

from ..flows import FlowGenerator

# normflows' invertible 1x1 convolution calls torch.lu, deprecated since torch 2.x; nothing a user
# of these models can act on, so that one message is silenced (every other warning is kept).
warnings.filterwarnings("ignore", message="torch.lu is deprecated", category=UserWarning)


def _nf():
    try:
        import normflows as nf
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("the Glow architecture needs normflows: pip install 'dgflow[flows]'") from err
    return nf


def _symmetric_logit_class():
    nf = _nf()

    class SymmetricLogit(nf.flows.Flow):
        """Sampling direction z -> x = 2 (sigmoid(z) - alpha) / (1 - 2 alpha) - 1, then ``pad`` pixels
        of -1 (black) on every side; inverse: crop the border, x in [-1, 1] -> z = logit(alpha +
        (1 - 2 alpha) (x + 1) / 2). ``alpha`` keeps the logit finite at the pixel values -1 and 1;
        the border is constant, so it is not modelled (the density is the interior's)."""

        def __init__(self, alpha: float = 0.05, pad: int = 0):
            super().__init__()
            if not 0 < alpha < 0.5:
                raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
            self.alpha, self.pad = float(alpha), int(pad)

        def _log_dx_dz(self, z: torch.Tensor) -> torch.Tensor:
            # dx/dz = 2 sigmoid(z) (1 - sigmoid(z)) / (1 - 2 alpha), summed over every pixel in log
            log_d = torch.nn.functional.logsigmoid(z) + torch.nn.functional.logsigmoid(-z)
            return (log_d + math.log(2 / (1 - 2 * self.alpha))).flatten(1).sum(1)

        def forward(self, z: torch.Tensor):
            x = 2 * (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha) - 1
            if self.pad:
                x = torch.nn.functional.pad(x, (self.pad,) * 4, value=-1.0)
            return x, self._log_dx_dz(z)

        def inverse(self, x: torch.Tensor):
            if self.pad:
                x = x[..., self.pad:-self.pad, self.pad:-self.pad]
            p = self.alpha + (1 - 2 * self.alpha) * (x + 1) / 2
            z = torch.log(p) - torch.log1p(-p)
            return z, -self._log_dx_dz(z)

    return SymmetricLogit


def glow(in_channels: int = 1, img_size: int = 32, levels: int = 3, blocks: int = 4, hidden: int = 32,
         alpha: float = 0.05, split_mode: str = "channel", scale_map: str = "sigmoid", pad: int = 0):
    """A multiscale Glow over (in_channels, img_size, img_size) images in [-1, 1] (see module doc).

    ``hidden`` is the width of each coupling layer's convolutional net. ``pad``: a border of that
    many constant -1 pixels that is not modelled (Fashion-MNIST's 28x28 padded to 32x32: pad=2);
    the flow is over the interior, whose side ``img_size - 2 pad`` the ``levels`` squeezes need
    divisible by 2**levels. ``scale_map`` is normflows' coupling scale: "sigmoid" (Glow's) divides
    by sigmoid(.) in the sampling direction, which on images with many nearly constant pixels
    (Fashion-MNIST's black background) let 0.5% (3 levels, border modelled) to 8% (2 levels,
    ``pad=2``) of the samples at temperature 1 overflow to inf/NaN here; "sigmoid_inv" multiplies
    there, so sampling cannot overflow, but divides in the inverse pass, and diverged in training
    here. ActNorm layers are not initialised yet: train it (the first inverse pass on data
    initialises them) or load weights.
    """
    nf = _nf()
    for name, v in (("in_channels", in_channels), ("img_size", img_size), ("levels", levels),
                    ("blocks", blocks), ("hidden", hidden)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0 or img_size - 2 * pad < 1:
        raise ValueError(f"pad must be an int in [0, img_size / 2), got {pad!r}")
    side_in = img_size - 2 * pad
    if side_in % 2 ** levels:
        raise ValueError(f"img_size - 2 pad = {side_in} must be divisible by 2**levels={2 ** levels}")
    q0, flows, merges = [], [], []
    for i in range(levels):   # i = 0 is the deepest level (smallest images), as MultiscaleFlow orders them
        side = side_in // 2 ** (levels - i)
        channels = in_channels * 2 ** (levels - i + 1)    # squeezing x4, then each split above halves
        steps = [nf.flows.GlowBlock(channels, hidden, split_mode=split_mode, scale=True, scale_map=scale_map)
                 for _ in range(blocks)]
        flows.append(steps + [nf.flows.Squeeze()])
        latent_channels = channels if i == 0 else channels // 2
        q0.append(nf.distributions.GlowBase((latent_channels, side, side)))
        if i > 0:
            merges.append(nf.flows.Merge())
    return nf.MultiscaleFlow(q0, flows, merges, transform=_symmetric_logit_class()(alpha, pad), class_cond=False)


def glow_generator(temperature: float = 1.0, **glow_kwargs) -> FlowGenerator:
    """:class:`FlowGenerator` around :func:`glow` (``glow_kwargs``), u (N, z_dim) -> images."""
    return FlowGenerator(glow(**glow_kwargs), temperature=temperature)


def bits_per_dim(nll_nats: torch.Tensor, dims: int, levels: int = 256, value_range: float = 2.0) -> torch.Tensor:
    """Bits per dimension of discrete pixels from the negative log density (nats) of their
    uniformly dequantised values: a pixel grid of ``levels`` values spread over an interval of
    length ``value_range`` has bins of width value_range / levels, so
    bpd = (nll + dims log(levels / value_range)) / (dims log 2)."""
    return (nll_nats + dims * math.log(levels / value_range)) / (dims * math.log(2))
