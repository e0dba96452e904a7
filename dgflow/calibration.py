"""Calibration of critic logits as log density ratios, and the metrics that check it.

Losses are class-balanced, 0.5 (E_real softplus(-d) + E_fake softplus(d)), so the optimum is
log mu/rho whatever the sizes of the two sets, and log 2 ~ 0.693 is the loss of chance.
:func:`fit_affine` fits Platt scaling a*d + b (Platt 1999) or temperature scaling d / T
(Guo et al. 2017) on held-out real/fake logits; :func:`calibrate` wraps any critic with it
(the critic itself is not changed); :func:`miscalibration_test` is a likelihood-ratio test of
whether the map is worth applying.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_logits, check_float, check_int, check_latents
from .models.modules import attach_modules
from .passes import EVAL_CHUNK, logits

Model = Callable[[torch.Tensor], torch.Tensor]
CALIBRATIONS = ("platt", "temperature", None)

def logistic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Class-balanced logistic loss 0.5 (mean softplus(-d_real) + mean softplus(d_fake)), nats."""
    return 0.5 * (F.softplus(-d_real).mean() + F.softplus(d_fake).mean())


def expected_calibration_error(d_real: torch.Tensor, d_fake: torch.Tensor, bins: int = 15) -> float:
    """Binned ECE of p = sigmoid(d) as P(x is real) (Guo et al. 2017): equal-width bins of p, each
    class weighted 1/2 as in the loss, so ECE = sum_b |sum_{i in b} w_i (y_i - p_i)|, sum w = 1."""
    bins = check_int(bins, "bins", minimum=1)
    p = torch.sigmoid(torch.cat([d_real, d_fake]).detach().double())
    y = torch.cat([torch.ones_like(d_real), torch.zeros_like(d_fake)]).double()
    w = torch.cat([torch.full_like(p[:len(d_real)], 0.5 / len(d_real)),
                   torch.full_like(p[len(d_real):], 0.5 / len(d_fake))])
    idx = (p * bins).long().clamp_(max=bins - 1)
    gap = torch.zeros(bins, dtype=torch.float64, device=p.device).index_add_(0, idx, w * (y - p))
    return float(gap.abs().sum())


def log_ratio_error(d: torch.Tensor, truth: torch.Tensor, clip: float = 10.0) -> dict[str, float]:
    """Error of fitted logits ``d`` against the true log mu/rho at the same points.

    ``rmse``/``mae`` raw; ``rmse_clip``/``mae_clip`` with both clipped to [-clip, clip] (beyond
    |log ratio| = 10 the posterior is within 5e-5 of 0 or 1, so no classifier has signal there);
    ``prob_mae`` = mean |sigmoid(d) - sigmoid(truth)|, the error of the posterior P(real | x).
    """
    d, truth = d.detach().double().flatten(), truth.detach().double().flatten()
    if d.shape != truth.shape:
        raise ValueError(f"truth: expected {d.numel()} values like d, got {truth.numel()}")
    clip = check_float(clip, "clip", positive=True)
    e, ec = d - truth, d.clamp(-clip, clip) - truth.clamp(-clip, clip)
    return {"rmse": float(e.pow(2).mean().sqrt()), "mae": float(e.abs().mean()),
            "rmse_clip": float(ec.pow(2).mean().sqrt()), "mae_clip": float(ec.abs().mean()),
            "prob_mae": float((torch.sigmoid(d) - torch.sigmoid(truth)).abs().mean()), "n": d.numel()}


def calibration_report(critic: Model, x_real: torch.Tensor, x_fake: torch.Tensor, *, bins: int = 15,
                       true_log_ratio: Optional[Model] = None, batch_size: int | None = EVAL_CHUNK
                       ) -> dict[str, float]:
    """Held-out logistic loss, ECE, balanced accuracy and mean logits of ``critic`` on real/fake
    points; with ``true_log_ratio`` (x -> log mu(x)/rho(x)) also :func:`log_ratio_error` on both."""
    x_real, x_fake = _check_pair(x_real, x_fake, "x_real", "x_fake")
    dr, df = logits(None, critic, x_real, batch_size, name="x_real"), logits(None, critic, x_fake, batch_size, name="x_fake")
    out = {"logistic_loss": float(logistic_loss(dr.double(), df.double())),
           "ece": expected_calibration_error(dr, df, bins),
           "accuracy": 0.5 * float((dr > 0).double().mean() + (df < 0).double().mean()),
           "d_real_mean": float(dr.mean()), "d_fake_mean": float(df.mean())}
    if true_log_ratio is not None:
        truth = torch.cat([true_log_ratio(x_real), true_log_ratio(x_fake)]).to(dr.device)
        out.update(log_ratio_error(torch.cat([dr, df]), truth))
    return out


def fit_affine(d_real: torch.Tensor, d_fake: torch.Tensor, method: str = "platt",
               max_iter: int = 200) -> tuple[float, float]:
    """(a, b) minimising :func:`logistic_loss` of a*d + b on held-out logits.

    ``"platt"``: a and b free (a < 0 means the critic ranks backwards), by Newton's method on the
    two parameters (:func:`_platt_newton`). ``"temperature"``: b = 0 and a = 1/T > 0, by L-BFGS
    over log a. Both convex problems, solved in float64 on the CPU.
    """
    if method not in ("platt", "temperature"):
        raise ValueError(f"method: unknown {method!r}; use 'platt' or 'temperature'")
    dr, df = (d.detach().flatten().to("cpu", torch.float64) for d in (d_real, d_fake))
    if len(dr) == 0 or len(df) == 0:
        raise ValueError("d_real and d_fake must both be non-empty to fit a calibration")
    a, b = _platt_newton(dr, df, max_iter) if method == "platt" else _temperature_lbfgs(dr, df, max_iter)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise FloatingPointError(f"calibration ({method}) diverged: a={a}, b={b}; the held-out "
                                 "logits separate real from fake perfectly")
    return a, b


def _platt_newton(dr: torch.Tensor, df: torch.Tensor, max_iter: int) -> tuple[float, float]:
    """Platt scaling by Newton's method with backtracking (Armijo).

    On standardised logits u = (d - m) / s (pooled mean and std), from (a, b) = (0, 0), where every
    p = 1/2 and the Hessian is well conditioned whatever the critic's scale and offset. The
    class-balanced loss has gradient sum_i w_i (p_i - y_i) (u_i, 1) and Hessian
    sum_i w_i p_i (1 - p_i) (u_i, 1)(u_i, 1)^T, p = sigmoid(a u + b), w_i = 1 / (2 n_class). A
    handful of iterations of vector arithmetic, where a generic optimiser spends tens of autograd
    passes (this fit runs inside every :class:`dgflow.stopping.DataMatch` run). A constant critic
    maps to 0: chance.
    """
    d = torch.cat([dr, df])
    m, s = float(d.mean()), float(d.std(correction=0))
    if not s > 0:
        return 1.0, -m
    y = torch.cat([torch.ones_like(dr), torch.zeros_like(df)])
    w = torch.cat([torch.full_like(dr, 0.5 / len(dr)), torch.full_like(df, 0.5 / len(df))])
    feats = torch.stack([(d - m) / s, torch.ones_like(d)], 1)
    sign = 1 - 2 * y  # softplus(-t) for real, softplus(t) for fake

    def loss(theta: torch.Tensor) -> float:  # logistic_loss, in the weights the gradient and Hessian use
        return float((w * F.softplus(sign * (feats @ theta))).sum())

    theta = torch.zeros(2, dtype=torch.float64)
    current = loss(theta)
    for _ in range(max_iter):
        p = torch.sigmoid(feats @ theta)
        grad = feats.T @ (w * (p - y))
        hess = (feats * (w * p * (1 - p)).unsqueeze(1)).T @ feats
        step = torch.linalg.pinv(hess) @ grad
        slope = float(grad @ step)  # the squared Newton decrement: twice the predicted decrease
        if not slope > 0:
            break
        if slope < 1e-12:  # a predicted decrease under 1e-12 nats: one last full step, if it does no harm
            trial = theta - step
            if loss(trial) <= current:
                theta = trial
            break
        t = 1.0
        while True:
            trial = theta - t * step
            value = loss(trial)
            if value <= current - 1e-4 * t * slope or t < 1e-12:
                break
            t /= 2
        if not value <= current:
            break  # no decrease along the Newton direction: optimal to float precision
        theta, current = trial, value
        if t < 1e-12:
            break
    a_u, b_u = float(theta[0]), float(theta[1])
    return a_u / s, b_u - a_u * m / s


def _temperature_lbfgs(dr: torch.Tensor, df: torch.Tensor, max_iter: int) -> tuple[float, float]:
    """Temperature scaling a = exp(theta) > 0, b = 0, by L-BFGS with a strong-Wolfe line search."""
    theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        a = theta[0].exp()
        value = logistic_loss(a * dr, a * df)
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    return float(theta[0].detach().exp()), 0.0


def miscalibration_test(d_real: torch.Tensor, d_fake: torch.Tensor, a: float, b: float, method: str,
                        level: float | None = 0.05) -> dict:
    """Likelihood-ratio test of "d is calibrated" against the fitted map a*d + b on the same points.

    Statistic 2 n (L(d) - L(a d + b)), n = number of points, L the balanced logistic loss (with
    equal class sizes, twice the log-likelihood gain); under the null it is asymptotically chi^2
    with 2 (Platt) or 1 (temperature) degrees of freedom (Wilks). ``applied`` is True when it
    exceeds the (1 - level) quantile, or when level is None.
    """
    n, dof = len(d_real) + len(d_fake), 2 if method == "platt" else 1
    l0 = float(logistic_loss(d_real.double(), d_fake.double()))
    l1 = float(logistic_loss(a * d_real.double() + b, a * d_fake.double() + b))
    stat = 2 * n * (l0 - l1)
    if level is None:
        return {"a": a, "b": b, "stat": stat, "threshold": None, "applied": True}
    if not 0 < check_float(level, "level") < 1:
        raise ValueError(f"level must be in (0, 1) or None, got {level}")
    thr = -2 * math.log(level) if dof == 2 else float(torch.special.ndtri(torch.tensor(1 - level / 2.0))) ** 2
    return {"a": a, "b": b, "stat": stat, "threshold": thr, "applied": stat > thr}


class Affine(nn.Module):
    """d -> a * d + b (a calibration map); a and b are buffers, not trained parameters."""

    def __init__(self, a: float = 1.0, b: float = 0.0, method: str | None = None):
        super().__init__()
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))
        self.method = method

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return d * self.a + self.b

    def extra_repr(self) -> str:
        return f"a={float(self.a):.4g}, b={float(self.b):.4g}, method={self.method}"


class Call(nn.Module):
    """A plain callable as an nn.Module; the modules behind it (a bound method's owner) are
    registered, so .to(), state_dict() and :func:`dgflow.models.frozen` reach them."""

    def __init__(self, fn: Model):
        super().__init__()
        self.fn = fn
        attach_modules(self, fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _as_module(fn: Model) -> nn.Module:
    return fn if isinstance(fn, nn.Module) else Call(fn)


class CalibratedCritic(nn.Module):
    """x -> a * critic(x) + b, shape (N,). ``raw(x)`` is the uncalibrated critic(x)."""

    def __init__(self, critic: Model, calibration: Affine):
        super().__init__()
        self.critic, self.calibration = _as_module(critic), calibration

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return as_logits(self.critic(x), len(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.calibration(self.raw(x))


def calibrate(critic: Model, x_real: torch.Tensor, x_fake: torch.Tensor, method: str = "platt",
              batch_size: int | None = EVAL_CHUNK) -> CalibratedCritic:
    """Wrap any critic with an affine calibration fitted on held-out real/fake points
    (e.g. a WGAN critic, whose scale is arbitrary). The critic itself is not changed."""
    x_real, x_fake = _check_pair(x_real, x_fake, "x_real", "x_fake")
    a, b = fit_affine(logits(None, critic, x_real, batch_size, name="x_real"),
                      logits(None, critic, x_fake, batch_size, name="x_fake"), method)
    return CalibratedCritic(critic, Affine(a, b, method).to(x_real.device))


def _check_pair(real: object, fake: object, rname: str, fname: str) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = check_latents(real, rname), check_latents(fake, fname)
    for name, x in ((rname, real), (fname, fake)):
        if len(x) == 0:
            raise ValueError(f"{name} is empty (0 samples)")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"{fname} has samples of shape {tuple(fake.shape[1:])} but {rname} has "
                         f"{tuple(real.shape[1:])}; both must hold samples of the same space")
    if real.device != fake.device:
        raise ValueError(f"{fname} is on {fake.device} but {rname} is on {real.device}")
    return real, fake
