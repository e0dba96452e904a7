"""Calibration of fitted critics where the true log density ratio log mu/rho is known.

    nohup python benchmarks/calibration_table.py > calibration.log 2>&1 &
    python benchmarks/calibration_table.py --n-train 400 --n-test 400 --n-kde 2000 \
        --out benchmarks/results/_scratch/calibration.json           # a smoke run

Two problems, data mu vs model rho, each with 4,000 training points per side (``fit_critic``
holds out 20% of them; ``--n-train``) and 4,000 fresh test points per side (``--n-test``):

(a) ``gaussians``: mu = N(0, I_2), rho = N((1, 0), 1.5^2 I_2); both densities exact, so the
    true log ratio is an exact quadratic.
(b) ``25gaussians``: mu = the 25Gaussians mixture (exact mixture formula, docs/design.md §3),
    rho = the shipped WGAN-GP generator (zoo ``toy2d-25gaussians-wgangp``),
    whose density is estimated by a Gaussian KDE (scikit-learn ``KernelDensity``, rtol 1e-3) of
    20,000 generator samples (``--n-kde``), bandwidth chosen by held-out log-likelihood on a
    quarter as many more (5,000). The KDE's own
    error is measured by running the same procedure on data samples, where log mu is exact.

Critics, all with ``fit_critic``'s defaults (SiLU MLP 128-128, Adam 1e-3, batch 256, at most 200
epochs, patience 10, 20% held out) except what the row names: plain logistic (no regulariser, no
early stopping: 200 epochs, last weights), early stopping alone, spectral norm + early stopping,
gradient penalty (weight 1) + early stopping, each before and after Platt / temperature scaling
fitted on its held-out split. On (b) also the shipped WGAN-GP critic, raw and after Platt scaling
on the same held-out points, and the corrector of docs/design.md §1 with that critic as D0
(Platt-scaled on the training split, ``calibrate_base=True``) plus C, early stopping. Platt is
applied unconditionally here (``calibration_level=None``); whether the library's default test
(level 0.05) would have applied it is recorded as ``gate``.

Metrics on the test points (both sides): balanced logistic loss, ECE (15 bins), RMSE / MAE of d
against the true log ratio, the same with both clipped to [-10, 10] (``*_clip``; beyond that no
classifier has signal and on (b) the truth reaches -1e3 between modes) and mean |sigmoid(d) -
sigmoid(truth)| (``prob_mae``). Writes ``benchmarks/results/calibration.json`` and ``.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import distributions as D
from torch import nn

import dgflow.zoo
from benchlib import RESULTS, command_line, display_path, pyplot
from dgflow.calibration import calibrate, calibration_report
from dgflow.data import toy2d
from dgflow.fit import fit_critic
from dgflow.models import AdaptedGenerator

MODEL = "toy2d-25gaussians-wgangp"  # the zoo's 2D WGAN-GP: rho of problem (b), and its critic
N_TRAIN, N_TEST, N_KDE = 4000, 4000, 20000  # defaults of --n-train, --n-test, --n-kde
BANDWIDTHS = np.geomspace(0.005, 0.5, 13)
KDE_RTOL = 1e-3   # relative tolerance of sklearn's tree KDE: log-density error <= 1e-3, 10-30x faster
CLIP = 10.0


def gaussians_problem() -> dict:
    """mu = N(0, I), rho = N((1, 0), 1.5^2 I): exact log ratio."""
    mu = D.MultivariateNormal(torch.zeros(2), torch.eye(2))
    rho = D.MultivariateNormal(torch.tensor([1.0, 0.0]), 1.5 ** 2 * torch.eye(2))
    return {"name": "gaussians", "real": lambda n, g: torch.randn(n, 2, generator=g),
            "fake": lambda n, g: torch.tensor([1.0, 0.0]) + 1.5 * torch.randn(n, 2, generator=g),
            "truth": lambda x: mu.log_prob(x) - rho.log_prob(x), "extent": (-4.0, 5.0, -4.5, 4.5),
            "notes": "mu = N(0, I), rho = N((1,0), 1.5^2 I), exact densities"}


def mixture_log_density(x: torch.Tensor) -> torch.Tensor:
    """log mu(x) of the 25Gaussians data (equal weights, std toy2d.GAUSS_STD), exact."""
    means = toy2d.gaussian_means()
    comp = D.Independent(D.Normal(means, torch.full_like(means, toy2d.GAUSS_STD)), 1)
    return D.MixtureSameFamily(D.Categorical(torch.ones(len(means))), comp).log_prob(x)


def fit_kde(train: np.ndarray, val: np.ndarray):
    """Gaussian KDE with the bandwidth of highest mean held-out log-likelihood over BANDWIDTHS."""
    from sklearn.neighbors import KernelDensity

    scores = [float(KernelDensity(bandwidth=h, rtol=KDE_RTOL).fit(train).score_samples(val).mean()) for h in BANDWIDTHS]
    best = int(np.argmax(scores))
    if best in (0, len(BANDWIDTHS) - 1):
        print(f"warning: KDE bandwidth {BANDWIDTHS[best]:.4g} is at the edge of the grid")
    kde = KernelDensity(bandwidth=float(BANDWIDTHS[best]), rtol=KDE_RTOL).fit(train)
    return kde, float(BANDWIDTHS[best]), scores[best]


def kde_sanity(rng: torch.Generator, n_kde: int, n_test: int) -> dict:
    """The same KDE procedure on data samples, scored against the exact log mu on fresh data points."""
    kde, h, ll = fit_kde(toy2d.as_numpy(toy2d.sample("25gaussians", n_kde, rng)),
                         toy2d.as_numpy(toy2d.sample("25gaussians", n_kde // 4, rng)))
    x = toy2d.sample("25gaussians", n_test, rng)
    err = torch.from_numpy(kde.score_samples(toy2d.as_numpy(x))) - mixture_log_density(x).double()
    return {"bandwidth": h, "heldout_loglik": ll, "rmse_log_density_on_data": float(err.pow(2).mean().sqrt()),
            "mean_error_on_data": float(err.mean())}


def toy_problem(generator: AdaptedGenerator, rng: torch.Generator, n_kde: int) -> dict:
    """mu = 25Gaussians (exact), rho = the generator's density by KDE."""

    @torch.no_grad()
    def fake(n: int, g: torch.Generator) -> torch.Tensor:
        return generator(generator.sample_prior(n, generator=g))

    kde, h, ll = fit_kde(toy2d.as_numpy(fake(n_kde, rng)), toy2d.as_numpy(fake(n_kde // 4, rng)))

    def truth(x: torch.Tensor) -> torch.Tensor:
        log_rho = torch.from_numpy(kde.score_samples(toy2d.as_numpy(x))).float()
        return mixture_log_density(x) - log_rho

    return {"name": "25gaussians", "real": lambda n, g: toy2d.sample("25gaussians", n, g), "fake": fake,
            "truth": truth, "extent": (-5.0, 5.0, -5.0, 5.0),
            "notes": "mu = 25Gaussians exact; rho = shipped WGAN-GP generator by KDE",
            "kde": {"bandwidth": h, "heldout_loglik": ll}}


def variants(real: torch.Tensor, fake: torch.Tensor, wgan_critic: nn.Module | None, seed: int) -> tuple[dict, dict]:
    """The critics to compare (name -> x -> d) and what each fit did."""
    out, fits = {}, {}
    specs = {"plain logistic": dict(regularizer=None, patience=None), "early stop": dict(regularizer=None),
             "spectral norm + early stop": dict(regularizer="spectral"),
             "grad. penalty + early stop": dict(regularizer="gp")}
    if wgan_critic is not None:
        specs["corrector: WGAN-GP D0 + C, early stop"] = dict(base=wgan_critic)
    for label, kw in specs.items():
        t0 = time.perf_counter()
        f = fit_critic(real, fake, calibrate="platt", calibration_level=None, seed=seed, **kw)
        ir, jf = f.info.val_index
        out[label] = f.raw
        out[label + " + Platt"] = f
        out[label + " + temperature"] = calibrate(f.raw, real[ir], fake[jf], "temperature")
        gate = dict(f.info.calibration_test)
        gate["default_level_0.05_applies"] = bool(gate["stat"] > -2 * math.log(0.05))
        fits[label] = {"epochs_run": f.info.epochs_run, "best_epoch": f.info.best_epoch,
                      "stopped_early": f.info.stopped_early, "gate": gate, "seconds": time.perf_counter() - t0,
                      "val_loss_min": min(f.info.val_loss), "val_loss_last": f.info.val_loss[-1],
                      "train_loss_last": f.info.train_loss[-1],
                      "base_calibration": [float(f.base_calibration.a), float(f.base_calibration.b)]}
        val_index = (ir, jf)   # the same for every fit: same seed, same split
    if wgan_critic is not None:
        ir, jf = val_index
        out["WGAN-GP critic (raw)"] = wgan_critic
        out["WGAN-GP critic + Platt"] = calibrate(wgan_critic, real[ir], fake[jf], "platt")
    return out, fits


def run_problem(problem: dict, seed: int, n_train: int, n_test: int, wgan_critic: nn.Module | None = None) -> dict:
    """Every critic of :func:`variants` fitted on ``n_train`` points per side, scored on ``n_test``."""
    rng = torch.Generator().manual_seed(seed)
    real, fake = problem["real"](n_train, rng), problem["fake"](n_train, rng)
    xr, xf = problem["real"](n_test, rng), problem["fake"](n_test, rng)
    critics, fits = variants(real, fake, wgan_critic, seed)
    critics = {"true log ratio": problem["truth"], **critics}
    rows = {name: calibration_report(c, xr, xf, true_log_ratio=problem["truth"]) for name, c in critics.items()}
    for name, c in critics.items():
        if hasattr(c, "calibration"):
            rows[name]["a"], rows[name]["b"] = float(c.calibration.a), float(c.calibration.b)
    return {"notes": problem["notes"], "rows": rows, "fits": fits, "critics": critics, "extent": problem["extent"],
            **({"kde": problem["kde"]} if "kde" in problem else {})}


def table(name: str, rows: dict) -> str:
    cols = ["logistic_loss", "ece", "rmse", "mae", "rmse_clip", "mae_clip", "prob_mae"]
    lines = [f"### {name}", "", "| critic | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r, m in rows.items():
        lines.append(f"| {r} | " + " | ".join(f"{m[c]:.4g}" for c in cols) + " |")
    return "\n".join(lines)


@torch.no_grad()
def plot(results: dict, path: Path, names: list[str]) -> None:
    plt = pyplot()
    probs = list(results)
    fig, axes = plt.subplots(len(probs), len(names), figsize=(2.6 * len(names), 3.0 * len(probs)), squeeze=False,
                             layout="constrained")
    for i, p in enumerate(probs):
        x0, x1, y0, y1 = results[p]["extent"]
        gx, gy = torch.meshgrid(torch.linspace(x0, x1, 120), torch.linspace(y0, y1, 120), indexing="xy")
        grid = torch.stack([gx.flatten(), gy.flatten()], 1)
        for j, n in enumerate(names):
            ax = axes[i, j]
            c = results[p]["critics"].get(n)
            if c is None:
                ax.axis("off")
                continue
            d = c(grid).clamp(-CLIP, CLIP).reshape(gx.shape)
            im = ax.imshow(d.numpy(), origin="lower", extent=(x0, x1, y0, y1), cmap="RdBu_r", vmin=-CLIP, vmax=CLIP)
            rm = results[p]["rows"][n]
            ax.set_title(f"{p}\n{n}\nrmse_clip {rm['rmse_clip']:.2f}, ECE {rm['ece']:.3f}", fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.6, label=f"d(x), clipped to ±{CLIP:g}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=N_TRAIN, help="training points per side")
    p.add_argument("--n-test", type=int, default=N_TEST, help="test points per side")
    p.add_argument("--n-kde", type=int, default=N_KDE,
                   help="KDE samples (and a quarter as many to choose its bandwidth)")
    p.add_argument("--out", default=str(RESULTS / "calibration.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = dgflow.zoo.load(MODEL)
    results = {"gaussians": run_problem(gaussians_problem(), a.seed, a.n_train, a.n_test)}
    toy = toy_problem(model.generator, torch.Generator().manual_seed(a.seed + 100), a.n_kde)
    results["25gaussians"] = run_problem(toy, a.seed, a.n_train, a.n_test, model.critic)
    sanity = kde_sanity(torch.Generator().manual_seed(a.seed + 200), a.n_kde, a.n_test)
    names = ["true log ratio", "plain logistic", "early stop + Platt", "spectral norm + early stop + Platt",
             "grad. penalty + early stop + Platt", "WGAN-GP critic + Platt",
             "corrector: WGAN-GP D0 + C, early stop + Platt"]
    png = Path(a.out).with_suffix(".png")
    plot(results, png, names)
    for name, r in results.items():
        print(table(name, r["rows"]) + "\n")
    out = {"command": command_line(__file__, argv),
           "settings": {"n_train_per_side": a.n_train, "n_test_per_side": a.n_test, "n_kde": a.n_kde,
                        "n_kde_val": a.n_kde // 4, "bandwidth_grid": BANDWIDTHS.tolist(), "clip": CLIP,
                        "seed": a.seed, "threads": a.threads, "fit_critic": "library defaults unless named"},
           "model": MODEL, "checkpoint": ", ".join(display_path(p) for p in model.weights_paths),
           "kde_sanity_on_data": sanity,
           "problems": {k: {kk: vv for kk, vv in v.items() if kk not in ("critics", "extent")}
                        for k, v in results.items()},
           "seconds": time.perf_counter() - t0, "platform": platform.platform(), "torch": torch.__version__,
           "png": png.name}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out} and {png} in {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
