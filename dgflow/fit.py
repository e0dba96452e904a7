"""Fit a critic as a calibrated log density ratio (docs/design.md §1, "Density-ratio corrector").

:func:`fit_critic` trains d(x) = D0(x) + C(x) with the class-balanced logistic loss, real = data,
fake = samples of the model being refined. D0 is an optional frozen pretrained discriminator
(``base``); without it d = C is a fresh discriminator. At the optimum of this loss
d(x) = log mu(x)/rho(x) (Goodfellow et al. 2014, Prop. 1, in logit form), but a finite net
trained on finite data is mis-scaled (docs/design.md §5). So: early stopping on the held-out logistic
loss, optionally spectral norm (Miyato et al. 2018) or the WGAN-GP penalty on C, then an affine
map of the logit fitted on the held-out split: Platt scaling a*d + b (Platt 1999) or temperature
scaling d / T (Guo et al. 2017), kept only if a likelihood-ratio test finds d miscalibrated.
Losses are class-balanced, 0.5 (E_real softplus(-d) + E_fake softplus(d)), so the optimum is
log mu/rho whatever the sizes of the two sets, and log 2 ~ 0.693 is the loss of chance.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm
from tqdm.auto import tqdm

from ._checks import as_logits, check_float, check_int
from .calibration import (CALIBRATIONS, Affine, CalibratedCritic, _as_module, _check_pair, calibration_report,
                          fit_affine, logistic_loss, miscalibration_test)
from .passes import logits
from .training import gradient_penalty

Model = Callable[[torch.Tensor], torch.Tensor]
REGULARIZERS = ("spectral", "gp", None)


@dataclass
class FitInfo:
    """What happened during :func:`fit_critic`. Losses are balanced logistic losses in nats."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0              # 1-based epoch whose weights were kept
    epochs_run: int = 0
    stopped_early: bool = False
    val_before: dict = field(default_factory=dict)   # calibration_report of the raw d on the val split
    val_after: dict = field(default_factory=dict)    # ... of the calibrated d
    val_index: tuple = ()    # (indices into real, into fake) of the held-out split
    calibration_test: dict = field(default_factory=dict)   # see miscalibration_test


class FittedCritic(CalibratedCritic):
    """The result of :func:`fit_critic`: x -> a * (a0 D0(x) + b0 + C(x)) + b, shape (N,).

    ``.net`` is C, ``.base`` D0 (None without one; a plain callable is wrapped in :class:`Call`),
    ``.base_calibration`` (a0, b0), ``.calibration`` (a, b), ``.info`` a :class:`FitInfo`;
    ``raw(x)`` = a0 D0(x) + b0 + C(x), the logit before the final calibration.
    """

    def __init__(self, net: nn.Module, base: Optional[Model], calibration: Affine, info: FitInfo,
                 base_calibration: Optional[Affine] = None):
        nn.Module.__init__(self)
        self.net, self.base, self.calibration = net, None if base is None else _as_module(base), calibration
        self.base_calibration, self.info = base_calibration or Affine(), info

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        c = as_logits(self.net(x), len(x), "critic")
        return c if self.base is None else self.base_calibration(as_logits(self.base(x), len(x), "base")) + c


def critic_mlp(in_features: int, hidden: Sequence[int] = (128, 128), small_output: bool = False) -> nn.Sequential:
    """Flatten, then SiLU layers of ``hidden`` widths, then a linear logit; ``hidden=()`` is a
    linear critic. SiLU keeps grad d continuous, which the flow follows. ``small_output``: the
    output layer starts near zero (weights x 1e-3, bias 0), so that D0 + C starts at D0."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = in_features
    for w in hidden:
        layers += [nn.Linear(d, w), nn.SiLU()]
        d = w
    layers.append(nn.Linear(d, 1))
    if small_output:
        with torch.no_grad():
            layers[-1].weight.mul_(1e-3), layers[-1].bias.zero_()
    return nn.Sequential(*layers)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral-normalise every Linear / Conv layer of ``module`` not already parametrised (in place)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not parametrize.is_parametrized(m):
            spectral_norm(m)
    return module


def fit_critic(real: torch.Tensor, fake: torch.Tensor, *, critic: Optional[nn.Module] = None,
               base: Optional[Model] = None, calibrate_base: bool = True, hidden: Sequence[int] = (128, 128),
               regularizer: str | None = None, gp_weight: float = 1.0, val_fraction: float = 0.2,
               max_epochs: int = 200, patience: int | None = 10, lr: float = 1e-3, batch_size: int = 256,
               calibrate: str | None = "platt", calibration_level: float | None = 0.05, seed: int | None = 0,
               progress: bool = False) -> FittedCritic:
    """Fit d = D0 + C (``base`` given) or d = C to the log density ratio log mu/rho.

    Args:
        real, fake: tensors (N, ...) of data and of samples of the model being refined, on the
            device to train on, same feature shape. Each is split at random into a training part
            and a held-out part of ``val_fraction`` (at least one sample each).
        critic: the initial net C (x -> (N,) or (N, 1)); it is copied, never modified. Default:
            :func:`critic_mlp` with ``hidden`` widths on the flattened input (output layer
            started near zero when there is a base, so that d starts at the calibrated D0).
        base: frozen D0 (callable or nn.Module, logit convention of :mod:`dgflow.critics`). Its
            parameters, buffers, requires_grad and train flags are left exactly as they were.
        calibrate_base: first Platt-scale D0 on the training split (a0 D0 + b0, held fixed), so
            that C starts from the best affine use of D0 and learns only the residual; False
            fits d = D0 + C. A WGAN critic's logit can be off by a factor and an offset of 50.
        regularizer: None (default: early stopping is the regulariser), ``"spectral"`` (spectral
            norm on C's layers) or ``"gp"`` (WGAN-GP penalty on C, weight ``gp_weight``). Both
            hold |grad d| near or below 1 in input units, so they cannot fit a log ratio steeper
            than that: on 2D 25Gaussians (modes of std 0.05) they stay at chance
            (benchmarks/calibration_table.py). Use them where unit steps in x are large (images).
        patience: stop after this many epochs without a lower held-out loss and keep the best
            epoch's weights; None trains ``max_epochs`` epochs and keeps the last weights.
        calibrate: ``"platt"``, ``"temperature"`` or None: affine map of d fitted on the
            held-out split (the same split early stopping used). It is applied only if a
            likelihood-ratio test on that split rejects "d is already calibrated" at level
            ``calibration_level`` (None: always applied): on a calibrated d, a map fitted on a
            few hundred points would only add noise. ``info.calibration_test`` has the test.
        seed: seeds the split, the init and the batches inside a forked RNG (global RNG state
            untouched); None uses the global RNG.
    Returns:
        a :class:`FittedCritic` (an nn.Module x -> d(x) of shape (N,)); C and the calibration
        are in eval mode, D0's train/eval flags are left as the caller had them.
    """
    real, fake = _check_pair(real, fake, "real", "fake")
    val_fraction = check_float(val_fraction, "val_fraction")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if regularizer not in REGULARIZERS:
        raise ValueError(f"regularizer: unknown {regularizer!r}; use one of {REGULARIZERS}")
    if calibrate not in CALIBRATIONS:
        raise ValueError(f"calibrate: unknown {calibrate!r}; use one of {CALIBRATIONS}")
    for name, x in (("real", real), ("fake", fake)):
        if len(x) < 2:
            raise ValueError(f"{name} needs at least 2 samples to split off a held-out part, got {len(x)}")
    cfg = dict(gp_weight=check_float(gp_weight, "gp_weight", nonnegative=True),
               max_epochs=check_int(max_epochs, "max_epochs", minimum=1),
               patience=None if patience is None else check_int(patience, "patience", minimum=1),
               lr=check_float(lr, "lr", positive=True), batch_size=check_int(batch_size, "batch_size", minimum=2),
               gp=regularizer == "gp", progress=progress)
    if critic is None and any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
        raise ValueError(f"hidden must be a sequence of positive ints, got {hidden!r}")
    if critic is not None and not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module (it is trained), got {type(critic).__name__}")
    if calibration_level is not None and not 0 < check_float(calibration_level, "calibration_level") < 1:
        raise ValueError(f"calibration_level must be in (0, 1) or None, got {calibration_level}")
    devices = [real.device.index or 0] if real.is_cuda else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(check_int(seed, "seed"))
        net = critic_mlp(real[0].numel(), hidden, base is not None).to(real.device, real.dtype) if critic is None \
            else copy.deepcopy(critic)
        net = apply_spectral_norm(net) if regularizer == "spectral" else net
        (ivr, itr), (ivf, itf) = _split(real, val_fraction), _split(fake, val_fraction)
        tr, vr, tf, vf = real[itr], real[ivr], fake[itf], fake[ivf]
        b = [x.new_zeros(len(x)) if base is None else logits(None, base, x, name="base") for x in (tr, vr, tf, vf)]
        base_affine = Affine(*fit_affine(b[0], b[2]), "platt") if base is not None and calibrate_base else Affine()
        b = [base_affine.to(real.device)(v) for v in b]
        info = FitInfo(val_index=(ivr, ivf))
        _train(net, (tr, b[0]), (tf, b[2]), (vr, b[1]), (vf, b[3]), info, **cfg)
    raw = logits(None, net, vr) + b[1], logits(None, net, vf) + b[3]
    test = miscalibration_test(*raw, *fit_affine(*raw, calibrate), calibrate, calibration_level) if calibrate else {}
    info.calibration_test = test
    affine = Affine(test["a"], test["b"], calibrate) if test.get("applied") else Affine()
    fitted = FittedCritic(net.eval(), base, affine.to(real.device), info, base_affine)
    info.val_before = calibration_report(fitted.raw, vr, vf)
    info.val_after = calibration_report(fitted, vr, vf) if calibrate else dict(info.val_before)
    fitted.training = fitted.calibration.training = fitted.base_calibration.training = False   # base untouched
    return fitted


def _split(x: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out indices (at least 1, at most N - 1) and training indices, at random."""
    n_val = min(max(1, round(val_fraction * len(x))), len(x) - 1)
    perm = torch.randperm(len(x)).to(x.device)
    return perm[:n_val], perm[n_val:]


def _cycled(n: int, total: int, device: torch.device) -> torch.Tensor:
    """``total`` indices into range(n): concatenated random permutations."""
    return torch.cat([torch.randperm(n) for _ in range(-(-total // n))])[:total].to(device)


def _train(net: nn.Module, train_r, train_f, val_r, val_f, info: FitInfo, *, gp_weight: float,
           max_epochs: int, patience: int | None, lr: float, batch_size: int, gp: bool, progress: bool
           ) -> None:
    """Adam on the balanced logistic loss (+ GP); balanced minibatches of batch_size/2 per class."""
    (xr, br), (xf, bf) = train_r, train_f
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    half = batch_size // 2
    steps = -(-max(len(xr), len(xf)) // half)
    best, best_state, wait = math.inf, copy.deepcopy(net.state_dict()), 0
    bar = tqdm(range(max_epochs), disable=not progress, desc="fit_critic")
    for epoch in bar:
        net.train()
        ir, jf = _cycled(len(xr), steps * half, xr.device), _cycled(len(xf), steps * half, xf.device)
        total = 0.0
        for s in range(steps):
            i, j = ir[s * half:(s + 1) * half], jf[s * half:(s + 1) * half]
            loss = logistic_loss(as_logits(net(xr[i]), len(i)) + br[i], as_logits(net(xf[j]), len(j)) + bf[j])
            total += float(loss.detach())
            if gp:
                loss = loss + gp_weight * gradient_penalty(net, xr[i], xf[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        val = float(logistic_loss(logits(None, net, val_r[0]) + val_r[1], logits(None, net, val_f[0]) + val_f[1]))
        if not math.isfinite(val):
            raise FloatingPointError(f"fit_critic: held-out loss is {val} at epoch {epoch + 1}; lower lr")
        info.train_loss.append(total / steps), info.val_loss.append(val)
        info.epochs_run = epoch + 1
        bar.set_postfix(train=f"{total / steps:.4f}", val=f"{val:.4f}")
        if val < best:
            best, best_state, wait, info.best_epoch = val, copy.deepcopy(net.state_dict()), 0, epoch + 1
        else:
            wait += 1
        if patience is not None and wait >= patience:
            info.stopped_early = True
            break
    if patience is not None:
        net.load_state_dict(best_state)
    else:
        info.best_epoch = info.epochs_run
