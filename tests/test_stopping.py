"""refine's drift cap (clip) and stop rules: LogitMatch and best_step."""
import time

import pytest
import torch

import dgflow
from dgflow.stopping import LogitMatch, best_step, mean_logit


def half_norm_sq(x):
    """d(x) = ||x||^2 / 2, so grad d = x: each sample's drift length is its own norm."""
    return 0.5 * (x ** 2).sum(1)


def test_clip_caps_each_drift_at_clip_times_the_median():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [10.0, 0.0], [0.0, 40.0]])
    out = dgflow.refine(None, half_norm_sq, z, steps=1, eta=0.1, gamma=0.0, clip=3.0)
    # drift lengths 1, 1, 1, 10, 40: median 1, so the last two are shrunk to length 3 (times eta)
    expected = z + 0.1 * z * torch.tensor([1.0, 1.0, 1.0, 0.3, 3.0 / 40.0])[:, None]
    assert torch.allclose(out, expected, atol=1e-6)
    unclipped = dgflow.refine(None, half_norm_sq, z, steps=1, eta=0.1, gamma=0.0, clip=None)
    assert torch.allclose(unclipped, 1.1 * z)


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_clip_keeps_the_flow_invariant_to_the_critic_scale(solver):
    torch.manual_seed(3)
    g = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    z = torch.randn(40, 3, dtype=torch.float64)
    kw = dict(steps=4, eta="auto", gamma=0.0, clip=1.5, solver=solver, rtol=1e-10, atol=1e-12)
    a = dgflow.refine(g, half_norm_sq, z, stop=None, **kw)
    b = dgflow.refine(g, lambda x: 25.0 * half_norm_sq(x), z, stop=None, **kw)
    c = dgflow.refine(g, half_norm_sq, z, stop=None, **{**kw, "clip": None})
    assert torch.allclose(a, b, atol=1e-7)
    assert (a - c).abs().max() > 1e-4, "the cap should bind for some samples"


def test_default_cap_is_the_median_drift():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, -3.0]])
    out = dgflow.refine(None, half_norm_sq, z, steps=1, eta=0.1, gamma=0.0)  # default clip=1
    lengths = (out - z).norm(dim=1)
    assert torch.allclose(lengths, torch.tensor([0.1, 0.2, 0.2]))  # drifts 1, 2, 3 capped at the median 2


def test_clip_is_validated():
    with pytest.raises(ValueError, match="clip must be > 0"):
        dgflow.refine(None, half_norm_sq, torch.randn(3, 2), clip=0)


def test_stop_returns_the_state_before_the_update_of_that_step():
    z = torch.randn(8, 2)
    full = dgflow.refine(None, half_norm_sq, z, steps=3, eta=0.05, gamma=0.01, generator_rng=5)
    seen = []

    def stop(step, zk, logits):
        seen.append(step)
        return step == 3

    out, traj = dgflow.refine(None, half_norm_sq, z, steps=10, eta=0.05, gamma=0.01, generator_rng=5,
                              stop=stop, return_trajectory=2)
    assert seen == [0, 1, 2, 3]
    assert torch.equal(out, full)
    assert len(traj) == 3 and torch.equal(traj[-1], out) and torch.equal(traj[0], z)  # steps 0, 2, 3


class SlowRule:
    """A stop rule that never fires and sleeps in its calls and its finish."""

    def __init__(self, pause):
        self.pause, self.calls = pause, 0

    def __call__(self, step, zk, logits):
        self.calls += 1
        time.sleep(self.pause)
        return False

    def finish(self, step, zk):
        time.sleep(5 * self.pause)
        return step, zk


def test_run_info_times_the_stop_rule_apart_from_the_steps():
    z = torch.randn(16, 2)
    kw = dict(steps=4, eta=0.05, gamma=0.01, generator_rng=1, return_info=True)
    rule = SlowRule(0.05)
    out, info = dgflow.refine(None, half_norm_sq, z, stop=rule, **kw)
    assert rule.calls == 4
    # the rule slept 4 x 0.05 s in its calls and 0.25 s in finish: all of it is the rule's, none the steps'
    assert info.stop_seconds >= 0.45 and info.seconds >= info.stop_seconds
    assert info.stop_overhead == pytest.approx(info.stop_seconds / (info.seconds - info.stop_seconds))
    assert info.stop_overhead > 1.0  # four 2D steps of 16 points take far less than 0.45 s
    assert info.as_dict()["stop_seconds"] == info.stop_seconds
    out2, info2 = dgflow.refine(None, half_norm_sq, z, stop=None, **kw)
    assert torch.equal(out, out2)  # timing changes nothing
    assert info2.stop_seconds == 0.0 and info2.stop_overhead == 0.0 and info2.seconds > 0


def test_stop_with_an_ode_solver_ends_on_the_grid():
    z = torch.randn(6, 2, dtype=torch.float64)
    kw = dict(eta=0.05, gamma=0.0, solver="dopri5", rtol=1e-9, atol=1e-10)
    ref = dgflow.refine(None, half_norm_sq, z, steps=2, **kw)
    out = dgflow.refine(None, half_norm_sq, z, steps=6, stop=lambda k, zk, d: k == 2, **kw)
    assert torch.allclose(out, ref, atol=1e-9)


def test_stop_must_be_callable():
    with pytest.raises(TypeError, match="stop must be callable"):
        dgflow.refine(None, half_norm_sq, torch.randn(3, 2), stop=3)


def test_logit_match_stops_when_the_mean_logit_reaches_real_data(linear_critic):
    a = linear_critic.a.detach()
    z = torch.randn(30, 3)
    real = torch.randn(50, 3) + 2.0 * a / a.norm()  # real data scores higher by 2|a| on average
    rule = LogitMatch(linear_critic, real, fraction=1.0)
    assert rule.target == pytest.approx(float((real @ a).mean()), abs=1e-5)
    eta = 0.05
    rise = eta * float(a @ a)  # KL, gamma = 0: the mean logit rises by eta |a|^2 per step
    m0 = float((z @ a).mean())
    expected = next(k for k in range(1000) if m0 + k * rise >= rule.target - 1e-6)
    out = dgflow.refine(None, linear_critic, z, steps=1000, eta=eta, gamma=0.0, stop=rule)
    assert rule.step == expected
    assert torch.allclose(out, z + expected * eta * a, atol=1e-4)
    assert len(rule.history) == expected + 1
    assert LogitMatch.from_target(rule.target, 1.0).stop_step(rule.history) == expected  # replayed
    assert LogitMatch.from_target(1e9).stop_step(rule.history) is None


def test_logit_match_fraction_stops_halfway(linear_critic):
    a = linear_critic.a.detach()
    z = torch.zeros(4, 3)
    real = a.repeat(10, 1)  # target mean logit |a|^2 = 5.25, start 0
    rule = LogitMatch(linear_critic, real, fraction=0.55)
    dgflow.refine(None, linear_critic, z, steps=100, eta=0.1, gamma=0.0, stop=rule)
    assert rule.step == 6  # the mean logit rises 0.525 per step and must reach 0.55 * 5.25 = 2.8875
    assert rule.threshold() == pytest.approx(0.55 * 5.25, rel=1e-5)


def test_logit_match_leaves_a_batch_that_already_scores_as_real_unchanged(linear_critic):
    z = torch.randn(10, 3) + 3.0
    rule = LogitMatch(linear_critic, torch.zeros(5, 3))
    out = dgflow.refine(None, linear_critic, z, steps=25, eta=0.1, gamma=0.01, stop=rule, generator_rng=0)
    assert rule.step == 0 and torch.equal(out, z)


def test_logit_match_errors(linear_critic):
    with pytest.raises(ValueError, match="real must be a non-empty tensor"):
        LogitMatch(linear_critic, torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        LogitMatch(linear_critic, torch.zeros(2, 3), fraction=1.5)
    with pytest.raises(ValueError, match=r"real contains non-finite values \(NaN or inf\) in 1 of 2 samples"):
        mean_logit(linear_critic, torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="real contains non-finite"):
        LogitMatch(linear_critic, torch.tensor([[float("inf"), 0.0, 0.0]]))
    with pytest.raises(FloatingPointError, match="non-finite logits on real for 1 of 2 samples"):
        mean_logit(lambda x: torch.log(x[:, 0]), torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    with pytest.raises(RuntimeError, match="after the first step"):
        LogitMatch.from_target(1.0).threshold()


def test_best_step_picks_the_lowest_validation_score(linear_critic):
    a = linear_critic.a.detach()
    z = torch.zeros(5, 3)
    target_mean = 0.5 * a  # reached after 5 steps of 0.1 * a; the flow then overshoots it
    out, traj = dgflow.refine(None, linear_critic, z, stop=None, steps=13, eta=0.1, gamma=0.0, return_trajectory=2)

    def score(x):
        return float((x.mean(0) - target_mean).norm())

    step, scores = best_step(None, traj, score, every=2, steps=13)
    assert list(scores) == [0, 2, 4, 6, 8, 10, 12, 13]
    assert step in (4, 6) and scores[step] == min(scores.values())
    with pytest.raises(ValueError, match="T = 8 states"):
        best_step(None, traj[:-1], score, every=2, steps=13)
