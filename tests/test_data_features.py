"""DataMatch's feature map: the untrained CNN images are compared through, and user-given maps."""
import pytest
import torch

import dgflow
from dgflow.distances import RandomConvFeatures, auto_features, energy_distance
from dgflow.stopping import DataMatch


def images(n, c=1, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_random_conv_features_are_fixed_by_channels_and_seed_and_do_not_depend_on_chunking_or_dtype():
    x = images(10, c=3)
    f = RandomConvFeatures(3)
    out = f(x)
    assert out.shape == (10, 2 * (32 + 64 + 128)) and bool((out >= 0).all())  # of ReLUs: means, then stds
    first = torch.relu(torch.nn.functional.conv2d(x, f.weights[0], stride=2, padding=1))  # 32 channels, 8 x 8
    assert torch.allclose(out[:, :32], first.mean((2, 3)), atol=1e-6)
    assert torch.allclose(out[:, 224:256], first.std((2, 3), correction=0), atol=1e-6)
    assert torch.equal(out, RandomConvFeatures(3)(x))  # a new instance is the same network
    assert torch.allclose(RandomConvFeatures(3, batch_size=3)(x), out, atol=1e-6)
    assert torch.allclose(f(x.double()).float(), out, atol=1e-5)
    assert not torch.allclose(RandomConvFeatures(3, seed=1)(x), out)
    # the network sees structure: a shuffle of each image's pixels changes its features, a copy does not
    shuffled = x.flatten(2)[:, :, torch.randperm(256, generator=torch.Generator().manual_seed(1))].view_as(x)
    assert (f(shuffled) - out).abs().max() > 1e-3 and torch.equal(f(x.clone()), out)
    with pytest.raises(ValueError, match=r"takes images \(N, 3, H, W\), got shape \(10, 1, 16, 16\)"):
        f(images(10, c=1))


def test_auto_features_maps_images_only():
    assert isinstance(auto_features(images(4, c=3, size=8)), RandomConvFeatures)
    assert auto_features(torch.randn(4, 2)) is None  # 2D points
    assert auto_features(torch.randn(4, 1, 4, 4)) is None  # too small to be an image
    assert bool(torch.isfinite(auto_features(torch.randn(4, 1, 8, 8))(torch.randn(4, 1, 8, 8))).all())  # 1 x 1 maps
    assert auto_features(torch.randn(4, 20, 30)) is None  # one-hot text (N, length, vocabulary)


def test_data_match_takes_its_distance_on_the_features():
    real, x = images(40, seed=1), images(40, seed=2)
    rule = DataMatch(real)  # "auto": images go through the random CNN
    f = RandomConvFeatures(1)
    assert rule.score(x) == pytest.approx(energy_distance(f(x), f(real)), rel=1e-5)
    assert rule.as_dict()["features"] == "RandomConvFeatures"
    pixels = DataMatch(real, features=None)
    assert pixels.score(x) == pytest.approx(energy_distance(x, real), rel=1e-5) and pixels.features_name is None

    def first_coordinate(v):
        return v[:, :1]

    pts, other = torch.randn(50, 3), torch.randn(50, 3)
    mine = DataMatch(pts, features=first_coordinate)
    assert mine.score(other) == pytest.approx(energy_distance(other[:, :1], pts[:, :1]), rel=1e-5)
    moved = other.clone()
    moved[:, 1:] += 5.0  # what the feature map does not see does not count
    assert mine.score(moved) == pytest.approx(mine.score(other), rel=1e-5)
    mmd = DataMatch(pts, features=first_coordinate, distance="mmd")
    assert mmd.score(moved) == pytest.approx(mmd.score(other), rel=1e-5)


def test_a_check_decodes_the_first_points_and_takes_the_distance_of_the_samples():
    torch.manual_seed(0)
    gen = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Unflatten(1, (1, 8, 8)))
    rule = DataMatch(images(30, size=8, seed=3), gen, max_points=20)
    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = gen(z)
    assert rule.score(z) == rule.distance_to(x) == rule.distance_to(x[:20])
    assert rule.distance_to(x) != rule.distance_to(x[10:])


def test_refine_with_real_images_ranks_states_by_the_features_and_says_so():
    torch.manual_seed(0)
    gen = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Unflatten(1, (1, 8, 8)))
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1))
    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    real = images(30, size=8, seed=3)
    _, info = dgflow.refine(gen, critic, z, real=real, steps=10, return_info=True, generator_rng=0)
    assert info.stop_rule["features"] == "RandomConvFeatures" and "(RandomConvFeatures)" in info.stop_reason


def test_bad_features_are_named():
    real = torch.randn(10, 2)
    with pytest.raises(ValueError, match="features must be 'auto', None or a callable"):
        DataMatch(real, features="pixels")
    with pytest.raises(TypeError, match="features must be 'auto', None or a callable"):
        DataMatch(real, features=3)
    with pytest.raises(ValueError, match=r"features must map samples \(N, \.\.\.\) to a tensor \(N, F\)"):
        DataMatch(real, features=lambda v: v[:3])
    with pytest.raises(ValueError, match="features must map"):
        DataMatch(real, features=lambda v: float(v.sum()))
