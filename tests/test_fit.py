"""fit_critic, calibration and the density-ratio corrector, on Gaussians where log mu/rho is known.

Data N(m1, I) vs model N(m2, I): log mu(x)/rho(x) = (m1 - m2).x - (|m1|^2 - |m2|^2) / 2, linear.
"""
import math

import pytest
import torch
from torch import nn

from dgflow.calibration import (calibrate, calibration_report, expected_calibration_error,
                                fit_affine, log_ratio_error, logistic_loss, miscalibration_test)
from dgflow.fit import fit_critic
from dgflow.passes import logits

M1, M2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])   # true slope |m1 - m2| = 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets: a second thread only adds contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def truth(x):
    return x @ (M1 - M2) - 0.5 * (M1.dot(M1) - M2.dot(M2))


def draw(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) + M1, torch.randn(n, 2, generator=g) + M2


def linear_slope(fitted):
    """The gradient of the (linear) raw logit D0 + C, from two finite points."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    d = logits(None, fitted.raw, x)
    return torch.stack([d[1] - d[0], d[2] - d[0]])


def test_recovers_linear_log_ratio_and_calibration_does_not_hurt():
    real, fake = draw(8000, 0)
    xr, xf = draw(4000, 1)
    f = fit_critic(real, fake, hidden=(), max_epochs=30, patience=None, lr=0.02, batch_size=1024)
    before = calibration_report(f.raw, xr, xf, true_log_ratio=truth)
    after = calibration_report(f, xr, xf, true_log_ratio=truth)
    assert after["rmse"] < 0.15, after
    # the held-out loss of the true log ratio is the best achievable; the fit comes close
    assert abs(after["logistic_loss"] - float(logistic_loss(truth(xr), truth(xf)))) < 0.005
    # the Platt map fitted on the held-out split, applied or not by the test, barely moves a calibrated d
    t = f.info.calibration_test
    assert t["a"] == pytest.approx(1.0, abs=0.1) and t["b"] == pytest.approx(0.0, abs=0.1)
    forced = calibration_report(lambda x: t["a"] * f.raw(x) + t["b"], xr, xf, true_log_ratio=truth)
    assert forced["rmse"] <= before["rmse"] + 0.15
    assert forced["logistic_loss"] <= before["logistic_loss"] + 3e-3


def test_mlp_with_spectral_norm_needs_and_gets_calibration():
    """A spectral-normalised net is ~1-Lipschitz, so it cannot reach slope 2; Platt fixes the scale."""
    real, fake = draw(3000, 2)
    xr, xf = draw(3000, 3)
    f = fit_critic(real, fake, hidden=(16, 16), regularizer="spectral", max_epochs=40, patience=5,
                   lr=1e-2, batch_size=512)
    before = calibration_report(f.raw, xr, xf, true_log_ratio=truth)
    after = calibration_report(f, xr, xf, true_log_ratio=truth)
    assert float(f.calibration.a) > 1.3          # the raw logits were too flat
    assert after["rmse"] < 0.5 * before["rmse"]
    assert after["rmse"] < 0.35
    assert after["ece"] < before["ece"]


def test_linear_critic_with_spectral_norm_is_one_lipschitz():
    real, fake = draw(2000, 4)
    f = fit_critic(real, fake, hidden=(), regularizer="spectral", max_epochs=30, lr=0.05, batch_size=512)
    assert float(linear_slope(f).norm()) <= 1.0 + 1e-3
    a = float(f.calibration.a)
    assert a * float(linear_slope(f).norm()) == pytest.approx(2.0, rel=0.15)


def test_gradient_penalty_pulls_the_slope_to_one():
    real, fake = draw(2000, 5)
    f = fit_critic(real, fake, hidden=(), regularizer="gp", gp_weight=100.0, max_epochs=30, patience=None,
                   lr=0.05, batch_size=512, calibrate=None)
    assert float(linear_slope(f).norm()) == pytest.approx(1.0, abs=0.05)
    assert float(f.calibration.a) == 1.0 and float(f.calibration.b) == 0.0


@pytest.mark.parametrize("scale,shift", [(5.0, 0.0), (5.0, 3.0), (0.25, -1.0)])
def test_platt_undoes_an_affine_miscalibration(scale, shift):
    xr, xf = draw(20000, 6)
    a, b = fit_affine(scale * truth(xr) + shift, scale * truth(xf) + shift, "platt")
    # calibrated logit a (scale t + shift) + b should be t: a scale = 1, a shift + b = 0
    assert a * scale == pytest.approx(1.0, rel=0.03)
    assert a * shift + b == pytest.approx(0.0, abs=0.03)


@pytest.mark.parametrize("scale,shift", [(1e-3, -50.0), (1e-3, 0.0), (1.0, 40.0), (1e3, 2.0)])
def test_platt_reaches_the_optimum_whatever_the_scale_and_offset(scale, shift):
    """The loss gradient vanishes at the fit: a WGAN critic's raw logits may sit far from 0 and at
    any scale (from a = 1, b = 0 a plain Newton or gradient start saturates the sigmoid)."""
    g = torch.Generator().manual_seed(3)
    dr = scale * (torch.randn(1000, generator=g) + 0.3) + shift
    df = scale * torch.randn(5000, generator=g) + shift
    a, b = fit_affine(dr, df, "platt")
    theta = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    loss = logistic_loss(theta[0] * dr.double() + theta[1], theta[0] * df.double() + theta[1])
    ga, gb = (float(v) for v in torch.autograd.grad(loss, theta)[0])
    # in coordinates where the logits have mean 0 and std 1 (a = a_u / s, b = b_u - a_u m / s)
    d = torch.cat([dr, df]).double()
    m, s = float(d.mean()), float(d.std())
    assert abs((ga - m * gb) / s) < 1e-9 and abs(gb) < 1e-9
    assert float(loss.detach()) < math.log(2) - 1e-3  # better than chance: the logits do carry the 0.3 shift


def test_platt_stops_at_float_precision(monkeypatch):
    """Once the predicted decrease is below float noise the fit ends, rather than taking equal-loss
    steps until max_iter (it runs inside every DataMatch run: on a 2D base's logits like these it
    spun 200 iterations, 0.3 s, before this stop)."""
    import dgflow.calibration as cal

    g = torch.Generator().manual_seed(48)  # a draw whose loss stalls ~3e-17 above its minimum
    dr, df = 1.29 * torch.randn(1000, generator=g) - 4.16, 1.29 * torch.randn(5000, generator=g) - 4.31
    calls = []
    softplus = cal.F.softplus
    monkeypatch.setattr(cal.F, "softplus", lambda x: calls.append(1) or softplus(x))
    a, b = fit_affine(dr, df, "platt")
    assert len(calls) < 20  # a few Newton steps (the stalled loop took over 6,000 loss evaluations)
    assert (a, b) == pytest.approx(fit_affine(dr, df, "platt", max_iter=8), rel=1e-9)


def test_platt_maps_a_constant_critic_to_chance():
    for c in (0.0, 3.0, -1e4):
        a, b = fit_affine(torch.full((50,), c), torch.full((7,), c), "platt")
        assert a * c + b == pytest.approx(0.0, abs=1e-9)


def test_temperature_scaling_recovers_the_temperature():
    xr, xf = draw(20000, 7)
    a, b = fit_affine(5 * truth(xr), 5 * truth(xf), "temperature")
    assert 1 / a == pytest.approx(5.0, rel=0.03) and b == 0.0
    c = calibrate(lambda x: 5 * truth(x), xr, xf, method="temperature")
    assert torch.allclose(c(xr[:5]), a * 5 * truth(xr[:5]), atol=1e-5)


class Base(nn.Module):
    """A frozen-in-spirit D0 = 0.5 * truth, with a buffer and in train mode."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        with torch.no_grad():
            self.lin.weight.copy_(0.5 * (M1 - M2)[None])
            self.lin.bias.fill_(0.0)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.lin(x)


@pytest.mark.parametrize("calibrate_base", [False, True])
def test_corrector_keeps_base_frozen_and_adds_to_it(calibrate_base):
    base = Base().train()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    real, fake = draw(6000, 8)
    f = fit_critic(real, fake, base=base, calibrate_base=calibrate_base, hidden=(), max_epochs=20, patience=None,
                   lr=0.02, batch_size=1024, calibration_level=None)      # always apply Platt: a, b != 1, 0
    assert f.base is base and f.info.calibration_test["applied"]
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k          # parameters and buffer untouched
    assert base.training and all(p.requires_grad for p in base.parameters())
    a0, b0 = float(f.base_calibration.a), float(f.base_calibration.b)
    if calibrate_base:     # D0 = truth / 2, so the Platt map of D0 alone is ~ (2, 0)
        assert a0 == pytest.approx(2.0, rel=0.1) and b0 == pytest.approx(0.0, abs=0.1)
    else:
        assert (a0, b0) == (1.0, 0.0)
    x = torch.randn(7, 2)
    with torch.no_grad():
        raw = a0 * base.eval()(x)[:, 0] + b0 + f.net(x)[:, 0]
        assert torch.allclose(f.raw(x), raw, atol=1e-5)
        assert torch.allclose(f(x), f.calibration.a * raw + f.calibration.b, atol=1e-5)
    # D0 alone has half the slope; the fitted d recovers the whole log ratio
    xr, xf = draw(3000, 9)
    assert calibration_report(f.raw, xr, xf, true_log_ratio=truth)["rmse"] < 0.2
    assert calibration_report(base, xr, xf, true_log_ratio=truth)["rmse"] > 0.5


def test_early_stopping_stops_and_keeps_the_best_epoch():
    g = torch.Generator().manual_seed(10)
    real, fake = torch.randn(24, 2, generator=g), torch.randn(24, 2, generator=g)   # no signal at all
    f = fit_critic(real, fake, hidden=(256, 256), regularizer=None, calibrate=None, max_epochs=300,
                   patience=5, lr=1e-2, batch_size=8)
    info = f.info
    assert info.stopped_early and info.epochs_run < 300
    assert info.epochs_run == info.best_epoch + 5
    assert info.val_loss[info.best_epoch - 1] == min(info.val_loss)
    assert info.val_before["logistic_loss"] == pytest.approx(min(info.val_loss), abs=1e-5)
    assert info.train_loss[-1] < info.train_loss[0]               # it was memorising


def test_no_patience_runs_every_epoch_and_keeps_the_last():
    real, fake = draw(64, 11)
    f = fit_critic(real, fake, hidden=(), regularizer=None, calibrate=None, max_epochs=7, patience=None)
    assert f.info.epochs_run == 7 and f.info.best_epoch == 7 and not f.info.stopped_early
    assert f.info.val_before["logistic_loss"] == pytest.approx(f.info.val_loss[-1], abs=1e-5)


def test_seeded_fit_is_reproducible_and_leaves_global_rng_alone():
    real, fake = draw(256, 12)
    state = torch.get_rng_state()
    f1 = fit_critic(real, fake, hidden=(8,), max_epochs=3, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    f2 = fit_critic(real, fake, hidden=(8,), max_epochs=3, seed=3)
    x = torch.randn(5, 2)
    assert torch.equal(f1(x), f2(x))


def test_given_critic_is_copied_not_modified():
    net = nn.Sequential(nn.Linear(2, 1))
    w = net[0].weight.detach().clone()
    real, fake = draw(256, 13)
    f = fit_critic(real, fake, critic=net, regularizer="spectral", max_epochs=3)
    assert torch.equal(net[0].weight, w) and f.net is not net
    assert not hasattr(net[0], "parametrizations")        # spectral norm went on the copy


def test_miscalibration_test_thresholds_and_decision():
    xr, xf = draw(4000, 15)
    ok = miscalibration_test(truth(xr), truth(xf), *fit_affine(truth(xr), truth(xf)), "platt")
    assert ok["threshold"] == pytest.approx(5.9915, abs=1e-3) and not ok["applied"]   # chi2(2) 95%
    bad = miscalibration_test(3 * truth(xr), 3 * truth(xf), *fit_affine(3 * truth(xr), 3 * truth(xf)), "platt")
    assert bad["applied"] and bad["stat"] > 100
    t = miscalibration_test(truth(xr), truth(xf), 1.0, 0.0, "temperature", level=0.05)
    assert t["threshold"] == pytest.approx(3.8415, abs=1e-3) and t["stat"] == 0.0   # chi2(1) 95%
    assert miscalibration_test(truth(xr), truth(xf), 1.0, 0.0, "platt", level=None)["applied"]


def test_ece_and_log_ratio_error_exact_cases():
    dr, df = torch.zeros(10), torch.zeros(30)
    assert expected_calibration_error(dr, df) == pytest.approx(0.0, abs=1e-7)   # p = 1/2 = balanced rate
    assert expected_calibration_error(dr + 50, df + 50) == pytest.approx(0.5, abs=1e-9)
    xr, xf = draw(20000, 14)
    assert expected_calibration_error(truth(xr), truth(xf)) < 0.02
    assert expected_calibration_error(5 * truth(xr), 5 * truth(xf)) > 0.08
    t = torch.linspace(-20, 20, 41)
    e = log_ratio_error(t + 1, t)
    assert e["rmse"] == pytest.approx(1.0) and e["mae"] == pytest.approx(1.0)
    assert e["mae_clip"] < 1.0 and e["n"] == 41
    assert e["prob_mae"] == pytest.approx(float((torch.sigmoid(t + 1) - torch.sigmoid(t)).abs().mean()))


@pytest.mark.parametrize("kwargs,match", [
    (dict(fake=torch.randn(10, 3)), r"fake has samples of shape \(3,\) but real has \(2,\)"),
    (dict(real=torch.zeros(0, 2)), "real is empty"),
    (dict(fake=torch.randn(1, 2)), "fake needs at least 2 samples"),
    (dict(val_fraction=0.0), r"val_fraction must be in \(0, 1\)"),
    (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
    (dict(regularizer="dropout"), "regularizer: unknown 'dropout'"),
    (dict(calibrate="isotonic"), "calibrate: unknown 'isotonic'"),
    (dict(hidden=(8, 0)), "hidden must be a sequence of positive ints"),
    (dict(real=torch.randn(10)), "real must have a batch dimension"),
    (dict(real=torch.full((10, 2), math.nan)), "real contains non-finite values"),
    (dict(max_epochs=0), "max_epochs must be >= 1"),
    (dict(patience=0), "patience must be >= 1"),
    (dict(gp_weight=-1.0), "gp_weight must be >= 0"),
    (dict(calibration_level=1.5), r"calibration_level must be in \(0, 1\)"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(real=torch.randn(10, 2), fake=torch.randn(10, 2))
    args.update(kwargs)
    real, fake = args.pop("real"), args.pop("fake")
    with pytest.raises((ValueError, TypeError), match=match):
        fit_critic(real, fake, **args)


def test_calibrate_and_report_check_their_inputs():
    with pytest.raises(ValueError, match="x_fake has samples of shape"):
        calibration_report(lambda x: x[:, 0], torch.randn(4, 2), torch.randn(4, 5))
    with pytest.raises(ValueError, match="method: unknown 'beta'"):
        fit_affine(torch.randn(4), torch.randn(4), "beta")
    with pytest.raises(ValueError, match="truth: expected 3 values"):
        log_ratio_error(torch.zeros(3), torch.zeros(4))


def test_fit_critic_cli_on_a_tiny_zoo_model(tmp_path, capsys):
    """`dgflow fit-critic` end to end on a tiny 2D model from a private zoo file (offline)."""
    import json

    from dgflow.cli import main
    from dgflow.io import save_modules
    from dgflow.models.arch.mlp import MLPCritic, MLPGenerator
    from zoo_testutils import SMALL, make_entry, write_zoo

    g, d = MLPGenerator(z_dim=2, out_dim=2, **SMALL), MLPCritic(in_dim=2, **SMALL)
    path = tmp_path / "toy.safetensors"
    sha = save_modules(path, {"generator": g, "critic": d})
    zoo = write_zoo(tmp_path / "zoo.yaml", {"tiny": make_entry({"path": str(path), "sha256": sha})})
    args = ["fit-critic", "--model", "tiny", "--zoo", str(zoo), "--n", "200", "--hidden", "8", "--max-epochs", "3"]
    assert main(args + ["--corrector", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["held_out_per_side"] == [40, 40] and res["settings"]["corrector"]
    assert res["fit"]["epochs_run"] <= 3 and 0 <= res["fitted"]["ece"] <= 1
    assert main(args) == 0
    assert "model's critic + Platt" in capsys.readouterr().out


def test_fitted_critic_with_a_plain_function_base_drives_refine():
    """A plain-callable D0 is wrapped; the fitted critic plugs into dgflow.refine (data space) and
    moves model samples towards the data, leaving its own parameters untouched."""
    import dgflow

    real, fake = draw(2000, 16)
    f = fit_critic(real, fake, base=lambda x: 0.5 * truth(x), hidden=(), max_epochs=20, lr=0.05, batch_size=512)
    assert f.base is not None and not any(True for _ in f.base.parameters())
    params = {k: v.clone() for k, v in f.state_dict().items()}
    x = fake[:500]
    x_ref = dgflow.refine(lambda z: z, f, x, steps=20, eta=0.05, gamma=0.0)    # ~ 20 * 0.05 * 2 = 2 = |m1 - m2|
    assert float((x_ref.mean(0) - M1).norm()) < 0.5 * float((x.mean(0) - M1).norm())
    assert all(torch.equal(v, params[k]) for k, v in f.state_dict().items())
