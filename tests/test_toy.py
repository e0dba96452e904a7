"""2D toy data and metrics: what they must say about samples whose answer is known."""
import pytest
import torch

from dgflow.data import toy2d
from dgflow.metrics import toy2d as m


def test_25gaussians_samples_are_all_high_quality_and_cover_all_modes():
    x = toy2d.sample("25gaussians", 5000, torch.Generator().manual_seed(0))
    rep = m.gaussians_report(x)
    assert rep["hq"] > 0.999 and rep["modes"] == 25 and rep["modes_1pct"] == 25


def test_points_between_modes_are_not_high_quality():
    x = toy2d.gaussian_means()[:3] + torch.tensor([1.0, 0.0])  # halfway between neighbours
    assert m.gaussians_report(x)["hq"] == 0.0 and m.gaussians_report(x)["modes"] == 0


def test_one_mode_collapse_counts_one_mode():
    x = toy2d.gaussian_means()[7] + 0.01 * torch.randn(100, 2)
    rep = m.gaussians_report(x)
    assert rep["hq"] == 1.0 and rep["modes"] == 1 and rep["modes_1pct"] == 1


def test_swissroll_on_curve_and_off_curve():
    gen = torch.Generator().manual_seed(1)
    assert m.swissroll_report(toy2d.sample("swissroll", 2000, gen))["hq"] > 0.99
    assert m.swissroll_report(torch.zeros(10, 2))["hq"] == 0.0  # the centre is far from the roll
    assert toy2d.swissroll_curve(5).shape == (5, 2)


def test_emd_is_zero_on_itself_and_equals_a_shift():
    x = torch.randn(200, 2, dtype=torch.float64)
    assert m.emd(x, x) == pytest.approx(0.0, abs=1e-6)
    assert m.emd(x, x + torch.tensor([0.3, 0.4], dtype=torch.float64)) == pytest.approx(0.5, abs=1e-6)


def test_metric_errors():
    with pytest.raises(ValueError, match="equal-size"):
        m.emd(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        m.gaussians_report(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="unknown dataset 'moons'"):
        toy2d.sample("moons", 3)
