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
    with pytest.raises(ValueError, match="unknown dataset 'spiral'"):
        toy2d.sample("spiral", 3)
    with pytest.raises(ValueError, match="unknown dataset 'spiral'"):
        m.report("spiral", torch.zeros(3, 2))


@pytest.mark.parametrize("dataset, n_modes", [("8gaussians", 8), ("moons", 2)])
def test_new_toy_datasets_score_their_own_data_as_high_quality(dataset, n_modes):
    x = toy2d.sample(dataset, 4000, torch.Generator().manual_seed(0))
    r = m.report(dataset, x)
    assert r["hq"] > 0.99 and r["modes"] == n_modes and r["modes_1pct"] == n_modes
    # points pushed 0.5 away (10 sigma) are not high quality; a single mode's samples cover one mode
    assert m.report(dataset, x + torch.tensor([0.0, 0.5]))["hq"] < 0.5
    if dataset == "8gaussians":
        assert torch.allclose(toy2d.ring_means().norm(dim=1), torch.full((8,), 2.0))
        one = toy2d.ring_means()[3] + 0.01 * torch.randn(100, 2, generator=torch.Generator().manual_seed(1))
        assert m.report(dataset, one)["modes"] == 1
    else:
        upper, lower = toy2d.moons_curves()
        assert m.report(dataset, upper)["modes"] == 1 and m.report(dataset, lower)["modes"] == 1
