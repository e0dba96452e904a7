"""DataMatch (refine's default stop rule with real data): the returned state, tol, the step control
and the samples it takes from the loop."""
import math
from pathlib import Path

import pytest
import torch

import dgflow
from dgflow.distances import median_bandwidth
from dgflow.engine import run
from dgflow.stopping import FEATURES_TOL, STEP_GROW, STEP_MAX, STEP_SHRINK, DataMatch


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
    # start; tol t returns the latest check at most lowest + t * min(start - lowest, lowest), and
    # ends after `patience` checks beyond that bound. The data sits off the flow's line (shifted by 1
    # across it), so the lowest stays well above 0 and the cap binds at tol 1 and ½
    m, z, real = shifted_gaussians()
    real = real + torch.tensor([0.0, 1.0])
    critic = lambda x: x @ m - m.dot(m) / 2  # noqa: E731
    kw = dict(steps=150, eta=0.02, clip=None, gamma=0.0)
    _, traj = dgflow.refine(None, critic, z, stop=None, return_trajectory=5, **kw)
    steps = {}
    for tol in (0.0, 0.5, 1.0):
        rule = DataMatch(real, adapt_step=False, tol=tol)
        out, info = dgflow.refine(None, critic, z, stop=rule, return_info=True, **kw)
        h, low = rule.history, min(rule.history.values())
        bound = defined_bound(h[0], low, tol)
        assert rule.bound() == pytest.approx(bound) and h[rule.best_step] == low
        assert rule.step == info.stop_step == max(s for s in h if h[s] <= bound)
        assert torch.equal(out, traj[rule.step // 5])
        beyond = [s for s in sorted(h) if s > rule.step]
        assert len(beyond) == rule.patience and all(h[s] > bound for s in beyond)
        assert info.stop_rule["tol"] == tol and info.stop_rule["best_step"] == rule.best_step
        steps[tol] = rule.step
        assert tol == 0 or bound < low + tol * (h[0] - low)  # the cap binds
    assert steps[0.0] == rule.best_step < steps[0.5] < steps[1.0]  # the same lowest check, later states
    assert "returned step" in info.stop_reason and "tol = 1" in info.stop_reason
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="tol must be .auto. or in"):
            DataMatch(real, tol=bad)
    # "auto" (the default): the lowest check on the samples themselves, the veto on image features
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    assert DataMatch(real).tol == 0.0 and DataMatch(images).tol == FEATURES_TOL == 1.0
    assert DataMatch(images, features=None).tol == 0.0 and DataMatch(real, features=lambda x: x).tol == FEATURES_TOL


def defined_bound(first: float, lowest: float, tol: float) -> float:
    """DataMatch's bound by its definition: a rise of tol times the gain, capped at tol times the lowest."""
    return lowest + tol * min(first - lowest, max(lowest, 0.0))


def scripted(values, tol: float, patience: int = 2):
    """A plain DataMatch fed ``values`` as its checks' distances (every 5 steps); the step it ended at
    (None: it never did) and the rule."""
    rule = DataMatch(torch.randn(8, 2), adapt_step=False, tol=tol, patience=patience)
    script = iter(values)
    rule.distance_to = lambda x: next(script)  # noqa: E731  (the distance of each check, in order)
    z, logits = torch.zeros(4, 2), torch.zeros(4)
    for i in range(len(values)):
        if rule(5 * i, z + i, logits):
            return 5 * i, rule
    return None, rule


def test_data_match_caps_the_bound_at_a_multiple_of_the_lowest():
    # a flow that came ten times closer to the data than it started (a VAE's) and then drifts back:
    # uncapped, tol 1 would keep every state short of the start; the cap (twice the lowest) returns
    # the last one near the lowest and ends the flow after `patience` checks beyond it
    ended, rule = scripted([1.0, 0.5, 0.2, 0.1, 0.15, 0.25, 0.5, 0.9], tol=1.0)
    assert rule.bound() == pytest.approx(0.2) and rule.best_step == 15
    assert rule.step == 20 and ended == 30
    assert "the bound 0.2 (tol = 1" in rule.reason
    # far from the cap (lowest above half the start) the bound is the start's distance
    ended, rule = scripted([1.0, 0.7, 0.6, 0.9, 0.95, 1.05, 1.1], tol=1.0)
    assert rule.bound() == pytest.approx(1.0) and rule.step == 20 and ended == 30
    # a lowest at or below 0 (the unbiased distance can dip below) leaves no slack
    ended, rule = scripted([1.0, -0.01, 0.0, 0.001, 0.002], tol=1.0)
    assert rule.bound() == pytest.approx(-0.01) and rule.step == 5 and ended == 15


def test_the_study_replays_data_match_as_the_library_runs_it():
    # benchlib.safe.replay_datamatch (the safe-defaults study's replay of DataMatch on recorded
    # curves) must return the step the rule itself returns, cap and patience included
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from benchlib.safe import UncappedVeto, replay_datamatch
    finally:
        sys.path.pop(0)
    curves = ([1.0, 0.5, 0.2, 0.1, 0.15, 0.25, 0.5, 0.9], [1.0, 0.6, 0.7, 0.8, 0.4, 0.55, 0.5, 0.9, 0.95, 0.97],
              [1.0, 0.7, 0.6, 0.9, 0.95, 1.05, 1.1], [1.0, 1.2, 1.3, 0.9])
    for values in curves:
        for tol in (0.0, 0.5, 1.0):
            for patience in (1, 2, 3):
                ended, rule = scripted(values, tol, patience)
                checks = {5 * i: {"energy": v} for i, v in enumerate(values)}
                step, stopped = replay_datamatch(checks, 5 * len(values), patience, tol=tol, ended=True)
                assert (step, stopped) == (rule.step, ended is not None), (values, tol, patience)
    # the study's stop-21 comparison rule: the same without the cap, so it keeps the drift back
    veto = UncappedVeto(torch.randn(8, 2), adapt_step=False, tol=1.0)
    script = iter([1.0, 0.5, 0.2, 0.1, 0.15, 0.25, 0.5, 0.9, 1.1, 1.2])
    veto.distance_to = lambda x: next(script)  # noqa: E731
    ended = next(5 * i for i in range(10) if veto(5 * i, torch.zeros(4, 2) + i, torch.zeros(4)))
    assert veto.bound() == pytest.approx(1.0) and veto.step == 35 and ended == 45


@pytest.mark.parametrize("tol", [0.0, 0.3, 0.5, 1.0])
def test_data_match_tolerance_on_scripted_distances_matches_its_definition(tol):
    # distances that fall, rise, fall to a new lowest (tightening the bound) and rise again: the rule
    # must return the latest check within the final bound, and stop after `patience` checks beyond
    # the bound in force at each check
    values = [1.0, 0.6, 0.7, 0.8, 0.4, 0.55, 0.5, 0.9, 0.95, 0.97, 0.99]
    ended, rule = scripted(values, tol)  # ended None: the budget, the last check, ended it
    z = torch.zeros(4, 2)
    seen = values[: len(rule.history)]
    lowest, since, end = seen[0], 0, None
    for i, v in enumerate(seen):  # the definition, check by check
        lowest = min(lowest, v)
        since = 0 if v <= defined_bound(values[0], lowest, tol) else since + 1
        if since >= rule.patience and end is None:
            end = 5 * i
    bound = defined_bound(values[0], lowest, tol)
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
