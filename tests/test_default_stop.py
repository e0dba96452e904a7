"""refine's default stop rules: AtChance (no real data), the real= argument and its budget, and
their helpers (DataMatch itself: test_data_match.py)."""
import math

import pytest
import torch

import dgflow
from dgflow.distances import energy_distance, median_bandwidth, mmd2
from dgflow.stopping import AT_CHANCE_GAIN, AtChance, DataMatch, calibrated_gain, estimated_gain


def test_estimated_gain_is_the_variance_for_gaussian_logits_and_zero_for_constant_ones():
    g = torch.Generator().manual_seed(0)
    for sigma in (0.1, 0.5):
        d = sigma * torch.randn(200_000, generator=g) - 3.0  # the offset does not matter
        assert estimated_gain(d) == pytest.approx(sigma ** 2, rel=0.03)
    assert estimated_gain(torch.full((10,), 2.5)) == pytest.approx(0.0, abs=1e-12)
    # exact Jeffreys divergence of two unit Gaussians a distance m apart is m^2
    m = 0.3
    x = torch.randn(200_000, generator=g)  # rho = N(0, 1), mu = N(m, 1): d = log mu/rho = m x - m^2 / 2
    assert estimated_gain(m * x - m * m / 2) == pytest.approx(m * m, rel=0.05)
    with pytest.raises(ValueError, match="non-empty"):
        estimated_gain(torch.empty(0))
    with pytest.raises(FloatingPointError, match="non-finite"):
        estimated_gain(torch.tensor([0.0, float("nan")]))


def linear(scale):
    return lambda x: scale * x[:, 0]


def test_default_leaves_a_batch_unchanged_when_the_critic_is_at_chance_and_says_why():
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    weak = linear(0.01)  # gain ~ 1e-4 nats
    out, info = dgflow.refine(None, weak, z, steps=10, generator_rng=0, return_info=True)
    assert torch.equal(out, z) and info.stop_step == 0 and info.steps_run == 0
    assert "at chance" in info.stop_reason
    moved = dgflow.refine(None, weak, z, steps=10, generator_rng=0, stop=None)
    assert not torch.equal(moved, z)  # the rule, not the flow, kept z
    strong = linear(1.0)  # gain ~ 1 nat
    out, info = dgflow.refine(None, strong, z, steps=10, generator_rng=0, return_info=True)
    assert info.steps_run == 10 and info.stop_step is None and "budget" in info.stop_reason
    assert torch.equal(out, dgflow.refine(None, strong, z, steps=10, generator_rng=0, stop=None))


def test_at_chance_threshold_and_errors():
    rule = AtChance()
    assert rule.min_gain == AT_CHANCE_GAIN and rule.reason == "not run"
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(2))
    assert rule(0, None, 0.1 * x) is True and rule.step == 0  # gain 0.01 < 0.02
    assert rule(0, None, 0.2 * x) is False and rule.step is None  # gain 0.04
    assert rule(3, None, 0.0 * x) is False  # decides at step 0 only
    with pytest.raises(ValueError, match="min_gain"):
        AtChance(-1.0)


def test_mmd2_is_zero_for_one_law_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    h = median_bandwidth(b)
    assert h == pytest.approx(4 * math.log(2), rel=0.1)  # ||x - y||^2 ~ 2 chi2(2): median 4 ln 2
    same = mmd2(a, b, h)
    near, far = mmd2(a + 0.5, b, h), mmd2(a + 2.0, b, h)
    assert abs(same) < 0.01 < near < far
    with pytest.raises(ValueError, match=">= 2 samples"):
        mmd2(a[:1], b, h)
    with pytest.raises(ValueError, match="identical"):
        median_bandwidth(torch.zeros(5, 2))


def test_energy_distance_analytic_cases():
    # two point masses a distance r apart: 2r - 0 - 0
    a, b = torch.zeros(10, 3), torch.full((12, 3), 2.0)
    assert energy_distance(a, b) == pytest.approx(2 * math.sqrt(12.0))
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(1500, 2, generator=g), torch.randn(1500, 2, generator=g)
    same, near, far = energy_distance(x, y), energy_distance(x + 0.5, y), energy_distance(x + 2.0, y)
    assert abs(same) < 0.01 < near < far
    # in 1D, for N(0,1) against N(m,1), E|X-Y| - E|X-X'| grows like m^2 / sqrt(pi) for small m
    u, v = torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g) + 0.3
    assert energy_distance(v, u) == pytest.approx(0.09 / math.sqrt(math.pi), rel=0.5)
    with pytest.raises(ValueError, match=">= 2 samples"):
        energy_distance(x[:1], y)
    # float32 samples: distances in float32 (centred, the diagonal left out), sums in float64: the float64
    # value to 1e-7 on image-sized vectors with an offset; half precision is promoted to float32
    for offset in (0.0, 100.0):
        img, ref = torch.rand(300, 784, generator=g) + offset, torch.rand(300, 784, generator=g) + offset + 0.01
        exact = energy_distance(img.double(), ref.double())
        assert abs(energy_distance(img, ref) - exact) < 1e-7 and exact > 1e-3
    assert energy_distance(img.half(), ref) == pytest.approx(energy_distance(img.half().float(), ref))
    with pytest.raises(ValueError, match="distance must be one of"):
        DataMatch(y, distance="emd")


def test_with_real_data_the_at_chance_test_is_calibrated_so_the_critic_scale_does_not_matter():
    # data N(m, I), samples N(0, I); the exact log ratio shrunk 1,000 times (a WGAN-like critic of small
    # scale): its raw estimated gain is ~1e-6 "nats", so the data-free default leaves the batch alone,
    # but calibrated on the real samples it is the exact ratio again, gain ~ m^2 = 2.25 nats
    m = torch.tensor([1.5, 0.0])
    g = torch.Generator().manual_seed(8)
    z, real = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g) + m
    small = lambda x: 1e-3 * (x @ m - m.dot(m) / 2)  # noqa: E731
    kw = dict(steps=60, eta="auto", gamma=0.0, generator_rng=0, return_info=True)
    out, info = dgflow.refine(None, small, z, **kw)
    assert torch.equal(out, z) and "at chance" in info.stop_reason
    assert info.stop_rule["rule"] == "AtChance" and info.stop_rule["gain"] < 1e-4
    rule = DataMatch(real, None, small, min_gain=AT_CHANCE_GAIN)
    out, info = dgflow.refine(None, small, z, stop=rule, **kw)
    assert rule.gain == pytest.approx(2.25, rel=0.15) and rule.calibration[0] == pytest.approx(1000, rel=0.15)
    assert float((out.mean(0) - m).norm()) < 0.3 and "energy distance" in info.stop_reason
    # real= runs the same flow (its rule records the gain but tests nothing)
    out2, info2 = dgflow.refine(None, small, z, real=real, **kw)
    assert torch.equal(out, out2) and info2.stop_rule["gain"] == pytest.approx(rule.gain)
    assert info2.stop_rule["min_gain"] is None and info2.as_dict()["stop_rule"]["rule"] == "DataMatch"
    # samples already distributed like the data: a critic of any scale is at chance on them
    twin = torch.randn(1000, 2, generator=g) + m
    for scale in (1e-3, 1.0, 1e3):
        noisy = lambda x: scale * torch.sin(7 * x[:, 1])  # noqa: E731  (uninformative about the shift)
        rule = DataMatch(real, None, noisy, min_gain=AT_CHANCE_GAIN)
        out, info = dgflow.refine(None, noisy, twin, stop=rule, **kw)
        assert torch.equal(out, twin) and info.stop_step == 0 and "at chance on the real data" in info.stop_reason
        assert rule.gain < AT_CHANCE_GAIN and not DataMatch(real, None, noisy).at_chance
    assert calibrated_gain(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0]))[0] > 1.0  # separable
    assert calibrated_gain(-torch.arange(50.0) / 50, torch.arange(50.0) / 50)[0] == 0.0  # ranks backwards
    with pytest.raises(ValueError, match="min_gain"):
        DataMatch(real, min_gain=-1)


def test_the_default_budget_is_25_steps_and_100_when_real_data_ends_the_flow():
    m = torch.tensor([1.5, 0.0])
    g = torch.Generator().manual_seed(9)
    z, real = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g) + m
    critic = lambda x: x @ m  # noqa: E731
    steps = lambda **kw: dgflow.refine(None, critic, z, generator_rng=0, return_info=True, **kw)[1].steps  # noqa: E731
    assert steps() == steps(stop=None) == dgflow.flow.DEFAULT_STEPS == 25
    assert steps(real=real) == dgflow.flow.DATA_STEPS == 100
    assert steps(real=real, steps=10) == 10 and steps(stop=DataMatch(real)) == 25  # a rule object: no real=
    dgflow.flow.check_refine_kwargs({"steps": None, "real": real})
    with pytest.raises(ValueError, match="steps"):
        dgflow.flow.check_refine_kwargs({"steps": -1})


def test_data_match_and_real_argument_errors():
    z = torch.randn(10, 2)
    with pytest.raises(ValueError, match="real is read by stop='auto' only"):
        dgflow.refine(None, linear(1.0), z, stop=None, real=torch.randn(5, 2))
    with pytest.raises(ValueError, match="stop must be 'auto'"):
        dgflow.refine(None, linear(1.0), z, stop="early")
    with pytest.raises(ValueError, match="at least 2"):
        DataMatch(torch.randn(1, 2))
    with pytest.raises(ValueError, match="non-finite"):
        DataMatch(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="every"):
        DataMatch(torch.randn(4, 2), every=0)
    with pytest.raises(ValueError, match="real is read"):
        dgflow.flow.check_refine_kwargs({"stop": None, "real": torch.randn(4, 2)})


def test_paper_preset_is_the_authors_update_exactly():
    # one step z + eta * s(d) grad d + sqrt(2 gamma eta) xi (s: the KL weight, xi: the same noise), written
    # out by hand, on a critic too weak for the default stop rule (which would leave z unchanged)
    d = linear(0.05)
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(6))
    out = dgflow.refine(None, d, z, **{**dgflow.PAPER, "steps": 1}, generator_rng=0)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0), dtype=z.dtype)
    drift = dgflow.get_weight("kl")(d(z))[:, None] * torch.tensor([0.05, 0.0])
    want = z + 0.1 * drift + (2 * 0.01 * 0.1) ** 0.5 * noise
    assert torch.allclose(out, want, atol=1e-6)
    assert not torch.equal(dgflow.refine(None, d, z, steps=1, generator_rng=0), out)  # defaults differ


CLI_NETS = '''
import torch
from torch import nn

class Identity(nn.Module):  # x = z ~ N(0, I); the data N(m, I) is reached by moving every sample by m
    def forward(self, z):
        return z

class Ratio(nn.Module):  # the exact log ratio of N(m, I) to N(0, I)
    def forward(self, x):
        m = torch.tensor([1.5, 0.0])
        return x @ m - m.dot(m) / 2
'''


def test_cli_real_and_no_auto_stop(tmp_path):
    import json

    import numpy as np

    from dgflow.cli import main
    from dgflow.distributed import load_shards

    nets = tmp_path / "nets.py"
    nets.write_text(CLI_NETS)
    real = torch.randn(400, 2, generator=torch.Generator().manual_seed(7)) + torch.tensor([1.5, 0.0])
    np.save(tmp_path / "real.npy", real.numpy())
    args = ["--generator", f"{nets}:Identity", "--critic", f"{nets}:Ratio", "--z-dim", "2", "-n", "400", "--steps", "60",
            "--eta", "0.05", "--clip", "none", "--gamma", "0", "--chunk-size", "400", "--no-progress"]
    assert main(["refine", *args, "--real", str(tmp_path / "real.npy"), "--out", str(tmp_path / "a")]) == 0
    rule = json.loads((tmp_path / "a" / "run.json").read_text())["refine"]["stop"]
    assert rule["rule"] == "DataMatch" and rule["n_real"] == 400
    a = load_shards(tmp_path / "a", keys=("z", "z_refined", "stop_step"))
    assert 0 < int(a["stop_step"][0]) < 60
    no_steps = [x for x in args if x not in ("--steps", "60")]
    assert main(["refine", *no_steps, "--real", str(tmp_path / "real.npy"), "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "run.json").read_text())["refine"]["steps"] == 100  # refine(real=)'s budget
    assert np.linalg.norm(a["z_refined"].mean(0) - [1.5, 0.0]) < 0.25  # near the data, not past it
    assert main(["refine", *args, "--no-auto-stop", "--out", str(tmp_path / "b")]) == 0
    b = load_shards(tmp_path / "b", keys=("z_refined",))
    assert b["z_refined"].mean(0)[0] > 3.0  # 60 fixed steps of the stale ratio overshoot the data
    with pytest.raises(SystemExit, match="--real and --no-auto-stop are alternatives"):
        main(["refine", *args, "--real", str(tmp_path / "real.npy"), "--no-auto-stop", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="--real: no such file"):
        main(["refine", *args, "--real", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "d")])


def test_cli_real_replaces_a_zoo_entrys_fixed_length_by_the_real_data_budget(tmp_path):
    import json

    import numpy as np

    import dgflow.zoo
    from dgflow.cli import main
    from dgflow.data import toy2d

    np.save(tmp_path / "real.npy", toy2d.sample("25gaussians", 300, torch.Generator().manual_seed(0)).numpy())
    args = ["refine", "--model", "toy2d-25gaussians-wgangp", "-n", "200", "--chunk-size", "200", "--no-progress"]
    steps = lambda out: json.loads((tmp_path / out / "run.json").read_text())["refine"]["steps"]  # noqa: E731
    assert main([*args, "--out", str(tmp_path / "zoo")]) == 0
    assert main([*args, "--real", str(tmp_path / "real.npy"), "--out", str(tmp_path / "real")]) == 0
    assert main([*args, "--real", str(tmp_path / "real.npy"), "--steps", "10", "--out", str(tmp_path / "ten")]) == 0
    zoo_steps = dgflow.zoo.load("toy2d-25gaussians-wgangp").entry["refine"]["steps"]
    assert zoo_steps != dgflow.flow.DATA_STEPS
    assert (steps("zoo"), steps("real"), steps("ten")) == (zoo_steps, dgflow.flow.DATA_STEPS, 10)
