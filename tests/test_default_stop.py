"""refine's default stop rules: AtChance (no real data) and DataMatch (real=), and their helpers."""
import math

import pytest
import torch

import dgflow
from dgflow.distances import energy_distance, median_bandwidth, mmd2
from dgflow.engine import run
from dgflow.stopping import (AT_CHANCE_GAIN, FEATURES_TOL, STEP_GROW, STEP_MAX, STEP_SHRINK, AtChance, DataMatch, calibrated_gain,
                             estimated_gain)


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


def shifted_gaussians():
    """Data N(m, I), samples N(0, I), m = (1.5, 0): (m, z, real), seeded."""
    m = torch.tensor([1.5, 0.0])
    g = torch.Generator().manual_seed(4)
    z = torch.randn(1000, 2, generator=g)
    return m, z, torch.randn(1000, 2, generator=g) + m


def test_data_match_returns_the_best_checked_state_of_an_overshooting_flow():
    # data N(m, I), samples N(0, I), the exact log ratio as critic: its (stale) gradient m pushes the
    # samples along m for ever, so the flow passes the data and the best state lies in between
    m, z, real = shifted_gaussians()
    critic = lambda x: x @ m - m.dot(m) / 2  # noqa: E731
    kw = dict(steps=60, eta=0.1, clip=None, gamma=0.0)
    plain = DataMatch(real, adapt_step=False)
    out, info = dgflow.refine(None, critic, z, stop=plain, return_info=True, **kw)
    end = dgflow.refine(None, critic, z, stop=None, **kw)
    err = lambda x: float((x.mean(0) - m).norm())  # noqa: E731
    assert err(out) < 0.2 < min(err(z), err(end))
    assert 0 < info.stop_step < 60 and info.steps_run < 60  # patience ended the run early
    # the state returned is the flow's state at that step
    assert torch.allclose(out, dgflow.refine(None, critic, z, stop=None, **{**kw, "steps": info.stop_step}))
    assert sorted(plain.history) == list(range(0, 5 * len(plain.history), 5)) and plain.scales == []
    assert torch.equal(dgflow.refine(None, critic, z, stop=plain, **{**kw, "steps": 0}), z)  # reused: a fresh run
    # the kernel MMD ranks the states too; only it has a bandwidth (the energy distance has none)
    mmd = DataMatch(real, distance="mmd", adapt_step=False)
    assert err(dgflow.refine(None, critic, z, stop=mmd, **kw)) < 0.2
    assert mmd.bandwidth == pytest.approx(median_bandwidth(real)) and plain.as_dict()["bandwidth"] is None
    # the rule's time, its setup inside refine included, is part of the run's and apart from the steps'
    assert 0 < info.stop_seconds < info.seconds and info.stop_overhead > 0


def test_data_match_with_a_tolerance_returns_the_latest_state_within_it():
    # the overshooting flow: the distance falls to its lowest near the data, then rises past its
    # start; tol t returns the latest check at most lowest + t * (start - lowest), and ends after
    # `patience` checks beyond that bound
    m, z, real = shifted_gaussians()
    critic = lambda x: x @ m - m.dot(m) / 2  # noqa: E731
    kw = dict(steps=150, eta=0.02, clip=None, gamma=0.0)
    _, traj = dgflow.refine(None, critic, z, stop=None, return_trajectory=5, **kw)
    steps = {}
    for tol in (0.0, 0.5, 1.0):
        rule = DataMatch(real, adapt_step=False, tol=tol)
        out, info = dgflow.refine(None, critic, z, stop=rule, return_info=True, **kw)
        h, low = rule.history, min(rule.history.values())
        bound = low + tol * (h[0] - low)
        assert rule.bound() == pytest.approx(bound) and h[rule.best_step] == low
        assert rule.step == info.stop_step == max(s for s in h if h[s] <= bound)
        assert torch.equal(out, traj[rule.step // 5])
        beyond = [s for s in sorted(h) if s > rule.step]
        assert len(beyond) == rule.patience and all(h[s] > bound for s in beyond)
        assert info.stop_rule["tol"] == tol and info.stop_rule["best_step"] == rule.best_step
        steps[tol] = rule.step
    assert steps[0.0] == rule.best_step < steps[0.5] < steps[1.0]  # the same lowest check, later states
    assert "returned step" in info.stop_reason and "tol = 1" in info.stop_reason
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="tol must be .auto. or in"):
            DataMatch(real, tol=bad)
    # "auto" (the default): the lowest check on the samples themselves, the veto on image features
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    assert DataMatch(real).tol == 0.0 and DataMatch(images).tol == FEATURES_TOL == 1.0
    assert DataMatch(images, features=None).tol == 0.0 and DataMatch(real, features=lambda x: x).tol == FEATURES_TOL


@pytest.mark.parametrize("tol", [0.0, 0.3, 0.5, 1.0])
def test_data_match_tolerance_on_scripted_distances_matches_its_definition(tol):
    # distances that fall, rise, fall to a new lowest (tightening the bound) and rise again: the rule
    # must return the latest check within the final bound, and stop after `patience` checks beyond
    # the bound in force at each check
    values = [1.0, 0.6, 0.7, 0.8, 0.4, 0.55, 0.5, 0.9, 0.95, 0.97, 0.99]
    rule = DataMatch(torch.randn(8, 2), adapt_step=False, tol=tol)
    script = iter(values)
    rule.distance_to = lambda x: next(script)  # noqa: E731  (the distance of each check, in order)
    z, logits = torch.zeros(4, 2), torch.zeros(4)
    ended = None  # the step the rule ended the flow at (None: the budget, the last check, ended it)
    for i in range(len(values)):
        if rule(5 * i, z + i, logits):
            ended = 5 * i
            break
    seen = values[: len(rule.history)]
    lowest, since, end = seen[0], 0, None
    for i, v in enumerate(seen):  # the definition, check by check
        lowest = min(lowest, v)
        since = 0 if v <= lowest + tol * (values[0] - lowest) else since + 1
        if since >= rule.patience and end is None:
            end = 5 * i
    bound = lowest + tol * (values[0] - lowest)
    want = max(5 * i for i, v in enumerate(seen) if v <= bound)
    assert ended == end and rule.step == want and rule.best_step == 5 * seen.index(lowest)
    last = 5 * (len(rule.history) - 1)
    step, state = rule.finish(last, z + last // 5)
    assert step == want and torch.equal(state, z + want // 5)


def test_data_match_steers_the_step_a_trust_region_on_the_distance():
    # the overshooting flow above with a step too short for the budget: its drift is exactly eta * m
    # a step (KL weight 1, gamma 0), so every state is z + t m and the steps taken can be read off
    m, z, real = shifted_gaussians()
    critic = lambda x: x @ m - m.dot(m) / 2  # noqa: E731
    kw = dict(steps=60, eta=0.01, clip=None, gamma=0.0)
    err = lambda x: float((x.mean(0) - real.mean(0)).norm())  # noqa: E731
    out, traj, info = dgflow.refine(None, critic, z, real=real, return_info=True, return_trajectory=1, **kw)
    plain = DataMatch(real, adapt_step=False)
    slow = dgflow.refine(None, critic, z, stop=plain, **kw)
    # it speeds up where the plain rule runs out of budget, and still comes back from its overshoot
    assert err(out) < err(slow) / 2 and plain.step == 60 and 0 < info.stop_step < 60
    g2, s2, top = STEP_GROW, STEP_GROW ** 2, STEP_MAX
    assert info.stop_rule["adapt_step"] and info.stop_rule["scales"][:4] == [[5, g2], [10, s2], [15, top],
                                                                            [30, top * STEP_SHRINK]]
    assert "step size changed 4x" in info.stop_reason and 0 < info.stop_seconds < info.seconds
    moved = lambda a, b: float((traj[b] - traj[a]).mean(0)[0] / (0.01 * m[0]))  # noqa: E731  (in first steps)
    assert [moved(k, k + 5) for k in (0, 5, 10, 15)] == pytest.approx([5, 5 * g2, 5 * s2, 5 * top])
    # the check at 30 was worse than step 25's: the pass at 30 went back to it, 5 updates at 2x follow
    assert torch.equal(traj[31], traj[25]) and moved(31, 36) == pytest.approx(5 * top * STEP_SHRINK)
    assert info.stop_step == 25 and torch.equal(out, traj[25]) and info.steps_run == 36
    with pytest.raises(TypeError, match="adapt_step"):
        DataMatch(real, adapt_step=1)


def test_a_steered_flow_goes_back_from_a_step_too_long_for_the_models_instead_of_failing():
    m, z, real = shifted_gaussians()

    def critic(x):  # the exact log ratio, undefined (NaN) past x_0 = 6 (a model off its domain)
        d = x @ m - m.dot(m) / 2
        return d + torch.where(x[:, 0] < 6, torch.zeros(()), torch.full((), float("nan")))

    kw = dict(steps=60, eta=0.1, clip=None, gamma=0.0)
    with pytest.raises(FloatingPointError, match="non-finite logits"):
        dgflow.refine(None, critic, z, stop=None, **kw)
    with pytest.raises(FloatingPointError, match="non-finite logits"):  # the plain rule does not step back
        dgflow.refine(None, critic, z, stop=DataMatch(real, adapt_step=False), **{**kw, "eta": 0.3})
    out, info = dgflow.refine(None, critic, z, real=real, return_info=True, **{**kw, "eta": 0.3})
    rule = DataMatch(real)
    out2, traj = dgflow.refine(None, critic, z, stop=rule, return_trajectory=1, **{**kw, "eta": 0.3})
    # the trajectory holds one state a pass, up to the last, rewinds included
    assert len(traj) == max(rule.history) + 1 and torch.equal(traj[rule.step], out)
    assert torch.equal(out, out2) and bool(torch.isfinite(out).all()) and float(out[:, 0].max()) < 6
    assert math.inf in rule.history.values() and rule.history[rule.step] < rule.history[0]
    assert any(s < 1 for _, s in rule.scales)


def test_data_match_checks_the_samples_the_steps_pass_decoded_and_decodes_none_again():
    m, z, real = shifted_gaussians()
    critic = lambda x: x @ m - m.dot(m) / 2  # noqa: E731
    calls = []  # (samples decoded, with grad): the step's pass has grad, a separate decode has not

    def gen(w):  # a generator whose samples are its latents shifted, counting its calls
        calls.append((len(w), torch.is_grad_enabled()))
        return w + 0.25

    kw = dict(steps=60, eta=0.1, clip=None, gamma=0.0, batch_size=300)
    rule = DataMatch(real, gen, max_points=500)
    assert rule.samples_wanted(0, gen) == 500 and rule.samples_wanted(0, None) == 0  # its generator only
    out, info = dgflow.refine(gen, critic, z, stop=rule, return_info=True, **kw)
    assert info.stop_step is not None and info.steps_run < 60  # patience ended it: no final decode
    assert all(grad for _, grad in calls)  # every check took the pass's samples: no decode without grad
    # they are what a decode of the state gives: the same distances as a rule that decodes its own
    again = DataMatch(real, gen, max_points=500)
    again.samples_wanted = lambda step, generator: 0
    assert torch.equal(dgflow.refine(gen, critic, z, stop=again, **kw), out) and again.history == rule.history
    assert sum(not grad for _, grad in calls) == len(again.history)  # one decode a check
    # models not in eval mode decode differently from the checks' eval mode: then the rule decodes
    calls.clear()
    dgflow.refine(gen, critic, z, stop=DataMatch(real, gen, max_points=500), eval_mode=False, **kw)
    assert sum(not grad for _, grad in calls) == len(rule.history)
    # a rule built without the run's generator compares what it decodes itself (the latents), as before
    calls.clear()
    own = DataMatch(real, max_points=500, adapt_step=False)
    dgflow.refine(gen, critic, z, stop=own, **kw)
    assert own.history[0] == pytest.approx(own.distance_to(z)) and own.history[0] != pytest.approx(rule.history[0])


def test_a_steering_rule_needs_an_update_that_can_change_its_step():
    class Fixed:  # an update without rescale (like DDLS's)
        name, hint = "fixed", ""

        def start(self, state, logits, grad):
            return {}

        def __call__(self, step, state, logits, grad):
            return state + 0.1 * grad

    real = torch.randn(50, 2)
    with pytest.raises(TypeError, match="adapt_step=False"):
        run(Fixed(), None, lambda x: x.sum(1), torch.zeros(4, 2), 5, stop=DataMatch(real))
    out, _, _ = run(Fixed(), None, lambda x: x.sum(1), torch.zeros(4, 2), 5, stop=DataMatch(real, adapt_step=False))
    assert out.shape == (4, 2)


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
